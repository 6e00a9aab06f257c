from __future__ import annotations

from typing import Any

import pytest

from functions import aws, contract, retry, sessions
from tests.unit.conftest import TABLE, TTL_SECONDS, add_session, session_rows


def count_calls(operation: str) -> list[dict[str, Any]]:
    """Requests the handlers' cached DynamoDB clients send for one operation."""
    calls: list[dict[str, Any]] = []
    for retried in (True, False):  # the publish path's single-attempt client too
        aws.client("dynamodb", retried=retried).meta.events.register(
            f"before-parameter-build.dynamodb.{operation}",
            lambda params, **_: calls.append(params),
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

    assert found == dict.fromkeys(sorted(mine), "2026-12-03T18:00:00.000Z")
    assert len(queries) >= len(mine)
    assert all(query["Limit"] == 1 for query in queries)
    assert all(query["IndexName"] == contract.USER_INDEX for query in queries)
    assert all("ConsistentRead" not in query for query in queries)


def test_connections_of_unknown_user_is_empty(dynamodb: Any) -> None:
    add_session(dynamodb, "conn-1=", "user-1")
    assert sessions.connections_of("nobody") == {}


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


def test_connections_carry_when_they_connected(dynamodb: Any) -> None:
    # The index projects connectedAt: how old a gone connection is needs no second read.
    sessions.put_session("conn-1=", "user-1", now=1_796_322_040.5)
    assert sessions.connections_of("user-1") == {"conn-1=": "2026-12-03T18:20:40.500Z"}
    assert sessions.all_connections() == {"conn-1=": "2026-12-03T18:20:40.500Z"}


NOW = 1_000_000.0
CONNECTED = "1970-01-12T13:46:40.000Z"  # NOW as put_session writes it


def lookup(*connection_ids: str) -> dict[str, str | None]:
    """What the index answers for these connections (every one connected at NOW)."""
    return dict.fromkeys(connection_ids, CONNECTED)


def test_gone_connections_past_the_connecting_grace_are_deleted_in_batches(
    dynamodb: Any,
) -> None:
    gone = [f"gone-{n:02d}=" for n in range(60)]
    for connection_id in [*gone, "live="]:
        sessions.put_session(connection_id, "user-1", now=NOW)
    batches = count_calls("BatchWriteItem")
    single_deletes = count_calls("DeleteItem")

    forgotten = sessions.forget_gone(lookup(*gone), now=NOW + 5)

    assert sorted(forgotten.deleted) == gone
    assert (forgotten.kept, forgotten.failed) == ((), ())
    assert set(session_rows(dynamodb)) == {"live="}
    assert [len(batch["RequestItems"][TABLE]) for batch in batches] == [25, 25, 10]
    assert single_deletes == []


def test_a_gone_connection_still_within_the_connecting_grace_is_kept(dynamodb: Any) -> None:
    # A 410 while `$connect` has not returned yet: the row belongs to a client about to open.
    sessions.put_session("opening=", "user-1", now=NOW)
    batches = count_calls("BatchWriteItem")
    forgotten = sessions.forget_gone(lookup("opening="), now=NOW + 4.9)
    assert (forgotten.deleted, forgotten.kept) == ((), ("opening=",))
    assert set(session_rows(dynamodb)) == {"opening="}
    assert batches == []


def test_a_gone_connection_of_unknown_age_gets_a_delete_conditional_on_its_age(
    dynamodb: Any,
) -> None:
    # Owed connections a retry resumes come from the pending record, which has no ages.
    sessions.put_session("old=", "user-1", now=NOW)
    sessions.put_session("opening=", "user-1", now=NOW + 1)
    forgotten = sessions.forget_gone({"old=": None, "opening=": None}, now=NOW + 5.5)
    assert (forgotten.deleted, forgotten.kept) == (("old=",), ("opening=",))
    assert set(session_rows(dynamodb)) == {"opening="}


def test_forgetting_an_unknown_connection_is_not_an_error(dynamodb: Any) -> None:
    forgotten = sessions.forget_gone({"never-seen=": None, **lookup("never-listed=")}, now=NOW + 9)
    assert forgotten.failed == ()
    assert forgotten.kept == ("never-seen=",)  # the conditional delete found no row


def test_unprocessed_deletes_are_retried_and_a_failing_batch_is_reported(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DynamoDB answers a throttled batch with UnprocessedItems, not an error.
    for connection_id in ("a=", "b=", "c="):
        sessions.put_session(connection_id, "user-1", now=NOW)
    client = aws.client("dynamodb", retried=False)
    real = client.batch_write_item
    answers = iter(["leave b= unprocessed", "process all"])

    def throttled_once(**request: Any) -> Any:
        if next(answers, None) == "leave b= unprocessed":
            requests = request["RequestItems"][TABLE]
            left = [r for r in requests if r["DeleteRequest"]["Key"]["connectionId"]["S"] == "b="]
            real(RequestItems={TABLE: [r for r in requests if r not in left]})
            return {"UnprocessedItems": {TABLE: left}}
        return real(**request)

    monkeypatch.setattr(client, "batch_write_item", throttled_once)
    pauses: list[float] = []
    backoff = retry.Backoff(sleep=pauses.append, random=lambda: 1.0)
    forgotten = sessions.forget_gone(lookup("a=", "b=", "c="), backoff, now=NOW + 5)
    assert sorted(forgotten.deleted) == ["a=", "b=", "c="]
    assert session_rows(dynamodb) == {}
    assert pauses == [0.1]

    sessions.put_session("d=", "user-1", now=NOW)
    monkeypatch.setattr(
        client,
        "batch_write_item",
        lambda **request: {"UnprocessedItems": request["RequestItems"]},  # always throttled
    )
    forgotten = sessions.forget_gone(lookup("d="), backoff, now=NOW + 5)
    assert (forgotten.deleted, forgotten.failed) == ((), ("d=",))
    assert "unprocessed" in str(forgotten.errors[0])
    assert set(session_rows(dynamodb)) == {"d="}  # TTL removes it later
