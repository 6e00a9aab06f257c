from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from botocore.stub import Stubber

from functions import contract, management, publish, sessions
from tests.unit import events
from tests.unit.conftest import add_session, moto_posts, session_rows
from tests.unit.events import sns_event, sns_record, string, string_array

MESSAGE_ID = "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
SENT_AT = "2026-12-03T18:20:40.123Z"


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


def frames() -> dict[str, Any]:
    return {cid: json.loads(data) for cid, data in moto_posts().items()}


def test_one_user_gets_the_envelope_on_every_connection(users: Any) -> None:
    summary = run(sns_record('{"text": "hi", "n": 1}', {"userId": string("user-1")}))

    expected = {
        "id": MESSAGE_ID,
        "type": "notification",
        "data": {"text": "hi", "n": 1},
        "sentAt": SENT_AT,
    }
    assert frames() == {"u1-web=": expected, "u1-phone=": expected}
    posted = moto_posts()
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
    }


def test_text_payload_and_custom_type_reach_the_client(users: Any) -> None:
    run(sns_record("plain words", {"userId": string("user-2"), "type": string("chat.message")}))
    assert frames() == {
        "u2-web=": {
            "id": MESSAGE_ID,
            "type": "chat.message",
            "data": "plain words",
            "sentAt": SENT_AT,
        }
    }


def test_string_array_reaches_each_named_user_once(users: Any) -> None:
    summary = run(
        sns_record('{"k": 1}', {"userId": string_array(["user-1", "user-2", "user-1", "ghost"])})
    )
    assert set(frames()) == {"u1-web=", "u1-phone=", "u2-web="}
    assert all(len(data) == len(moto_posts()["u2-web="]) for data in moto_posts().values())
    assert summary["delivered"] == 3


def test_broadcast_reaches_everyone_when_enabled(users: Any) -> None:
    summary = run(sns_record('"maintenance at 22:00"', {"broadcast": string("all")}))
    assert set(frames()) == {"u1-web=", "u1-phone=", "u2-web=", "u3-web="}
    assert {frame["data"] for frame in frames().values()} == {"maintenance at 22:00"}
    assert summary["delivered"] == 4


def test_broadcast_is_refused_when_disabled(users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_BROADCAST_ENABLED, "false")
    summary = run(sns_record("{}", {"broadcast": string("all")}))
    assert frames() == {}
    assert summary["rejected"] == 1
    assert summary["delivered"] == 0


