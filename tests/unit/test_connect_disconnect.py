from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from functions import connect, contract, disconnect
from tests.unit import events
from tests.unit.conftest import TTL_SECONDS, add_session, session_rows


def test_connect_records_the_connection_with_ttl_in_epoch_seconds(dynamodb: Any) -> None:
    before = time.time()
    assert connect.handler(events.connect_event("conn-1=", "user-1"), None) == {"statusCode": 200}
    after = time.time()

    row = session_rows(dynamodb)["conn-1="]
    assert row[contract.USER_ID] == {"S": "user-1"}
    expires_at = int(row[contract.EXPIRES_AT]["N"])
    assert int(before) + TTL_SECONDS <= expires_at <= int(after) + TTL_SECONDS
    assert expires_at < 10**10  # seconds, not milliseconds
    connected_at = datetime.fromisoformat(row[contract.CONNECTED_AT]["S"].replace("Z", "+00:00"))
    assert connected_at.tzinfo is not None and connected_at.utcoffset().total_seconds() == 0
    assert before - 1 <= connected_at.timestamp() <= after + 1
    assert datetime.fromtimestamp(expires_at, UTC) > connected_at


def test_connect_row_is_found_through_the_user_index(dynamodb: Any) -> None:
    connect.handler(events.connect_event("conn-1=", "user-1"), None)
    found = dynamodb.query(
        TableName="sessions-test",
        IndexName=contract.USER_INDEX,
        KeyConditionExpression="userId = :u",
        ExpressionAttributeValues={":u": {"S": "user-1"}},
    )["Items"]
    assert [item[contract.CONNECTION_ID]["S"] for item in found] == ["conn-1="]


@pytest.mark.parametrize("header_name", ["Sec-WebSocket-Protocol", "sec-websocket-protocol"])
def test_connect_answers_exactly_one_offered_subprotocol(dynamodb: Any, header_name: str) -> None:
    event = events.connect_event("conn-1=", "user-1", headers={header_name: "chat.v2, chat.v1"})
    assert connect.handler(event, None) == {
        "statusCode": 200,
        "headers": {"Sec-WebSocket-Protocol": "chat.v2"},
    }
    assert "conn-1=" in session_rows(dynamodb)


def test_connect_without_authorized_user_is_refused_and_writes_nothing(dynamodb: Any) -> None:
    assert connect.handler(events.connect_event("conn-1=", None), None) == {"statusCode": 403}
    assert session_rows(dynamodb) == {}


def test_connect_ignores_user_ids_outside_the_authorizer_context(dynamodb: Any) -> None:
    event = events.connect_event("conn-1=", "user-1", headers={"userId": "mallory"})
    event["queryStringParameters"]["userId"] = "mallory"
    connect.handler(event, None)
    assert session_rows(dynamodb)["conn-1="][contract.USER_ID] == {"S": "user-1"}


def test_disconnect_deletes_only_its_row_and_is_idempotent(dynamodb: Any) -> None:
    add_session(dynamodb, "conn-1=", "user-1")
    add_session(dynamodb, "conn-2=", "user-1")
    assert disconnect.handler(events.disconnect_event("conn-1="), None) == {"statusCode": 200}
    assert set(session_rows(dynamodb)) == {"conn-2="}
    assert disconnect.handler(events.disconnect_event("conn-1="), None) == {"statusCode": 200}
    assert set(session_rows(dynamodb)) == {"conn-2="}
