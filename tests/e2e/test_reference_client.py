"""The reference client (mentorassist.client) follows docs/PROTOCOL.md against the local stack."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from mentorassist import Publisher
from mentorassist.client import (
    CLOSED,
    CONNECTING,
    OPEN,
    RECONNECTING,
    UNAUTHORIZED,
    Backoff,
    Envelope,
    NotificationClient,
    RecentIds,
    _with_token,
)
from tests.e2e import clients
from tests.e2e.conftest import LocalStack

TIMEOUT = 10
FAST = Backoff(base=0.05, cap=0.2)
# Every client a scenario made, closed when it ends even if an assertion failed first.
_clients: list[NotificationClient] = []


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def closing() -> None:
        try:
            await scenario
        finally:
            while _clients:
                await _clients.pop().close()

    clients.run(closing())


def make_client(url: str, tokens: Callable[[], Any], **options: Any) -> NotificationClient:
    client = NotificationClient(url, tokens, **{"backoff": FAST, **options})
    _clients.append(client)
    return client


class Recorder:
    """A client with every state and notification it reports, as queues to wait on."""

    def __init__(self, client: NotificationClient) -> None:
        self.client = client
        self.states: list[str] = []
        self.notifications: asyncio.Queue[Envelope] = asyncio.Queue()
        self._state_queue: asyncio.Queue[str] = asyncio.Queue()
        client.on_any(self.notifications.put_nowait)
        client.on_state(self._state)

    def _state(self, state: str) -> None:
        self.states.append(state)
        self._state_queue.put_nowait(state)

    async def state(self, wanted: str) -> None:
        """Wait until the client reports `wanted` (states reported before count, in order)."""
        while await asyncio.wait_for(self._state_queue.get(), TIMEOUT) != wanted:
            pass

    async def next(self) -> Envelope:
        return await asyncio.wait_for(self.notifications.get(), TIMEOUT)


class Tokens:
    """A token provider that counts its calls (the protocol: a fresh token every attempt)."""

    def __init__(self, make: Callable[[], str]) -> None:
        self.make = make
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return await asyncio.to_thread(self.make)


def client_for(stack: LocalStack, user_id: str, **options: Any) -> tuple[Recorder, Tokens]:
    tokens = Tokens(lambda: stack.token(user_id))
    return Recorder(make_client(stack.outputs["websocketUrl"], tokens, **options)), tokens


async def connection_of(stack: LocalStack, user_id: str) -> str:
    (connection_id,) = await asyncio.to_thread(stack.sessions_of, user_id)
    return connection_id


# --- against the local stack ------------------------------------------------------------------


def test_receives_notifications_by_type_and_all(stack: LocalStack, user) -> None:
    alice = user("alice")
    publisher = Publisher.local(stack.state_dir)

    async def scenario() -> None:
        recorder, tokens = client_for(stack, alice)
        chats: asyncio.Queue[Envelope] = asyncio.Queue()
        recorder.client.on("chat", chats.put_nowait)
        await recorder.client.start()
        await recorder.state(OPEN)

        chat_id = await asyncio.to_thread(publisher.send, alice, {"text": "hi"}, type="chat")
        other_id = await asyncio.to_thread(publisher.send, alice, "plain")
        seen = {(await recorder.next()).id, (await recorder.next()).id}
        assert seen == {chat_id, other_id}
        chat = await asyncio.wait_for(chats.get(), TIMEOUT)
        assert (chat.id, chat.type, chat.data) == (chat_id, "chat", {"text": "hi"})
        assert chat.sent_at and chat.raw["sentAt"] == chat.sent_at
        assert chats.empty()

        await recorder.client.close()
        assert recorder.states == [CONNECTING, OPEN, CLOSED]
        assert tokens.calls == 1

    run(scenario())


def test_a_redelivered_notification_is_dropped_by_id(stack: LocalStack, user) -> None:
    alice = user("alice")
    publisher = Publisher.local(stack.state_dir)

    async def scenario() -> None:
        recorder, _ = client_for(stack, alice)
        await recorder.client.start()
        await recorder.state(OPEN)
        connection_id = await connection_of(stack, alice)

        first_id = await asyncio.to_thread(publisher.send, alice, {"n": 1})
        first = await recorder.next()
        assert first.id == first_id
        # At-least-once: the same envelope delivered again (as a retried publish would).
        management = stack.management()
        await asyncio.to_thread(
            management.post_to_connection,
            ConnectionId=connection_id,
            Data=json.dumps(first.raw).encode(),
        )
        marker_id = await asyncio.to_thread(publisher.send, alice, "marker")
        # The duplicate was posted before the marker on the same connection: had it been
        # passed on, it would come first.
        assert (await recorder.next()).id == marker_id
        await recorder.client.close()

    run(scenario())


def test_the_same_notification_id_published_twice_is_delivered_once(
    stack: LocalStack, user
) -> None:
    alice = user("alice")
    publisher = Publisher.local(stack.state_dir)

    async def scenario() -> None:
        recorder, _ = client_for(stack, alice)
        await recorder.client.start()
        await recorder.state(OPEN)
        await asyncio.to_thread(publisher.send, alice, {"n": 1}, id="stable-1")
        assert (await recorder.next()).id == "stable-1"
        await asyncio.to_thread(publisher.send, alice, {"n": 1}, id="stable-1")
        marker_id = await asyncio.to_thread(publisher.send, alice, "marker")
        assert (await recorder.next()).id == marker_id
        await recorder.client.close()

    run(scenario())


def test_reconnects_with_a_fresh_token_after_the_connection_is_deleted(
    stack: LocalStack, user
) -> None:
    alice = user("alice")
    publisher = Publisher.local(stack.state_dir)

    async def scenario() -> None:
        recorder, tokens = client_for(stack, alice)
        await recorder.client.start()
        await recorder.state(OPEN)
        connection_id = await connection_of(stack, alice)

        await asyncio.to_thread(stack.management().delete_connection, ConnectionId=connection_id)
        await recorder.state(RECONNECTING)
        await recorder.state(OPEN)
        assert tokens.calls == 2
        assert recorder.states == [CONNECTING, OPEN, RECONNECTING, CONNECTING, OPEN]
        assert await asyncio.to_thread(stack.sessions_of, alice) != [connection_id]

        message_id = await asyncio.to_thread(publisher.send, alice, {"after": "reconnect"})
        assert (await recorder.next()).id == message_id
        await recorder.client.close()

    run(scenario())


def test_a_refused_token_stops_it_without_retrying(stack: LocalStack, user) -> None:
    async def scenario() -> None:
        tokens = Tokens(lambda: "not-a-jwt")
        recorder = Recorder(make_client(stack.outputs["websocketUrl"], tokens))
        await recorder.client.start()
        await asyncio.wait_for(recorder.client.wait_closed(), TIMEOUT)
        assert recorder.client.state == UNAUTHORIZED
        assert recorder.states == [CONNECTING, UNAUTHORIZED]
        assert tokens.calls == 1

        # The app supplies a good token and starts it again.
        tokens.make = lambda: stack.token(user("alice"))
        await recorder.client.start()
        await recorder.state(OPEN)
        await recorder.client.close()
        assert tokens.calls == 2

    run(scenario())


def test_an_expired_token_and_a_403_also_stop_it(stack: LocalStack, user) -> None:
    async def scenario() -> None:
        expired = Tokens(lambda: stack.token(user("alice"), ttl_seconds=-120))
        wrong_stage = stack.outputs["websocketUrl"].rsplit("/", 1)[0] + "/no-such-stage"
        for url, tokens in [
            (stack.outputs["websocketUrl"], expired),
            (wrong_stage, Tokens(lambda: stack.token(user("alice")))),  # 403 Forbidden
        ]:
            client = make_client(url, tokens)
            await client.start()
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
            assert client.state == UNAUTHORIZED
            assert tokens.calls == 1

    run(scenario())


def test_pings_are_answered_and_keep_it_open(stack: LocalStack, user) -> None:
    alice = user("alice")

    async def scenario() -> None:
        recorder, _ = client_for(stack, alice, ping_interval=0.05, pong_timeout=2)
        await recorder.client.start()
        await recorder.state(OPEN)
        connection_id = await connection_of(stack, alice)
        answered = f"conn={connection_id} $default -> 200"
        pings = 0

        def second_ping(line: str) -> bool:
            nonlocal pings
            pings += answered in line
            return pings == 2

        await asyncio.to_thread(stack.wait_for_line, second_ping)
        assert recorder.client.state == OPEN
        await recorder.client.close()
        assert recorder.states == [CONNECTING, OPEN, CLOSED]

    run(scenario())


def test_reconnects_on_its_own_before_the_maximum_age(stack: LocalStack, user) -> None:
    alice = user("alice")

    async def scenario() -> None:
        recorder, tokens = client_for(stack, alice, max_connection_age=0.5)
        await recorder.client.start()
        await recorder.state(OPEN)
        await recorder.state(RECONNECTING)
        await recorder.state(OPEN)
        assert tokens.calls == 2
        await recorder.client.close()

    run(scenario())


# --- without the stack ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_is_retried_with_a_fresh_token_each_time() -> None:
    async def scenario() -> None:
        tokens = Tokens(lambda: "token")
        recorder = Recorder(make_client(f"ws://127.0.0.1:{free_port()}/dev", tokens))
        await recorder.client.start()
        for _ in range(3):
            await recorder.state(RECONNECTING)
        await recorder.client.close()
        assert tokens.calls >= 3
        assert UNAUTHORIZED not in recorder.states
        assert recorder.states[-1] == CLOSED

    run(scenario())


def test_a_connection_that_stops_answering_pings_is_replaced() -> None:
    connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def silent(ws: ServerConnection) -> None:
        connections.put_nowait(ws)
        async for _ in ws:  # reads pings, never answers
            pass

    async def scenario() -> None:
        async with serve(silent, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            tokens = Tokens(lambda: "token")
            recorder = Recorder(
                make_client(
                    f"ws://127.0.0.1:{port}/dev", tokens, ping_interval=0.05, pong_timeout=0.2
                )
            )
            await recorder.client.start()
            first = await asyncio.wait_for(connections.get(), TIMEOUT)
            await asyncio.wait_for(first.wait_closed(), TIMEOUT)
            assert first.close_code == 1001
            second = await asyncio.wait_for(connections.get(), TIMEOUT)
            assert second.request.path == "/dev?token=token"
            await recorder.client.close()

    run(scenario())


def test_duplicates_pongs_and_error_frames_are_not_notifications() -> None:
    async def scenario() -> None:
        client = NotificationClient("ws://unused", lambda: "t", dedupe_size=2)
        got: list[str] = []
        client.on_any(lambda envelope: got.append(envelope.id))
        frames = [
            {"id": "a", "type": "t", "data": 1, "sentAt": "s"},
            {"id": "a", "type": "t", "data": 1, "sentAt": "s"},
            {"type": "pong"},
            {"type": "error", "code": "unknown_action", "message": "..."},
            {"message": "Internal server error", "connectionId": "c", "requestId": "r"},
            {"id": "b", "type": "t", "data": 2, "sentAt": "s"},
            {"id": "c", "type": "t", "data": 3, "sentAt": "s"},
            {"id": "a", "type": "t", "data": 1, "sentAt": "s"},  # forgotten: the set is bounded
        ]
        for frame in frames:
            await client._handle(json.dumps(frame))
        await client._handle("not json")
        await client._handle("[1, 2]")
        assert got == ["a", "b", "c", "a"]

    run(scenario())


def test_a_failing_callback_does_not_stop_the_others() -> None:
    async def scenario() -> None:
        client = NotificationClient("ws://unused", lambda: "t")
        got: list[Any] = []

        def broken(envelope: Envelope) -> None:
            raise RuntimeError("app bug")

        async def works(envelope: Envelope) -> None:
            got.append(envelope.data)

        client.on("chat", broken)
        client.on("chat", works)
        await client._handle(json.dumps({"id": "x", "type": "chat", "data": 7, "sentAt": "s"}))
        assert got == [7]

    run(scenario())


def test_recent_ids_are_bounded_and_refreshed() -> None:
    recent = RecentIds(size=3)
    assert [recent.seen(i) for i in "abc"] == [False, False, False]
    assert recent.seen("a") is True  # refreshes "a"
    assert recent.seen("d") is False  # forgets "b", the oldest
    assert len(recent) == 3
    assert recent.seen("b") is False
    assert recent.seen("a") is True


def test_backoff_is_jittered_exponential_and_capped() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    for attempt in range(50):
        bound = min(30.0, 2.0**attempt)
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(0 <= delay <= bound for delay in delays)
    assert len({backoff.delay(5) for _ in range(20)}) > 1


def test_the_token_is_a_query_parameter() -> None:
    assert _with_token("wss://x/dev", "a.b.c") == "wss://x/dev?token=a.b.c"
    assert _with_token("wss://x/dev?v=1&token=old", "new") == "wss://x/dev?v=1&token=new"
