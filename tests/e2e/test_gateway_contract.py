"""The local gateway against scripted handlers: API Gateway behaviours the real handlers never
trigger on purpose (Deny policies, failing integrations, a post during `$connect`, timeouts),
and the exact event shapes each route receives.

The gateway runs in-process on a free port; clients are still the real `websockets` library and
a real boto3 `apigatewaymanagementapi` client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus

from functions import contract
from local.faults import Faults
from local.gateway import DevTools, Gateway, Limits
from tests.e2e.clients import next_frame, open_client, run

STAGE = "test"
REGION = "us-east-1"
ACCOUNT = "123456789012"


def allow(event: dict[str, Any], resource: str | None = None, effect: str = "Allow") -> Any:
    return {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": effect,
                    "Resource": resource or event["methodArn"],
                }
            ],
        },
        "context": {"userId": "alice", "plan": 3, "beta": True},
    }


class Script:
    """Handlers as functions of the event; records every event each handler received."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = threading.Condition()
        self.behaviour: dict[str, Callable[[dict[str, Any]], Any]] = {
            contract.AUTHORIZER: allow,
            contract.CONNECT: lambda event: {"statusCode": 200},
            contract.DEFAULT: lambda event: {"statusCode": 200, "body": event["body"]},
            contract.DISCONNECT: lambda event: {"statusCode": 200},
        }

    def invoke(self, handler: str, event: dict[str, Any]) -> Any:
        with self._changed:
            self.events[handler].append(event)
            self._changed.notify_all()
        return self.behaviour[handler](event)

    def wait_for(self, handler: str, count: int = 1, timeout: float = 10) -> dict[str, Any]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.events[handler]) >= count, timeout):
                raise AssertionError(f"{handler} was not invoked {count} time(s)")
            return self.events[handler][count - 1]


