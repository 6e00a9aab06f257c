"""The publish handler: fan-out, bad input, retries, pending deliveries, dead letters."""

from __future__ import annotations

import functools
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import aws, contract, dead_letters, pending, publish, retry, sessions
from local.resources import create_pending_deliveries_table
from tests.unit import events
from tests.unit.conftest import _test_session, add_session, session_rows
from tests.unit.events import sns_event, sns_record, string, string_array
from tests.unit.management_api import GatewayManagementApi, ScriptedManagementApi

MESSAGE_ID = "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
SENT_AT = "2026-12-03T18:20:40.123Z"
PENDING_TABLE = "pending-deliveries-test"
DLQ_NAME = "dead-letters-test"


class Sleeps(list[float]):
    """The pauses the retry policy asked for, instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    recorded = Sleeps()
    monkeypatch.setattr(publish, "BACKOFF", retry.Backoff(sleep=recorded, random=lambda: 1.0))
    return recorded


@pytest.fixture
def sqs(moto: None) -> Any:
    return _test_session.client("sqs", region_name=events.REGION)


@pytest.fixture(autouse=True)
def failure_handling(moto: None, sqs: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dead-letter queue and the pending-deliveries table, as the stack provides them."""
    queue_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    create_pending_deliveries_table(
        _test_session.client("dynamodb", region_name=events.REGION), PENDING_TABLE
    )
    monkeypatch.setenv(contract.ENV_DEAD_LETTER_QUEUE_URL, queue_url)
    monkeypatch.setenv(contract.ENV_PENDING_DELIVERIES_TABLE, PENDING_TABLE)
    return queue_url


