"""The @connections API answers as API Gateway's does, as seen by boto3."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from functions import contract
from tests.e2e.clients import next_frame, open_client, run
from tests.e2e.conftest import LocalStack

UNKNOWN_ID = "AAAAAAAAAAAAAAA="  # well formed, never issued


def _error(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as failed:
        call()
    response = failed.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_unknown_and_malformed_connection_ids(stack: LocalStack) -> None:
    api = stack.management()
    assert _error(lambda: api.post_to_connection(ConnectionId=UNKNOWN_ID, Data=b"x")) == (
        "GoneException",
        410,
    )
    assert _error(lambda: api.get_connection(ConnectionId=UNKNOWN_ID)) == ("GoneException", 410)
    # "+" is part of the id alphabet; it travels percent-encoded in the path.
    assert _error(lambda: api.delete_connection(ConnectionId="AAAA+AAAAAAAAAA=")) == (
        "GoneException",
        410,
    )
    assert _error(lambda: api.post_to_connection(ConnectionId="not-an-id", Data=b"x")) == (
        "BadRequestException",
        400,
    )


def test_post_get_oversize_and_delete_on_a_live_connection(stack: LocalStack, user) -> None:
    alice = user("alice")
    api = stack.management()

    async def scenario() -> str:
        async with open_client(stack.url(stack.token(alice)), user_agent="e2e-mgmt") as ws:
            (connection_id,) = stack.sessions_of(alice)

            await asyncio.to_thread(
                api.post_to_connection, ConnectionId=connection_id, Data=b'{"hello": 1}'
            )
            assert await next_frame(ws) == {"hello": 1}

            too_big = b"x" * (contract.MAX_MESSAGE_BYTES + 1)
            code = await asyncio.to_thread(
                _error, lambda: api.post_to_connection(ConnectionId=connection_id, Data=too_big)
            )
            assert code == ("PayloadTooLargeException", 413)
            # 413 leaves the connection as it was.
            await asyncio.to_thread(
                api.post_to_connection, ConnectionId=connection_id, Data=b'"still here"'
            )
            assert await next_frame(ws) == "still here"

            info = await asyncio.to_thread(api.get_connection, ConnectionId=connection_id)
            assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "e2e-mgmt"}
            assert info["ConnectedAt"] <= info["LastActiveAt"]

            deleted = await asyncio.to_thread(api.delete_connection, ConnectionId=connection_id)
            assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
            await asyncio.wait_for(ws.wait_closed(), 10)
            return connection_id

    connection_id = run(scenario())
    assert _error(lambda: api.post_to_connection(ConnectionId=connection_id, Data=b"x")) == (
        "GoneException",
        410,
    )
    stack.wait_for_log(f"conn={connection_id} $disconnect -> 200")
    assert not stack.session_exists(connection_id)


def test_an_unsigned_call_is_refused(stack: LocalStack) -> None:
    url = f"{stack.outputs['managementEndpoint']}/@connections/{UNKNOWN_ID}"
    request = urllib.request.Request(url, data=b"x", method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=10)
    assert refused.value.code == 403