@contextlib.asynccontextmanager
async def serving(script: Script, limits: Limits | None = None) -> AsyncIterator[str]:
    """The gateway on a free port; yields its base URL (http://127.0.0.1:<port>)."""
    gateway = Gateway(
        stage=STAGE,
        region=REGION,
        account=ACCOUNT,
        lambdas=script,
        faults=Faults(),
        dev_tools=DevTools(issue_token=lambda user: "unused", publish=lambda *args: "unused"),
        websocket_url=lambda: "unused",
        limits=limits,
    )
    runner = web.AppRunner(gateway.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await gateway.close_all(timeout=2)
        await runner.cleanup()


def ws_url(base: str, token: str | None = "t0ken") -> str:
    url = base.replace("http://", "ws://") + f"/{STAGE}"
    return url if token is None else f"{url}?token={token}"


def management(base: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{base}/{STAGE}",
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


async def refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as failure:
        async with open_client(url):
            pass
    return failure.value.response.status_code


@pytest.mark.parametrize(
    ("authorizer", "status"),
    [
        (lambda event: allow(event, effect="Deny"), 403),
        (lambda event: allow(event, resource="arn:aws:execute-api:*:*:other/*"), 403),
        (lambda event: allow(event, resource=event["methodArn"].rsplit("/", 1)[0] + "/*"), 101),
        (lambda event: (_ for _ in ()).throw(Exception("Unauthorized")), 401),
        (lambda event: (_ for _ in ()).throw(RuntimeError("SSM down")), 500),
        (lambda event: {"principalId": "alice"}, 500),
        (lambda event: {**allow(event), "context": {"nested": {"no": 1}}}, 500),
    ],
    ids=["deny", "other-resource", "wildcard", "unauthorized", "raises", "no-policy", "nested"],
)
def test_the_authorizer_answer_decides_the_handshake(
    authorizer: Callable[[dict[str, Any]], Any], status: int
) -> None:
    script = Script()
    script.behaviour[contract.AUTHORIZER] = authorizer

    async def scenario() -> None:
        async with serving(script) as base:
            if status == 101:
                async with open_client(ws_url(base)):
                    pass
            else:
                assert await refused(ws_url(base)) == status

    run(scenario())
    assert len(script.events[contract.CONNECT]) == (1 if status == 101 else 0)


def test_no_token_is_401_without_invoking_the_authorizer() -> None:
    script = Script()

    async def scenario() -> None:
        async with serving(script) as base:
            assert await refused(ws_url(base, token=None)) == 401
            assert await refused(ws_url(base, token="")) == 401

    run(scenario())
    assert script.events[contract.AUTHORIZER] == []


def test_connect_refusing_or_failing_refuses_the_handshake_with_its_status() -> None:
    script = Script()

    async def scenario() -> None:
        async with serving(script) as base:
            script.behaviour[contract.CONNECT] = lambda event: {"statusCode": 429}
            assert await refused(ws_url(base)) == 429
            script.behaviour[contract.CONNECT] = lambda event: 1 / 0
            assert await refused(ws_url(base)) == 500

    run(scenario())
    # A connection that never opened has nothing to disconnect.
    assert script.events[contract.DISCONNECT] == []


def test_a_post_while_connect_runs_is_410_and_succeeds_once_open() -> None:
    script = Script()
    release = threading.Event()

    def slow_connect(event: dict[str, Any]) -> Any:
        release.wait(10)
        return {"statusCode": 200}

    script.behaviour[contract.CONNECT] = slow_connect

    async def scenario() -> None:
        async with serving(script) as base:
            api = management(base)
            opening = asyncio.ensure_future(open_client(ws_url(base)).__aenter__())
            event = await asyncio.to_thread(script.wait_for, contract.CONNECT)
            connection_id = event["requestContext"]["connectionId"]
            with pytest.raises(ClientError) as gone:
                await asyncio.to_thread(
                    api.post_to_connection, ConnectionId=connection_id, Data=b"early"
                )
            assert gone.value.response["Error"]["Code"] == "GoneException"
            release.set()
            ws = await opening
            await asyncio.to_thread(api.post_to_connection, ConnectionId=connection_id, Data=b"1")
            assert await next_frame(ws) == 1
            await ws.close()

    run(scenario())


def test_event_shapes_of_every_route() -> None:
    script = Script()

    async def scenario() -> None:
        async with (
            serving(script) as base,
            open_client(ws_url(base, "abc") + "&lang=en", user_agent="shape-test") as ws,
        ):
            await ws.send(json.dumps({"action": "unknown-route", "n": 1}))
            assert await next_frame(ws) == {"action": "unknown-route", "n": 1}

    run(scenario())
    authorizer = script.events[contract.AUTHORIZER][0]
    assert authorizer["type"] == "REQUEST"
    assert authorizer["methodArn"].startswith(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:")
    assert authorizer["methodArn"].endswith(f"/{STAGE}/$connect")
    assert authorizer["queryStringParameters"] == {"token": "abc", "lang": "en"}
    assert authorizer["multiValueQueryStringParameters"]["token"] == ["abc"]
    assert authorizer["headers"]["User-Agent"] == "shape-test"
    assert authorizer["stageVariables"] == {}
    assert authorizer["requestContext"]["routeKey"] == "$connect"
    assert authorizer["requestContext"]["eventType"] == "CONNECT"

    connect = script.events[contract.CONNECT][0]
    context = connect["requestContext"]
    connection_id = context["connectionId"]
    assert len(connection_id) == 16 and connection_id.endswith("=")
    assert context["authorizer"] == {
        "userId": "alice",
        "plan": "3",
        "beta": "true",
        "principalId": "alice",
    }
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "shape-test"}
    assert connect["queryStringParameters"]["token"] == "abc"
    assert "Sec-WebSocket-Key" in connect["headers"]

    message = script.events[contract.DEFAULT][0]
    assert message["requestContext"]["routeKey"] == "$default"
    assert message["requestContext"]["eventType"] == "MESSAGE"
    assert message["requestContext"]["messageId"]
    assert message["requestContext"]["authorizer"] == context["authorizer"]
    assert message["isBase64Encoded"] is False
    assert "headers" not in message and "queryStringParameters" not in message

    disconnect = script.wait_for(contract.DISCONNECT)
    assert disconnect["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnect["requestContext"]["connectionId"] == connection_id
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    assert "disconnectReason" in disconnect["requestContext"]
    assert disconnect["requestContext"]["authorizer"] == context["authorizer"]
    assert "headers" not in disconnect and "queryStringParameters" not in disconnect


def test_a_failing_route_answers_an_error_frame_and_keeps_the_connection() -> None:
    script = Script()
    answers = iter([RuntimeError("boom"), {"statusCode": 200, "body": '"fine"'}])

    def flaky(event: dict[str, Any]) -> Any:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    script.behaviour[contract.DEFAULT] = flaky

    async def scenario() -> None:
        async with serving(script) as base, open_client(ws_url(base)) as ws:
            await ws.send("first")
            error = await next_frame(ws)
            assert error["message"] == "Internal server error"
            assert error["connectionId"] and error["requestId"]
            await ws.send("second")
            assert await next_frame(ws) == "fine"

    run(scenario())


def test_no_subprotocol_is_sent_unless_connect_returns_one() -> None:
    script = Script()

    async def scenario() -> None:
        async with serving(script) as base:
            async with open_client(ws_url(base), subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol is None
            script.behaviour[contract.CONNECT] = lambda event: {
                "statusCode": 200,
                "headers": {"Sec-WebSocket-Protocol": "b"},
            }
            async with open_client(ws_url(base), subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol == "b"

    run(scenario())


def test_an_idle_connection_is_closed_with_1001() -> None:
    script = Script()

    async def scenario() -> None:
        # The one unavoidable wait: the idle timeout itself, shortened to a fraction of a second.
        async with (
            serving(script, Limits(idle_timeout_seconds=0.3)) as base,
            open_client(ws_url(base)) as ws,
        ):
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001

    run(scenario())
    disconnect = script.wait_for(contract.DISCONNECT)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1001