def dead_lettered(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message in the dead-letter queue (bodies parsed), left in place."""
    found: dict[str, dict[str, Any]] = {}
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return list(found.values())
        for message in messages:
            body = json.loads(message["Body"])
            body["_reasonAttribute"] = message["MessageAttributes"]["reason"]["StringValue"]
            found[message["MessageId"]] = body


def pending_items() -> dict[str, dict[str, Any]]:
    client = _test_session.client("dynamodb", region_name=events.REGION)
    items = client.scan(TableName=PENDING_TABLE, ConsistentRead=True)["Items"]
    return {item[contract.PENDING_NOTIFICATION_ID]["S"]: item for item in items}


def owed(notification_id: str) -> set[str] | None:
    item = pending_items().get(notification_id)
    if item is None:
        return None
    return set(item.get(contract.PENDING_REMAINING, {}).get("SS", []))


@pytest.fixture
def users(dynamodb: Any) -> Any:
    """user-1 on two devices, user-2 and user-3 on one each."""
    for connection_id, user_id in [
        ("u1-web=", "user-1"),
        ("u1-phone=", "user-1"),
        ("u2-web=", "user-2"),
        ("u3-web=", "user-3"),
    ]:
        add_session(dynamodb, connection_id, user_id)
    return dynamodb


def run(*records: dict[str, Any]) -> dict[str, int]:
    return publish.handler(sns_event(*records), None)


def frames(api: ScriptedManagementApi) -> dict[str, Any]:
    """The last frame each connection received, parsed."""
    return {cid: json.loads(data) for cid, data in api.last_delivered().items()}


def test_one_user_gets_the_envelope_on_every_connection(
    users: Any, management_api: ScriptedManagementApi
) -> None:
    summary = run(sns_record('{"text": "hi", "n": 1}', {"userId": string("user-1")}))

    expected = {
        "id": MESSAGE_ID,
        "type": "notification",
        "data": {"text": "hi", "n": 1},
        "sentAt": SENT_AT,
    }
    assert frames(management_api) == {"u1-web=": expected, "u1-phone=": expected}
    posted = management_api.last_delivered()
    assert posted["u1-web="] == posted["u1-phone="]  # serialized once, same bytes to each
    assert summary == {
        "messages": 1,
        "rejected": 0,
        "oversized": 0,
        "lookup_failed": 0,
        "connections": 2,
        "delivered": 2,
        "gone": 0,
        "failed": 0,
        "payload_too_large": 0,
        "resumed": 0,
        "dead_lettered": 0,
        "dead_letter_failed": 0,
    }
    # The normal path writes nothing to the pending table and nothing to the queue.
    assert pending_items() == {}


def test_text_payload_and_custom_type_reach_the_client(
    users: Any, management_api: ScriptedManagementApi
) -> None:
    run(sns_record("plain words", {"userId": string("user-2"), "type": string("chat.message")}))
    assert frames(management_api) == {
        "u2-web=": {
            "id": MESSAGE_ID,
            "type": "chat.message",
            "data": "plain words",
            "sentAt": SENT_AT,
        }
    }


def test_string_array_reaches_each_named_user_once(
    users: Any, management_api: ScriptedManagementApi
) -> None:
    summary = run(
        sns_record('{"k": 1}', {"userId": string_array(["user-1", "user-2", "user-1", "ghost"])})
    )
    assert set(frames(management_api)) == {"u1-web=", "u1-phone=", "u2-web="}
    assert all(
        len(data) == len(management_api.last_delivered()["u2-web="])
        for data in management_api.last_delivered().values()
    )
    assert summary["delivered"] == 3


def test_broadcast_reaches_everyone_when_enabled(
    users: Any, management_api: ScriptedManagementApi
) -> None:
    summary = run(sns_record('"maintenance at 22:00"', {"broadcast": string("all")}))
    assert set(frames(management_api)) == {"u1-web=", "u1-phone=", "u2-web=", "u3-web="}
    assert {frame["data"] for frame in frames(management_api).values()} == {"maintenance at 22:00"}
    assert summary["delivered"] == 4


def test_broadcast_is_refused_when_disabled(
    users: Any,
    monkeypatch: pytest.MonkeyPatch,
    sqs: Any,
    failure_handling: str,
    management_api: ScriptedManagementApi,
) -> None:
    monkeypatch.setenv(contract.ENV_BROADCAST_ENABLED, "false")
    summary = run(sns_record("{}", {"broadcast": string("all")}))
    assert frames(management_api) == {}
    assert summary["rejected"] == 1
    assert summary["delivered"] == 0
    [letter] = dead_lettered(sqs, failure_handling)
    assert letter["reason"] == dead_letters.INVALID_TARGET
    assert "disabled" in letter["detail"]


def test_every_page_of_a_users_connections_is_reached(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, management_api: ScriptedManagementApi
) -> None:
    many = {f"conn-{n:02d}=" for n in range(30)}
    for connection_id in many:
        add_session(dynamodb, connection_id, "user-1")
    monkeypatch.setattr(
        sessions, "connections_of", functools.partial(sessions.connections_of, page_size=1)
    )
    summary = run(sns_record("{}", {"userId": string("user-1")}))
    assert set(frames(management_api)) == many
    assert summary["delivered"] == 30


def test_gone_connection_row_is_deleted_and_is_not_a_failure(
    dynamodb: Any, scripted_management: Any
) -> None:
    add_session(dynamodb, "closed=", "user-1")
    add_session(dynamodb, "other-user=", "user-2")
    api = scripted_management({"closed=": (410, "GoneException")})
    summary = run(sns_record("{}", {"userId": string("user-1")}))
    assert api.posts == {"closed=": [publish.envelope(MESSAGE_ID, "notification", "{}", SENT_AT)]}
    assert set(session_rows(dynamodb)) == {"other-user="}
    assert (summary["gone"], summary["failed"], summary["delivered"]) == (1, 0, 0)


def test_gone_and_live_connections_of_one_user(users: Any, scripted_management: Any) -> None:
    api = scripted_management({"u1-phone=": (410, "GoneException")})
    summary = run(sns_record("{}", {"userId": string("user-1")}))
    assert set(api.posts) == {"u1-web=", "u1-phone="}
    assert set(session_rows(users)) == {"u1-web=", "u2-web=", "u3-web="}
    assert (summary["delivered"], summary["gone"], summary["failed"]) == (1, 1, 0)


def test_a_broadcast_deletes_the_gone_rows_it_finds_in_batches(
    dynamodb: Any, gateway: GatewayManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a deployment most rows can be stale: 60 gone, 5 live, and one still connecting.
    gone = [f"gone-{n:02d}=" for n in range(60)]
    live = [f"live-{n}=" for n in range(5)]
    for connection_id in [*gone, *live]:
        add_session(dynamodb, connection_id, "user-1")
    sessions.put_session("opening=", "user-2")  # `$connect` has not returned: 410 for now
    gateway.open.update(live)
    calls: dict[str, int] = {}
    client = aws.client("dynamodb", retried=False)
    for operation in ("BatchWriteItem", "DeleteItem"):
        client.meta.events.register(
            f"before-call.dynamodb.{operation}",
            lambda operation=operation, **_: calls.update({operation: calls.get(operation, 0) + 1}),
        )

    summary = run(sns_record('"maintenance"', {"broadcast": string("all")}))

    assert set(gateway.delivered) == set(live)
    assert (summary["delivered"], summary["gone"], summary["failed"]) == (5, 61, 0)
    assert set(session_rows(dynamodb)) == {*live, "opening="}
    assert calls == {"BatchWriteItem": 3}  # 25 + 25 + 10, and not one delete per row


def test_server_errors_raise_after_every_connection_was_tried(
    users: Any, scripted_management: Any
) -> None:
    api = scripted_management({"u1-phone=": (500, "InternalServerErrorException")})
    event = sns_event(
        sns_record("{}", {"userId": string("user-1")}, message_id="m-1"),
        sns_record("{}", {"userId": string("user-2")}, message_id="m-2"),
    )
    with pytest.raises(publish.PublishIncomplete, match="failed=1") as caught:
        publish.handler(event, None)
    assert set(api.delivered) == {"u1-web=", "u2-web="}
    assert json.loads(api.delivered["u2-web="][0])["id"] == "m-2"
    assert caught.value.summary["delivered"] == 2
    assert caught.value.summary["failed"] == 1
    # Retried inside the invocation first: every attempt the policy allows.
    assert len(api.posts["u1-phone="]) == publish.BACKOFF.max_attempts
    # Failures are not gone connections: their rows stay.
    assert set(session_rows(users)) == {"u1-web=", "u1-phone=", "u2-web=", "u3-web="}


def test_payload_too_large_is_dead_lettered_the_row_stays_and_nothing_is_raised(
    users: Any, scripted_management: Any, sqs: Any, failure_handling: str
) -> None:
    api = scripted_management({"u1-web=": (413, "PayloadTooLargeException")})
    record = sns_record('{"k": 1}', {"userId": string("user-1")}, message_id="m-413")
    summary = run(record)
    assert set(api.delivered) == {"u1-phone="}
    assert len(api.posts["u1-web="]) == 1  # a 413 is not retried
    assert (summary["payload_too_large"], summary["delivered"], summary["failed"]) == (1, 1, 0)
    assert summary["dead_lettered"] == 1
    assert set(session_rows(users)) == {"u1-web=", "u1-phone=", "u2-web=", "u3-web="}
    [letter] = dead_lettered(sqs, failure_handling)
    assert letter == {
        "reason": "payload_too_large",
        "detail": "1 connection(s) answered 413 Payload Too Large",
        "notificationId": "m-413",
        "source": "publish",
        "record": record,
        "connections": ["u1-web="],
        "_reasonAttribute": "payload_too_large",
    }
    assert pending_items() == {}


def test_posts_run_concurrently_up_to_the_configured_bound(
    dynamodb: Any, scripted_management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(contract.ENV_PUBLISH_CONCURRENCY, "4")
    for n in range(12):
        add_session(dynamodb, f"conn-{n:02d}=", "user-1")
    api = scripted_management({}, delay=0.05)
    summary = run(sns_record("{}", {"userId": string("user-1")}))
    assert summary["delivered"] == 12
    assert api.most_in_flight == 4


def test_envelope_at_the_limit_is_posted_one_byte_more_is_dead_lettered(
    users: Any, sqs: Any, failure_handling: str, management_api: ScriptedManagementApi
) -> None:
    overhead = len(publish.envelope(MESSAGE_ID, "notification", "", SENT_AT))
    fits = "x" * (contract.MAX_MESSAGE_BYTES - overhead)
    assert len(publish.envelope(MESSAGE_ID, "notification", fits, SENT_AT)) == (
        contract.MAX_MESSAGE_BYTES
    )
    run(sns_record(fits, {"userId": string("user-2")}))
    assert frames(management_api)["u2-web="]["data"] == fits

    too_large = sns_record(fits + "x", {"userId": string("user-3")})
    summary = run(too_large)  # not raised: a retry cannot make it smaller
    assert "u3-web=" not in management_api.last_delivered()
    assert (summary["oversized"], summary["connections"], summary["dead_lettered"]) == (1, 0, 1)
    [letter] = dead_lettered(sqs, failure_handling)
    assert letter["reason"] == dead_letters.TOO_LARGE
    assert letter["notificationId"] == MESSAGE_ID
    assert letter["record"] == too_large
    assert f"at most {contract.MAX_MESSAGE_BYTES}" in letter["detail"]


def test_oversized_multibyte_payload_is_measured_in_bytes(
    users: Any, sqs: Any, failure_handling: str, management_api: ScriptedManagementApi
) -> None:
    payload = json.dumps({"text": "é" * (contract.MAX_MESSAGE_BYTES // 2)}, ensure_ascii=False)
    assert run(sns_record(payload, {"userId": string("user-2")}))["oversized"] == 1
    assert frames(management_api) == {}
    assert [letter["reason"] for letter in dead_lettered(sqs, failure_handling)] == ["too_large"]


BAD_ATTRIBUTES = {
    # Missing or empty target.
    "no-target": ({}, "invalid_target"),
    "type-only": ({"type": string("chat")}, "invalid_target"),
    "empty-user": ({"userId": string("")}, "invalid_target"),
    "blank-user": ({"userId": string("   ")}, "invalid_target"),
    # String.Array that is not valid JSON, not a list, empty, or has non-string ids.
    "array-not-json": ({"userId": {"Type": "String.Array", "Value": "user-1"}}, "invalid_target"),
    "array-not-list": (
        {"userId": {"Type": "String.Array", "Value": '{"user": "user-1"}'}},
        "invalid_target",
    ),
    "array-empty": ({"userId": string_array([])}, "invalid_target"),
    "array-non-string": ({"userId": string_array(["user-1", 7])}, "invalid_target"),
    "array-null": ({"userId": string_array(["user-1", None])}, "invalid_target"),
    "array-empty-string": ({"userId": string_array(["user-1", ""])}, "invalid_target"),
    # More users than contract.MAX_TARGET_USERS.
    "too-many-users": (
        {"userId": string_array([f"user-{n}" for n in range(contract.MAX_TARGET_USERS + 1)])},
        "invalid_target",
    ),
    "broadcast-not-all": ({"broadcast": string("everyone")}, "invalid_target"),
    "both-targets": ({"userId": string("user-1"), "broadcast": string("all")}, "invalid_target"),
    # Attributes of ours in unexpected shapes or data types.
    "number-user": ({"userId": {"Type": "Number", "Value": "42"}}, "invalid_attributes"),
    "binary-user": ({"userId": {"Type": "Binary", "Value": "dXNlci0x"}}, "invalid_attributes"),
    "unknown-type-user": ({"userId": {"Type": "Strange", "Value": "u"}}, "invalid_attributes"),
    "no-type-user": ({"userId": {"Value": "user-1"}}, "invalid_attributes"),
    "non-string-user-value": ({"userId": {"Type": "String", "Value": 1}}, "invalid_attributes"),
    "missing-user-value": ({"userId": {"Type": "String"}}, "invalid_attributes"),
    "user-not-an-object": ({"userId": "user-1"}, "invalid_attributes"),
    "broadcast-wrong-type": (
        {"broadcast": {"Type": "String.Array", "Value": '["all"]'}},
        "invalid_attributes",
    ),
    "type-not-string": (
        {"userId": string("user-1"), "type": {"Type": "Number", "Value": "3"}},
        "invalid_attributes",
    ),
    "type-empty": ({"userId": string("user-1"), "type": string("")}, "invalid_attributes"),
    "id-not-string": (
        {"userId": string("user-1"), "notificationId": {"Type": "Number", "Value": "7"}},
        "invalid_attributes",
    ),
    "id-empty": ({"userId": string("user-1"), "notificationId": string("")}, "invalid_attributes"),
    "id-too-long": (
        {"userId": string("user-1"), "notificationId": string("n" * 257)},
        "invalid_attributes",
    ),
    "attributes-not-an-object": (["userId", "user-1"], "invalid_attributes"),
}


@pytest.mark.parametrize(("attributes", "reason"), BAD_ATTRIBUTES.values(), ids=BAD_ATTRIBUTES)
def test_bad_attributes_are_dead_lettered_and_the_rest_of_the_batch_is_delivered(
    users: Any,
    attributes: Any,
    reason: str,
    caplog: pytest.LogCaptureFixture,
    sqs: Any,
    failure_handling: str,
    management_api: ScriptedManagementApi,
) -> None:
    bad = sns_record('{"bad": true}', attributes, message_id="bad-1")
    summary = run(bad, sns_record('{"good": true}', {"userId": string("user-2")}, message_id="ok"))
    assert summary["rejected"] == 1
    assert summary["messages"] == 2
    assert summary["dead_lettered"] == 1
    assert {cid: frame["id"] for cid, frame in frames(management_api).items()} == {"u2-web=": "ok"}
    [rejection] = [r for r in caplog.records if r.getMessage().startswith("dead-lettering")]
    assert rejection.levelname == "ERROR"
    assert rejection.notificationId == "bad-1"
    assert rejection.reason == reason
    [letter] = dead_lettered(sqs, failure_handling)
    assert letter["reason"] == letter["_reasonAttribute"] == reason
    assert letter["detail"] == rejection.detail
    assert (letter["notificationId"], letter["source"], letter["record"]) == (
        "bad-1",
        "publish",
        bad,
    )


@pytest.mark.parametrize(
    "record",
    [
        {"EventSource": "aws:sqs", "body": "{}"},
        "not even an object",
        {"Sns": {"MessageId": "x-1", "MessageAttributes": {"userId": string("user-1")}}},
        {"Sns": {"MessageId": "x-1", "Message": None, "MessageAttributes": {}}},
    ],
    ids=["not-sns", "not-an-object", "no-body", "null-body"],
)
def test_a_record_that_is_not_a_notification_is_dead_lettered(
    users: Any, record: Any, sqs: Any, failure_handling: str
) -> None:
    summary = publish.handler(
        {"Records": [record, sns_record("{}", {"userId": string("user-2")})]}, None
    )
    assert (summary["rejected"], summary["delivered"]) == (1, 1)
    [letter] = dead_lettered(sqs, failure_handling)
    assert letter["reason"] == dead_letters.INVALID_RECORD
    assert letter["record"] == record


def test_an_event_that_is_not_an_sns_event_is_dead_lettered(
    users: Any, sqs: Any, failure_handling: str
) -> None:
    summary = publish.handler({"detail-type": "Scheduled Event"}, None)
    assert summary["rejected"] == 1
    [letter] = dead_lettered(sqs, failure_handling)
    assert letter["record"] == {"detail-type": "Scheduled Event"}


def test_unrelated_attributes_of_any_type_are_ignored(users: Any) -> None:
    extra = {
        "traceId": {"Type": "Number", "Value": "7"},
        "blob": {"Type": "Binary", "Value": "AA=="},
    }
    summary = run(sns_record("{}", {"userId": string("user-2"), **extra}))
    assert (summary["delivered"], summary["rejected"]) == (1, 0)


def test_exactly_max_target_users_is_accepted(
    dynamodb: Any, management_api: ScriptedManagementApi
) -> None:
    names = [f"user-{n}" for n in range(contract.MAX_TARGET_USERS)]
    add_session(dynamodb, "last=", names[-1])
    summary = run(sns_record("{}", {"userId": string_array(names)}))
    assert set(frames(management_api)) == {"last="}
    assert summary["rejected"] == 0


def test_lookup_failure_raises_after_other_records(
    users: Any, monkeypatch: pytest.MonkeyPatch, management_api: ScriptedManagementApi
) -> None:
    real = sessions.connections_of

    def flaky(user_id: str, page_size: int | None = None, backoff: Any = None) -> list[str]:
        if user_id == "user-1":
            raise RuntimeError("index unavailable")
        return real(user_id, page_size, backoff)

    monkeypatch.setattr(sessions, "connections_of", flaky)
    with pytest.raises(publish.PublishIncomplete, match="lookup_failed=1"):
        run(
            sns_record("{}", {"userId": string("user-1")}, message_id="m-1"),
            sns_record("{}", {"userId": string("user-2")}, message_id="m-2"),
        )
    assert set(frames(management_api)) == {"u2-web="}
    # The retry must not post m-2 again: it is marked settled.
    assert pending_items().keys() == {"m-2"}
    assert owed("m-2") == set()


def test_event_without_records_does_nothing(
    users: Any, management_api: ScriptedManagementApi
) -> None:
    assert run()["messages"] == 0
    assert frames(management_api) == {}


def test_management_endpoint_comes_from_the_environment(
    users: Any, management_api: ScriptedManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The publish Lambda has no request context: the endpoint is configuration.
    run(sns_record("{}", {"userId": string("user-2")}))
    assert set(management_api.delivered) == {"u2-web="}
    monkeypatch.setenv(contract.ENV_MANAGEMENT_ENDPOINT, "http://127.0.0.1:9/dev")  # discard port
    with pytest.raises(publish.PublishIncomplete, match="failed=1"):
        run(sns_record("{}", {"userId": string("user-2")}, message_id="m-2"))
    assert len(management_api.posts["u2-web="]) == 1  # the second went to the new endpoint


# --- Retries inside the invocation ---------------------------------------------------------


def test_a_throttled_post_is_retried_and_delivered_once(
    users: Any, scripted_management: Any, sleeps: Sleeps
) -> None:
    api = scripted_management({"u2-web=": [(429, "LimitExceededException")]})
    summary = run(sns_record("{}", {"userId": string("user-2")}))
    body = publish.envelope(MESSAGE_ID, "notification", "{}", SENT_AT)
    assert api.posts == {"u2-web=": [body, body]}
    assert api.delivered == {"u2-web=": [body]}
    assert (summary["delivered"], summary["failed"]) == (1, 0)
    assert sleeps == [publish.BACKOFF.base_seconds]  # one pause, before the one retry


def test_a_persistent_server_error_fails_after_the_bounded_attempts(
    users: Any, scripted_management: Any, sleeps: Sleeps
) -> None:
    attempts = publish.BACKOFF.max_attempts
    api = scripted_management({"u2-web=": (500, "InternalServerErrorException")})
    with pytest.raises(publish.PublishIncomplete, match="failed=1"):
        run(sns_record("{}", {"userId": string("user-2")}))
    # One HTTP request per attempt: the attempts are ours alone, with growing pauses.
    assert len(api.posts["u2-web="]) == attempts
    assert len(sleeps) == attempts - 1
    assert sleeps == sorted(sleeps)
    assert owed(MESSAGE_ID) == {"u2-web="}


def test_a_forbidden_post_is_not_retried(users: Any, scripted_management: Any) -> None:
    api = scripted_management({"u2-web=": (403, "ForbiddenException")})
    with pytest.raises(publish.PublishIncomplete):
        run(sns_record("{}", {"userId": string("user-2")}))
    assert len(api.posts["u2-web="]) == 1


def test_retries_stop_when_the_invocation_runs_out_of_time(
    users: Any, scripted_management: Any, sleeps: Sleeps
) -> None:
    api = scripted_management({"u2-web=": (503, "ServiceUnavailable")})

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return publish.BACKOFF.margin_ms + 250  # room for 0.1 s and 0.2 s pauses only

    with pytest.raises(publish.PublishIncomplete):
        publish.handler(sns_event(sns_record("{}", {"userId": string("user-2")})), Context())
    assert sleeps == [0.1, 0.2]
    assert len(api.posts["u2-web="]) == 3


# --- No fan-out again on retry: pending deliveries ------------------------------------------


def test_a_retried_event_posts_only_to_the_connections_still_owed(
    users: Any, scripted_management: Any
) -> None:
    api = scripted_management({"u1-phone=": (500, "InternalServerErrorException")})
    event = sns_event(sns_record('{"n": 1}', {"userId": string("user-1")}))
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    assert set(api.delivered) == {"u1-web="}
    item = pending_items()[MESSAGE_ID]
    assert set(item[contract.PENDING_REMAINING]["SS"]) == {"u1-phone="}
    assert "500 InternalServerErrorException" in item[pending.REASONS]["S"]
    assert int(item[contract.EXPIRES_AT]["N"]) > 1_700_000_000  # epoch seconds, TTL

    # Lambda retries the same event once the management API has recovered.
    api.answers.clear()
    api.posts.clear()
    summary = publish.handler(event, None)
    assert set(api.posts) == {"u1-phone="}  # u1-web= is not posted to again
    assert (summary["resumed"], summary["delivered"], summary["connections"]) == (1, 1, 1)
    assert json.loads(api.delivered["u1-phone="][0])["id"] == MESSAGE_ID
    assert pending_items() == {}  # nothing owed: the item is gone


def test_a_still_failing_retry_shrinks_what_is_owed(
    dynamodb: Any, scripted_management: Any
) -> None:
    for connection_id in ("a=", "b=", "c="):
        add_session(dynamodb, connection_id, "user-1")
    api = scripted_management({cid: (500, "InternalServerErrorException") for cid in ["a=", "b="]})
    event = sns_event(sns_record("{}", {"userId": string("user-1")}))
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    assert owed(MESSAGE_ID) == {"a=", "b="}
    del api.answers["a="]
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    assert owed(MESSAGE_ID) == {"b="}
    assert {cid: len(frames) for cid, frames in api.delivered.items()} == {"a=": 1, "c=": 1}


def test_an_owed_connection_that_is_gone_by_the_retry_is_settled(
    users: Any, scripted_management: Any
) -> None:
    api = scripted_management({"u1-phone=": (500, "InternalServerErrorException")})
    event = sns_event(sns_record("{}", {"userId": string("user-1")}))
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    api.answers["u1-phone="] = (410, "GoneException")
    summary = publish.handler(event, None)
    assert (summary["gone"], summary["resumed"]) == (1, 1)
    assert "u1-phone=" not in session_rows(users)
    assert pending_items() == {}


def test_the_pending_read_runs_alongside_the_connection_lookup(
    users: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookup_started = threading.Event()
    real_lookup, real_load = sessions.connections_of, pending.load

    def lookup(user_id: str, page_size: int | None = None, backoff: Any = None) -> list[str]:
        lookup_started.set()
        return real_lookup(user_id, page_size, backoff)

    def load(notification_id: str, backoff: retry.Backoff) -> frozenset[str] | None:
        # Run one after the other, this would wait for a lookup that has not started.
        assert lookup_started.wait(timeout=5), "the pending read ran before the lookup"
        return real_load(notification_id, backoff)

    monkeypatch.setattr(sessions, "connections_of", lookup)
    monkeypatch.setattr(pending, "load", load)
    assert run(sns_record("{}", {"userId": string("user-2")}))["delivered"] == 1


def iso_seconds_ago(seconds: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def pending_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The notification ids whose pending deliveries the handler read."""
    reads: list[str] = []
    real_load = pending.load

    def load(notification_id: str, backoff: retry.Backoff) -> frozenset[str] | None:
        reads.append(notification_id)
        return real_load(notification_id, backoff)

    monkeypatch.setattr(pending, "load", load)
    return reads


def test_a_record_too_young_to_be_a_retry_skips_the_pending_read(
    users: Any, pending_reads: list[str], management_api: ScriptedManagementApi
) -> None:
    # Lambda retries a failed event a minute after the attempt: a record SNS published a
    # moment ago is a first attempt, and nothing can be owed for it yet.
    run(sns_record("{}", {"userId": string("user-2")}, timestamp=iso_seconds_ago(1)))
    assert pending_reads == []
    assert set(management_api.delivered) == {"u2-web="}


@pytest.mark.parametrize(
    ("why", "timestamp", "attributes"),
    [
        ("old enough to be a retry", 45.0, {}),
        ("its id can be reused (a replay)", 1.0, {"notificationId": string("order-42")}),
        ("published in the future by this clock", -5.0, {}),
        ("no readable publish time", None, {}),
    ],
)
def test_a_record_that_may_be_a_retry_reads_what_is_owed(
    users: Any,
    pending_reads: list[str],
    why: str,
    timestamp: float | None,
    attributes: dict[str, Any],
) -> None:
    record = sns_record(
        "{}",
        {"userId": string("user-2"), **attributes},
        timestamp=iso_seconds_ago(timestamp) if timestamp is not None else "yesterday",
    )
    run(record)
    assert pending_reads == [publish.record_id(record)], why


def test_with_no_first_retry_delay_every_record_reads_what_is_owed(
    users: Any, pending_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(contract.ENV_FIRST_RETRY_AFTER_SECONDS, "0")
    run(sns_record("{}", {"userId": string("user-2")}, timestamp=iso_seconds_ago(0.5)))
    assert pending_reads == [MESSAGE_ID]


def test_the_notification_id_attribute_is_the_envelope_id_and_the_pending_key(
    users: Any, scripted_management: Any
) -> None:
    api = scripted_management({"u2-web=": (500, "InternalServerErrorException")})
    attributes = {"userId": string("user-2"), "notificationId": string("order-42-shipped")}
    event = sns_event(sns_record("{}", attributes, message_id="sns-replayed-copy"))
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    assert pending_items().keys() == {"order-42-shipped"}
    api.answers.clear()
    publish.handler(event, None)
    assert [json.loads(frame)["id"] for frame in api.delivered["u2-web="]] == ["order-42-shipped"]


def test_records_settled_in_a_failing_event_are_not_repeated_by_its_retry(
    users: Any, scripted_management: Any, sqs: Any, failure_handling: str
) -> None:
    api = scripted_management({"u1-phone=": (500, "InternalServerErrorException")})
    event = sns_event(
        sns_record("{}", {"userId": string("user-2")}, message_id="ok-1"),
        sns_record("{}", {"userId": string("user-1")}, message_id="partial-1"),
        sns_record("{}", {"userId": string_array([])}, message_id="bad-1"),
    )
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    assert owed("ok-1") == owed("bad-1") == set()
    assert owed("partial-1") == {"u1-phone="}

    api.answers.clear()
    api.posts.clear()
    summary = publish.handler(event, None)
    assert set(api.posts) == {"u1-phone="}
    assert summary["dead_lettered"] == 0
    assert [letter["notificationId"] for letter in dead_lettered(sqs, failure_handling)] == [
        "bad-1"
    ]
    assert pending_items() == {}


def test_without_a_pending_table_a_retry_fans_out_again_with_the_same_id(
    users: Any, scripted_management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(contract.ENV_PENDING_DELIVERIES_TABLE)
    api = scripted_management({"u1-phone=": (500, "InternalServerErrorException")})
    event = sns_event(sns_record("{}", {"userId": string("user-1")}))
    with pytest.raises(publish.PublishIncomplete):
        publish.handler(event, None)
    api.answers.clear()
    publish.handler(event, None)
    ids = [json.loads(frame)["id"] for frame in api.delivered["u1-web="]]
    assert ids == [MESSAGE_ID, MESSAGE_ID]  # a duplicate clients drop by id


def test_a_failed_pending_write_still_fails_the_invocation(
    users: Any, scripted_management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(contract.ENV_PENDING_DELIVERIES_TABLE, "no-such-table")
    scripted_management({"u1-phone=": (500, "InternalServerErrorException")})
    with pytest.raises(publish.PublishIncomplete, match="lookup_failed=1"):
        run(sns_record("{}", {"userId": string("user-1")}))


# --- Dead letters -----------------------------------------------------------------------------


def test_a_dead_letter_that_cannot_be_sent_fails_the_invocation(
    users: Any, monkeypatch: pytest.MonkeyPatch, management_api: ScriptedManagementApi
) -> None:
    monkeypatch.setenv(
        contract.ENV_DEAD_LETTER_QUEUE_URL,
        f"https://sqs.{events.REGION}.amazonaws.com/{events.ACCOUNT}/no-such-queue",
    )
    with pytest.raises(publish.PublishIncomplete, match="dead_letter_failed=1"):
        run(
            sns_record("{}", {"userId": string_array([])}, message_id="bad-1"),
            sns_record("{}", {"userId": string("user-2")}, message_id="ok-1"),
        )
    assert set(frames(management_api)) == {"u2-web="}  # the good record was still delivered
    assert owed("ok-1") == set()  # ... and is not delivered again by the retry
    assert "bad-1" not in pending_items()  # the bad one is tried again


def test_a_record_too_large_for_the_queue_keeps_everything_but_its_body() -> None:
    record = sns_record("x" * dead_letters.QUEUE_MAX_MESSAGE_BYTES, {"userId": string("u")})
    body = json.loads(dead_letters.message_body("too_large", "big", "n-1", record))
    assert body["record"]["Sns"]["Message"] is None
    assert body["record"]["Sns"]["MessageAttributes"] == record["Sns"]["MessageAttributes"]
    assert (body["messageOmitted"], body["messageBytes"]) == (
        True,
        dead_letters.QUEUE_MAX_MESSAGE_BYTES,
    )
