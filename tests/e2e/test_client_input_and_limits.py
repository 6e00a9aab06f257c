"""What a client can send, and how long it may stay: API Gateway's frame, message and time limits.

- Frames the API does not understand get an error frame; the connection stays usable.
- A single frame over 32 KB, or a message over 128 KB (however it is fragmented), closes the
  connection with 1009 (Message Too Big).
- An idle connection is closed after the idle timeout, any connection after the maximum
  connection time, both with 1001 (Going Away) as API Gateway does; `$disconnect` then removes
  the session row. Both limits are shortened by `python -m local up` flags here.
- The session row's `expiresAt` (the table's TTL) is epoch seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed

from functions import contract
from infra.settings import settings_for_stack
from tests.e2e.clients import next_frame, open_client, run
from tests.e2e.conftest import LocalStack

KB = 1024


async def _closed_code(ws) -> int:  # type: ignore[no-untyped-def]
    """Wait for the server to close the connection; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        (json.dumps({"hello": "there"}), "missing_action"),
        (json.dumps({"action": "dance"}), "unknown_action"),
        (b"\x00\xff binary", "invalid_json"),
    ],
    ids=["non-json", "not-an-object", "missing-action", "unknown-action", "binary"],
)
def test_a_frame_the_api_does_not_understand_gets_an_error_and_the_connection_stays(
    stack: LocalStack, user: Callable[[str], str], frame: str | bytes, code: str
) -> None:
    async def scenario() -> None:
        async with open_client(stack.url(stack.token(user("alice")))) as ws:
            await ws.send(frame)
            error = await next_frame(ws)
            assert error["type"] == "error"
            assert error["code"] == code
            assert error["message"]
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}

    run(scenario())


def test_a_single_frame_over_32_kb_closes_with_1009(stack: LocalStack, user) -> None:
    alice = user("alice")

    async def scenario() -> str:
        async with open_client(stack.url(stack.token(alice))) as ws:
            (connection_id,) = stack.sessions_of(alice)
            # Exactly 32 KB in one frame is still fine.
            padding = "x" * (32 * KB - len(json.dumps({"action": "ping", "pad": ""})))
            await ws.send(json.dumps({"action": "ping", "pad": padding}))
            assert await next_frame(ws) == {"type": "pong"}
            await ws.send(json.dumps({"action": "ping", "pad": "x" * (40 * KB)}))
            assert await _closed_code(ws) == 1009
        return connection_id

    connection_id = run(scenario())
    stack.wait_for_log(f"conn={connection_id} $disconnect -> 200")
    assert not stack.session_exists(connection_id)


def test_a_fragmented_message_over_128_kb_closes_with_1009(stack: LocalStack, user) -> None:
    def fragments(total: int) -> list[str]:
        # A ping of exactly `total` bytes of JSON, in frames of 30 KB (under the frame limit).
        head, tail = '{"action": "ping", "pad": "', '"}'
        text = head + "x" * (total - len(head) - len(tail)) + tail
        assert len(text) == total
        return [text[i : i + 30 * KB] for i in range(0, total, 30 * KB)]

    async def scenario() -> None:
        async with open_client(stack.url(stack.token(user("alice")))) as ws:
            # 100 KB in four frames: a message under the limit, answered as usual.
            under = fragments(100 * KB)
            assert len(under) == 4 and all(len(part) <= 32 * KB for part in under)
            await ws.send(under)
            assert await next_frame(ws) == {"type": "pong"}
            over = fragments(130 * KB)
            assert all(len(part) <= 32 * KB for part in over)
            await ws.send(over)
            assert await _closed_code(ws) == 1009

    run(scenario())


def test_the_session_row_expires_in_epoch_seconds(stack: LocalStack, user) -> None:
    alice = user("alice")
    ttl = settings_for_stack(stack.outputs["stack"]).connection_ttl_seconds

    async def scenario() -> None:
        before = time.time()
        async with open_client(stack.url(stack.token(alice))):
            after = time.time()
            (connection_id,) = stack.sessions_of(alice)
            row = stack.session(connection_id)
            assert row is not None
            expires_at = int(row[contract.EXPIRES_AT]["N"])
            # Seconds, not milliseconds: now + the stack's connectionTtlSeconds.
            assert int(before) + ttl - 1 <= expires_at <= int(after) + ttl + 1
            assert ttl > contract.CONNECTION_MAX_SECONDS

    run(scenario())


def test_an_idle_connection_is_closed_with_1001_and_its_row_removed(
    local_stack: Callable[..., LocalStack], user
) -> None:
    short = local_stack("--idle-timeout-seconds", "1")
    alice = user("alice")

    async def scenario() -> str:
        async with open_client(short.url(short.token(alice))) as ws:
            (connection_id,) = short.sessions_of(alice)
            # The wait is the idle timeout itself: nothing is sent until the server closes.
            assert await _closed_code(ws) == 1001
        return connection_id

    connection_id = run(scenario())
    line = short.wait_for_log(f"conn={connection_id} CLOSED")
    assert "code=1001" in line and "Idle timeout" in line
    short.wait_for_log(f"conn={connection_id} $disconnect -> 200")
    assert not short.session_exists(connection_id)


def test_a_connection_is_closed_at_the_maximum_connection_time_with_1001(
    local_stack: Callable[..., LocalStack], user
) -> None:
    short = local_stack("--max-connection-seconds", "2")
    alice = user("alice")

    async def scenario() -> str:
        async with open_client(short.url(short.token(alice))) as ws:
            (connection_id,) = short.sessions_of(alice)
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}
            # The idle timeout is API Gateway's 10 minutes here: only the age limit can close it.
            assert await _closed_code(ws) == 1001
        return connection_id

    connection_id = run(scenario())
    line = short.wait_for_log(f"conn={connection_id} CLOSED")
    assert "code=1001" in line and "Connection duration limit" in line
    short.wait_for_log(f"conn={connection_id} $disconnect -> 200")
    assert not short.session_exists(connection_id)
