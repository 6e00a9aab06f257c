"""The WebSocket side: who may connect, what a connection answers, how it ends."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from functions.tokens import issue_token
from tests.e2e.clients import next_frame, open_client, run
from tests.e2e.conftest import LocalStack


def _refused_status(url: str) -> int:
    async def attempt() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with open_client(url):
                pass
        return refused.value.response.status_code

    return run(attempt())


def test_a_handshake_without_a_token_is_401_before_the_authorizer(stack: LocalStack) -> None:
    mark = len(stack.lines)
    assert _refused_status(stack.url(None)) == 401
    line = stack.wait_for_line(lambda text: "$connect refused 401" in text, start=mark)
    assert "no token" in line
    assert not any("authorizer" in text for text in stack.lines[mark:])


def test_a_forged_token_is_refused_and_never_reaches_connect(stack: LocalStack, user) -> None:
    mallory = user("mallory")
    forged = issue_token(mallory, "not-the-stack-key-but-long-enough-0123456789")
    assert _refused_status(stack.url(forged)) in (401, 403)
    assert stack.sessions_of(mallory) == []


def test_an_expired_token_is_refused_and_never_reaches_connect(stack: LocalStack, user) -> None:
    late = user("late")
    expired = stack.token(late, now=time.time() - 7200, ttl_seconds=60)
    assert _refused_status(stack.url(expired)) in (401, 403)
    assert stack.sessions_of(late) == []


def test_a_connection_is_a_session_until_the_client_closes_it(stack: LocalStack, user) -> None:
    alice = user("alice")

    async def scenario() -> str:
        async with open_client(stack.url(stack.token(alice))):
            (connection_id,) = stack.sessions_of(alice)
        return connection_id

    connection_id = run(scenario())
    stack.wait_for_log(f"conn={connection_id} $disconnect -> 200")
    assert not stack.session_exists(connection_id)


def test_ping_answers_pong_and_anything_else_an_error_frame(stack: LocalStack, user) -> None:
    async def scenario() -> None:
        async with open_client(stack.url(stack.token(user("alice")))) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}
            await ws.send("not json")
            error = await next_frame(ws)
            assert error["type"] == "error"
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}

    run(scenario())


def test_exactly_one_offered_subprotocol_comes_back(stack: LocalStack, user) -> None:
    async def scenario() -> None:
        url = stack.url(stack.token(user("alice")))
        async with open_client(url, subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol in ("a", "b")
            assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == [ws.subprotocol]
        async with open_client(url) as ws:
            assert ws.subprotocol is None
            assert "Sec-WebSocket-Protocol" not in ws.response.headers

    run(scenario())


def test_a_frame_over_the_message_limit_closes_with_1009(stack: LocalStack, user) -> None:
    async def scenario() -> None:
        async with open_client(stack.url(stack.token(user("alice")))) as ws:
            await ws.send("x" * (128 * 1024 + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009

    run(scenario())