def test_every_page_of_a_users_connections_is_reached(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = {f"conn-{n:02d}=" for n in range(30)}
    for connection_id in many:
        add_session(dynamodb, connection_id, "user-1")
    monkeypatch.setattr(
        sessions, "connections_of", functools.partial(sessions.connections_of, page_size=1)
    )
    summary = run(sns_record("{}", {"userId": string("user-1")}))
    assert set(frames()) == many
    assert summary["delivered"] == 30


def test_gone_connection_row_is_deleted_and_is_not_a_failure(dynamodb: Any) -> None:
    add_session(dynamodb, "closed=", "user-1")
    add_session(dynamodb, "other-user=", "user-2")
    body = publish.envelope(MESSAGE_ID, "notification", "{}", SENT_AT)
    with Stubber(management.management_client()) as stub:
        stub.add_client_error(
            "post_to_connection",
            service_error_code="GoneException",
            http_status_code=410,
            expected_params={"ConnectionId": "closed=", "Data": body},
        )
        summary = run(sns_record("{}", {"userId": string("user-1")}))
        stub.assert_no_pending_responses()
    assert set(session_rows(dynamodb)) == {"other-user="}
    assert (summary["gone"], summary["failed"], summary["delivered"]) == (1, 0, 0)


def test_gone_and_live_connections_of_one_user(users: Any, scripted_management: Any) -> None:
    api = scripted_management({"u1-phone=": (410, "GoneException")})
    summary = run(sns_record("{}", {"userId": string("user-1")}))
    assert set(api.posts) == {"u1-web=", "u1-phone="}
    assert set(session_rows(users)) == {"u1-web=", "u2-web=", "u3-web="}
    assert (summary["delivered"], summary["gone"], summary["failed"]) == (1, 1, 0)


def test_other_errors_raise_after_every_connection_was_tried(
    users: Any, scripted_management: Any
) -> None:
    api = scripted_management(
        {
            "u1-web=": (413, "PayloadTooLargeException"),
            "u1-phone=": (500, "InternalServerErrorException"),
        }
    )
    event = sns_event(
        sns_record("{}", {"userId": string("user-1")}, message_id="m-1"),
        sns_record("{}", {"userId": string("user-2")}, message_id="m-2"),
    )
    with pytest.raises(publish.PublishIncomplete, match="failed=2") as caught:
        publish.handler(event, None)
    assert set(api.posts) == {"u1-web=", "u1-phone=", "u2-web="}
    assert json.loads(api.posts["u2-web="][0])["id"] == "m-2"
    assert caught.value.summary["delivered"] == 1
    assert caught.value.summary["failed"] == 2
    # Failures are not gone connections: their rows stay.
    assert set(session_rows(users)) == {"u1-web=", "u1-phone=", "u2-web=", "u3-web="}


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


def test_envelope_at_the_limit_is_posted_one_byte_more_is_not(users: Any) -> None:
    overhead = len(publish.envelope(MESSAGE_ID, "notification", "", SENT_AT))
    fits = "x" * (contract.MAX_MESSAGE_BYTES - overhead)
    assert len(publish.envelope(MESSAGE_ID, "notification", fits, SENT_AT)) == (
        contract.MAX_MESSAGE_BYTES
    )
    run(sns_record(fits, {"userId": string("user-2")}))
    assert frames()["u2-web="]["data"] == fits

    with pytest.raises(publish.PublishIncomplete, match="oversized=1") as caught:
        run(sns_record(fits + "x", {"userId": string("user-3")}))
    assert "u3-web=" not in moto_posts()
    assert caught.value.summary["connections"] == 0


def test_oversized_multibyte_payload_is_measured_in_bytes(users: Any) -> None:
    payload = json.dumps({"text": "é" * (contract.MAX_MESSAGE_BYTES // 2)}, ensure_ascii=False)
    with pytest.raises(publish.PublishIncomplete, match="oversized=1"):
        run(sns_record(payload, {"userId": string("user-2")}))
    assert frames() == {}


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"type": string("chat")},
        {"userId": string("")},
        {"userId": {"Type": "Number", "Value": "42"}},
        {"userId": {"Type": "String.Array", "Value": "user-1"}},
        {"userId": {"Type": "String.Array", "Value": '{"user": "user-1"}'}},
        {"userId": string_array([])},
        {"userId": string_array(["user-1", 7])},
        {"userId": string_array(["user-1", ""])},
        {"userId": string_array([f"user-{n}" for n in range(contract.MAX_TARGET_USERS + 1)])},
        {"broadcast": string("everyone")},
        {"broadcast": {"Type": "String.Array", "Value": '["all"]'}},
        {"userId": string("user-1"), "broadcast": string("all")},
        {"userId": string("user-1"), "type": {"Type": "Number", "Value": "3"}},
        {"userId": string("user-1"), "type": string("")},
    ],
    ids=[
        "no-target",
        "type-only",
        "empty-user",
        "number-user",
        "array-not-json",
        "array-not-list",
        "array-empty",
        "array-non-string",
        "array-empty-string",
        "too-many-users",
        "broadcast-not-all",
        "broadcast-wrong-type",
        "both-targets",
        "type-not-string",
        "type-empty",
    ],
)
def test_invalid_attributes_reject_that_record_only(
    users: Any, attributes: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    summary = run(
        sns_record('{"bad": true}', attributes, message_id="bad-1"),
        sns_record('{"good": true}', {"userId": string("user-2")}, message_id="good-1"),
    )
    assert summary["rejected"] == 1
    assert summary["messages"] == 2
    assert {cid: frame["id"] for cid, frame in frames().items()} == {"u2-web=": "good-1"}
    [rejection] = [r for r in caplog.records if r.getMessage().startswith("rejected")]
    assert rejection.levelname == "ERROR"
    assert rejection.messageId == "bad-1"


def test_exactly_max_target_users_is_accepted(dynamodb: Any) -> None:
    names = [f"user-{n}" for n in range(contract.MAX_TARGET_USERS)]
    add_session(dynamodb, "last=", names[-1])
    summary = run(sns_record("{}", {"userId": string_array(names)}))
    assert set(frames()) == {"last="}
    assert summary["rejected"] == 0


def test_lookup_failure_raises_after_other_records(
    users: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sessions.connections_of

    def flaky(user_id: str, page_size: int | None = None) -> list[str]:
        if user_id == "user-1":
            raise RuntimeError("index unavailable")
        return real(user_id, page_size)

    monkeypatch.setattr(sessions, "connections_of", flaky)
    with pytest.raises(publish.PublishIncomplete, match="lookup_failed=1"):
        run(
            sns_record("{}", {"userId": string("user-1")}),
            sns_record("{}", {"userId": string("user-2")}),
        )
    assert set(frames()) == {"u2-web="}


def test_event_without_records_does_nothing(users: Any) -> None:
    assert run()["messages"] == 0
    assert frames() == {}


def test_management_endpoint_comes_from_the_environment(users: Any) -> None:
    # The publish Lambda has no request context: the endpoint is configuration.
    assert management.management_client().meta.endpoint_url == events.MANAGEMENT_ENDPOINT
