from __future__ import annotations

from typing import Any

import pytest

from functions import aws, contract, sessions
from tests.unit.conftest import TABLE, TTL_SECONDS, add_session, session_rows


def count_calls(operation: str) -> list[dict[str, Any]]:
    """Requests the handlers' cached DynamoDB client sends for one operation."""
    calls: list[dict[str, Any]] = []
    aws.client("dynamodb").meta.events.register(
        f"before-parameter-build.dynamodb.{operation}", lambda params, **_: calls.append(params)
    )
    return calls


def test_put_session_writes_the_row(dynamodb: Any) -> None:
    sessions.put_session("conn-1=", "user-1", now=1_796_322_040.5)
    assert session_rows(dynamodb)["conn-1="] == {
        "connectionId": {"S": "conn-1="},
        "userId": {"S": "user-1"},
        "connectedAt": {"S": "2026-12-03T18:20:40.500Z"},
        "expiresAt": {"N": str(1_796_322_040 + TTL_SECONDS)},
    }


def test_put_session_needs_a_ttl_setting(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contract.ENV_CONNECTION_TTL_SECONDS)
    with pytest.raises(RuntimeError, match=contract.ENV_CONNECTION_TTL_SECONDS):
        sessions.put_session("conn-1=", "user-1")
    assert session_rows(dynamodb) == {}


def test_connections_of_follows_every_page_of_the_index(dynamodb: Any) -> None:
    mine = {f"conn-{n:02d}=" for n in range(12)}
    for connection_id in mine:
        add_session(dynamodb, connection_id, "user-1")
    add_session(dynamodb, "theirs=", "user-2")
    queries = count_calls("Query")

    found = sessions.connections_of("user-1", page_size=1)

    assert sorted(found) == sorted(mine)
    assert len(queries) >= len(mine)
    assert all(query["Limit"] == 1 for query in queries)
    assert all(query["IndexName"] == contract.USER_INDEX for query in queries)
    assert all("ConsistentRead" not in query for query in queries)


def test_connections_of_unknown_user_is_empty(dynamodb: Any) -> None:
    add_session(dynamodb, "conn-1=", "user-1")
    assert sessions.connections_of("nobody") == []


def test_all_connections_reads_every_segment_and_page(dynamodb: Any) -> None:
    everyone = {f"conn-{n:02d}=" for n in range(20)}
    for n, connection_id in enumerate(sorted(everyone)):
        add_session(dynamodb, connection_id, f"user-{n % 3}")
    scans = count_calls("Scan")

    found = sessions.all_connections(segments=3, page_size=2)

    assert sorted(found) == sorted(everyone)  # each exactly once
    assert {scan["Segment"] for scan in scans} == {0, 1, 2}
    assert {scan["TotalSegments"] for scan in scans} == {3}
    assert len(scans) > 3


def test_delete_session_of_unknown_connection_is_fine(dynamodb: Any) -> None:
    sessions.delete_session("never-existed=")
    assert session_rows(dynamodb) == {}


def test_a_gone_connection_past_the_connecting_grace_is_deleted(dynamodb: Any) -> None:
    sessions.put_session("old=", "user-1", now=1_000_000.0)
    assert sessions.forget_gone("old=", now=1_000_000.0 + 5) is True
    assert "Item" not in dynamodb.get_item(
        TableName=TABLE, Key={contract.CONNECTION_ID: {"S": "old="}}
    )


def test_a_gone_connection_still_within_the_connecting_grace_is_kept(dynamodb: Any) -> None:
    # A 410 while `$connect` has not returned yet: the row belongs to a client about to open.
    sessions.put_session("opening=", "user-1", now=1_000_000.0)
    assert sessions.forget_gone("opening=", now=1_000_000.0 + 4.9) is False
    assert "Item" in dynamodb.get_item(
        TableName=TABLE, Key={contract.CONNECTION_ID: {"S": "opening="}}
    )


def test_forgetting_an_unknown_connection_is_not_an_error(dynamodb: Any) -> None:
    assert sessions.forget_gone("never-seen=") is False
