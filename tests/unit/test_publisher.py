"""mentorassist.publisher against moto: exactly what reaches SNS, and every refusal before it."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions import contract
from functions import publish as handler_rules
from mentorassist import publisher as publisher_module
from mentorassist.publisher import (
    InvalidAttributes,
    InvalidData,
    InvalidId,
    InvalidNotification,
    InvalidTarget,
    InvalidType,
    Notification,
    NotificationTooLarge,
    Publisher,
    PublishFailed,
    TopicNotConfigured,
    build_message,
)
from tests.unit import events

# The envelope around a text payload with the longest id and sentAt SNS produces.
ENVELOPE_OVERHEAD = len(
    handler_rules.envelope("0" * 36, contract.DEFAULT_TYPE, "", "2026-12-03T18:20:40.123Z")
)


class Topic:
    """A moto SNS topic with an SQS queue subscribed, to read back what was published."""

    def __init__(self) -> None:
        self.sns = boto3.client("sns", region_name=events.REGION)
        sqs = boto3.client("sqs", region_name=events.REGION)
        self.arn = self.sns.create_topic(Name="notifications")["TopicArn"]
        self.queue_url = sqs.create_queue(QueueName="inspect")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn)
        self.sqs = sqs

    def published(self) -> list[dict[str, Any]]:
        """Every SNS notification the queue got: MessageId, Message, MessageAttributes."""
        found = []
        while True:
            response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = response.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def only(self) -> dict[str, Any]:
        published = self.published()
        assert len(published) == 1, published
        return published[0]


def attributes_of(notification: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        name: (value["Type"], value["Value"])
        for name, value in notification.get("MessageAttributes", {}).items()
    }


@pytest.fixture
def topic(moto: None) -> Topic:
    return Topic()


@pytest.fixture
def publisher(topic: Topic) -> Publisher:
    return Publisher(topic.arn)


# --- what is published ------------------------------------------------------------------------


def test_send_to_one_user_publishes_json_body_and_a_string_target(
    topic: Topic, publisher: Publisher
) -> None:
    message_id = publisher.send("alice", {"text": "Your mentor replied", "n": 1})

    published = topic.only()
    assert published["MessageId"] == message_id
    assert published["Message"] == '{"text":"Your mentor replied","n":1}'
    assert attributes_of(published) == {"userId": ("String", "alice")}
    # The handler reads exactly this as one user, default type.
    assert handler_rules.read_target(
        published["MessageAttributes"], broadcast_enabled=True
    ) == handler_rules.Target(users=("alice",))
    assert handler_rules.read_type(published["MessageAttributes"]) == "notification"


def test_send_to_several_users_publishes_a_string_array_without_repeats(
    topic: Topic, publisher: Publisher
) -> None:
    publisher.send(["alice", "bob", "alice", "carol"], [1, 2], type="session.reminder", id="n-1")

    published = topic.only()
    assert published["Message"] == "[1,2]"
    assert attributes_of(published) == {
        "userId": ("String.Array", '["alice", "bob", "carol"]'),
        "type": ("String", "session.reminder"),
        "notificationId": ("String", "n-1"),
    }
    assert handler_rules.read_target(
        published["MessageAttributes"], broadcast_enabled=True
    ).users == ("alice", "bob", "carol")


def test_a_list_of_one_user_is_a_plain_string(topic: Topic, publisher: Publisher) -> None:
    publisher.send(("alice",), {"a": 1})
    assert attributes_of(topic.only())["userId"] == ("String", "alice")


def test_broadcast_publishes_the_broadcast_attribute(topic: Topic, publisher: Publisher) -> None:
    publisher.broadcast("Maintenance at 22:00 UTC", type="ops")

    published = topic.only()
    assert published["Message"] == "Maintenance at 22:00 UTC"
    assert attributes_of(published) == {"broadcast": ("String", "all"), "type": ("String", "ops")}


@pytest.mark.parametrize(
    ("data", "body", "client_sees"),
    [
        ({"k": "ü"}, '{"k":"ü"}', {"k": "ü"}),
        ([1, "two"], '[1,"two"]', [1, "two"]),
        (42, "42", 42),
        (1.5, "1.5", 1.5),
        (True, "true", True),
        (None, "null", None),
        ("plain text", "plain text", "plain text"),
        # A str is sent as is: if it is valid JSON, clients get the JSON value.
        ('{"already": "json"}', '{"already": "json"}', {"already": "json"}),
        ("42", "42", 42),
    ],
)
def test_data_becomes_the_body_and_what_clients_see(
    topic: Topic, publisher: Publisher, data: Any, body: str, client_sees: Any
) -> None:
    publisher.send("alice", data)
    published = topic.only()
    assert published["Message"] == body
    frame = json.loads(handler_rules.envelope("id", "notification", published["Message"], "t"))
    assert frame["data"] == client_sees


def test_extra_attributes_are_published_as_strings(topic: Topic, publisher: Publisher) -> None:
    publisher.send("alice", {}, attributes={"tenant": "acme", "source.app": "billing"})
    assert attributes_of(topic.only()) == {
        "userId": ("String", "alice"),
        "tenant": ("String", "acme"),
        "source.app": ("String", "billing"),
    }


# --- validation: nothing is published ---------------------------------------------------------


@pytest.mark.parametrize(
    ("user_ids", "fragment"),
    [
        (None, "no user ids"),
        ("", "non-empty strings"),
        ("   ", "non-empty strings"),
        ([], "no user ids"),
        (["alice", ""], "non-empty strings"),
        (["alice", 7], "non-empty strings"),
        ([None], "non-empty strings"),
        (b"alice", "string or a sequence"),
        ({"alice": 1}, "string or a sequence"),
        (42, "string or a sequence"),
        ([f"user-{n}" for n in range(contract.MAX_TARGET_USERS + 1)], "at most 100"),
    ],
)
def test_bad_targets_are_refused(
    topic: Topic, publisher: Publisher, user_ids: Any, fragment: str
) -> None:
    with pytest.raises(InvalidTarget, match=fragment):
        publisher.send(user_ids, {"text": "hi"})
    assert topic.published() == []


def test_a_hundred_users_with_repeats_is_fine(topic: Topic, publisher: Publisher) -> None:
    users = [f"user-{n}" for n in range(contract.MAX_TARGET_USERS)]
    publisher.send(users + users[:5], "x")
    assert json.loads(attributes_of(topic.only())["userId"][1]) == users


def test_users_and_broadcast_together_are_refused(topic: Topic, publisher: Publisher) -> None:
    with pytest.raises(InvalidTarget, match="not both"):
        publisher.publish(Notification("x", user_ids="alice", broadcast=True))
    assert topic.published() == []


@pytest.mark.parametrize("event_type", ["", "  ", 5, ["chat"]])
def test_bad_types_are_refused(topic: Topic, publisher: Publisher, event_type: Any) -> None:
    with pytest.raises(InvalidType, match="type must be a non-empty string"):
        publisher.send("alice", "x", type=event_type)
    assert topic.published() == []


@pytest.mark.parametrize(("notification_id", "fragment"), [("", "non-empty"), (7, "non-empty")])
def test_bad_ids_are_refused(
    topic: Topic, publisher: Publisher, notification_id: Any, fragment: str
) -> None:
    with pytest.raises(InvalidId, match=fragment):
        publisher.send("alice", "x", id=notification_id)
    assert topic.published() == []


def test_an_overlong_id_is_refused(publisher: Publisher) -> None:
    with pytest.raises(InvalidId, match="at most 256"):
        publisher.send("alice", "x", id="i" * 257)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"bytes", "bytes"),
        ({1, 2}, "not JSON-serializable"),
        (float("nan"), "not JSON-serializable"),
        ({"when": object()}, "not JSON-serializable"),
        ("", "empty"),
    ],
)
def test_bad_data_is_refused(topic: Topic, publisher: Publisher, data: Any, fragment: str) -> None:
    with pytest.raises(InvalidData, match=fragment):
        publisher.send("alice", data)
    assert topic.published() == []


@pytest.mark.parametrize(
    ("attributes", "fragment"),
    [
        ({"userId": "bob"}, "set by the publisher"),
        ({"type": "x"}, "set by the publisher"),
        ({"notificationId": "x"}, "set by the publisher"),
        ({"broadcast": "all"}, "set by the publisher"),
        ({"has space": "x"}, "not a valid SNS attribute name"),
        ({"AWS.thing": "x"}, "not a valid SNS attribute name"),
        ({"a..b": "x"}, "not a valid SNS attribute name"),
        ({"trailing.": "x"}, "not a valid SNS attribute name"),
        ({"n" * 257: "x"}, "not a valid SNS attribute name"),
        ({"empty": ""}, "non-empty string"),
        ({"number": 5}, "non-empty string"),
    ],
)
def test_bad_extra_attributes_are_refused(
    topic: Topic, publisher: Publisher, attributes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidAttributes, match=fragment):
        publisher.send("alice", "x", attributes=attributes)
    assert topic.published() == []


def test_more_than_ten_attributes_are_refused(topic: Topic, publisher: Publisher) -> None:
    # userId + type + notificationId + 7 extra = 10: accepted; one more is SNS's limit.
    extra = {f"a{n}": "v" for n in range(7)}
    publisher.send("alice", "x", type="t", id="i", attributes=extra)
    with pytest.raises(InvalidAttributes, match="at most 10"):
        publisher.send("alice", "x", type="t", id="i", attributes={**extra, "a7": "v"})
    assert len(topic.published()) == 1


def test_the_envelope_limit_is_exact(topic: Topic, publisher: Publisher) -> None:
    fits = "x" * (contract.MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD)
    publisher.send("alice", fits)
    with pytest.raises(NotificationTooLarge, match="API Gateway delivers at most 131072"):
        publisher.send("alice", fits + "x")
    assert len(topic.published()) == 1


def test_the_envelope_size_counts_json_escapes_and_utf8(publisher: Publisher) -> None:
    # 70 KB of quotes is 140 KB in the envelope (each one escaped); 45,000 'é' are 90 KB
    # of UTF-8 in the body but 45,000 characters.
    with pytest.raises(NotificationTooLarge):
        publisher.send("alice", '"' * 70_000)
    with pytest.raises(NotificationTooLarge):
        publisher.send("alice", {"text": "é" * 66_000})
    # JSON data is re-serialized by the handler: whitespace in a str body does not count.
    spaced = "[" + " " * 200_000 + "1]"
    assert len(build_message(Notification.to("alice", spaced)).body) > contract.MAX_MESSAGE_BYTES


def test_the_envelope_limit_uses_the_given_id_and_type(publisher: Publisher) -> None:
    fits = "x" * (contract.MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD)
    with pytest.raises(NotificationTooLarge):
        publisher.send("alice", fits, type="notification-with-a-longer-type")
    with pytest.raises(NotificationTooLarge):
        publisher.send("alice", fits, id="0" * 37)


def test_the_sns_limit_counts_attributes(topic: Topic, publisher: Publisher) -> None:
    # The envelope (body only) fits in 128 KB, but 100 long user ids make the SNS message
    # (body + attribute names, types and values) larger than 256 KB.
    users = [f"{n:04d}" + "u" * 1_496 for n in range(100)]
    body = "x" * 120_000
    with pytest.raises(NotificationTooLarge, match="SNS accepts at most 262144"):
        publisher.send(users, body)
    assert topic.published() == []


def test_invalid_notification_is_a_value_error() -> None:
    assert issubclass(InvalidNotification, ValueError)
    for error in (InvalidTarget, InvalidType, InvalidId, InvalidData, InvalidAttributes):
        assert issubclass(error, InvalidNotification)
    assert issubclass(NotificationTooLarge, InvalidNotification)


# --- AWS errors -------------------------------------------------------------------------------


def test_an_sns_error_is_publish_failed_with_the_aws_code(topic: Topic) -> None:
    missing = topic.arn.rsplit(":", 1)[0] + ":no-such-topic"
    with pytest.raises(PublishFailed) as failed:
        Publisher(missing).send("alice", "x")
    assert failed.value.code == "NotFound"
    assert str(failed.value).startswith("SNS refused the publish: NotFound")


# --- batches ----------------------------------------------------------------------------------


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.sns.{operation}", lambda params, **_: calls.append(params)
    )
    return calls


def test_a_batch_goes_out_ten_at_a_time_and_every_entry_is_reported(
    topic: Topic, publisher: Publisher
) -> None:
    calls = count_calls(publisher.sns, "PublishBatch")
    notifications = [
        Notification.to(f"user-{n}", {"n": n}, type="chat", id=f"n-{n}") for n in range(23)
    ]
    notifications.append(Notification.to_everyone("everyone"))

    result = publisher.send_batch(notifications)

    assert [len(call["PublishBatchRequestEntries"]) for call in calls] == [10, 10, 4]
    assert result.ok and not result.failed
    assert [entry.index for entry in result.entries] == list(range(24))
    assert [entry.notification for entry in result.entries] == notifications
    by_id = {message["MessageId"]: message for message in topic.published()}
    assert set(by_id) == set(result.message_ids)
    for entry in result.entries[:23]:
        message = by_id[entry.message_id]
        n = entry.index
        assert message["Message"] == json.dumps({"n": n}, separators=(",", ":"))
        assert attributes_of(message) == {
            "userId": ("String", f"user-{n}"),
            "type": ("String", "chat"),
            "notificationId": ("String", f"n-{n}"),
        }
    assert attributes_of(by_id[result.entries[23].message_id]) == {"broadcast": ("String", "all")}


def test_a_batch_request_stays_within_256_kb(topic: Topic, publisher: Publisher) -> None:
    calls = count_calls(publisher.sns, "PublishBatch")
    big = "x" * 100_000
    result = publisher.send_batch([Notification.to("alice", big) for _ in range(5)])
    assert [len(call["PublishBatchRequestEntries"]) for call in calls] == [2, 2, 1]
    assert result.ok
    assert len(topic.published()) == 5


def test_an_invalid_entry_stops_the_batch_before_anything_is_published(
    topic: Topic, publisher: Publisher
) -> None:
    with pytest.raises(InvalidTarget, match="notification 2: "):
        publisher.send_batch(
            [Notification.to("a", 1), Notification.to("b", 2), Notification.to([], 3)]
        )
    assert topic.published() == []


def test_entries_sns_refuses_are_reported_failed_not_dropped(moto: None) -> None:
    sns = boto3.client("sns", region_name=events.REGION)
    publisher = Publisher("arn:aws:sns:us-east-1:123456789012:t", sns_client=sns)
    with Stubber(sns) as stub:
        stub.add_response(
            "publish_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m-0"}, {"Id": "2", "MessageId": "m-2"}],
                "Failed": [
                    {"Id": "1", "Code": "InternalError", "Message": "boom", "SenderFault": False}
                ],
                # Entry 3 is in neither list.
            },
        )
        result = publisher.send_batch([Notification.to("u", n) for n in range(4)])
    assert result.message_ids == ["m-0", None, "m-2", None]
    assert [(e.index, e.error_code, e.error_message) for e in result.failed] == [
        (1, "InternalError", "boom"),
        (3, "Unreported", "SNS reported no outcome"),
    ]
    assert not result.ok


def test_a_refused_batch_request_fails_its_entries_and_the_rest_go_on(moto: None) -> None:
    sns = boto3.client("sns", region_name=events.REGION)
    publisher = Publisher("arn:aws:sns:us-east-1:123456789012:t", sns_client=sns)
    with Stubber(sns) as stub:
        stub.add_client_error("publish_batch", "Throttling", "Rate exceeded", 400)
        stub.add_response(
            "publish_batch", {"Successful": [{"Id": "10", "MessageId": "m-10"}], "Failed": []}
        )
        result = publisher.send_batch([Notification.to("u", n) for n in range(11)])
    assert [entry.index for entry in result.failed] == list(range(10))
    assert {entry.error_code for entry in result.failed} == {"Throttling"}
    assert result.succeeded[0].index == 10
    assert result.succeeded[0].message_id == "m-10"


def test_an_empty_batch_publishes_nothing(publisher: Publisher) -> None:
    calls = count_calls(publisher.sns, "PublishBatch")
    assert publisher.send_batch([]).entries == []
    assert calls == []


# --- configuration ----------------------------------------------------------------------------


@pytest.fixture
def no_pulumi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH without a pulumi CLI (an empty directory), no topic in the environment."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(publisher_module.ENV_TOPIC_ARN, raising=False)
    monkeypatch.delenv(publisher_module.ENV_STACK, raising=False)
    return tmp_path


def fake_pulumi(directory: Path, script: str) -> Path:
    path = directory / "pulumi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_the_topic_comes_from_the_environment(
    no_pulumi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENTORASSIST_TOPIC_ARN", "arn:aws:sns:eu-west-1:111122223333:t")
    publisher = Publisher()
    assert publisher.topic_arn == "arn:aws:sns:eu-west-1:111122223333:t"
    # The client publishes in the topic's region unless told otherwise.
    assert publisher.sns.meta.region_name == "eu-west-1"
    assert Publisher(region="us-west-2").sns.meta.region_name == "us-west-2"


def test_the_argument_wins_over_the_environment(
    no_pulumi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENTORASSIST_TOPIC_ARN", "arn:aws:sns:eu-west-1:111122223333:env")
    assert Publisher("arn:aws:sns:eu-west-1:111122223333:arg").topic_arn.endswith(":arg")


def test_without_a_topic_the_error_names_every_option(no_pulumi: Path) -> None:
    with pytest.raises(TopicNotConfigured) as error:
        Publisher()
    message = str(error.value)
    for option in (
        "--topic-arn",
        "MENTORASSIST_TOPIC_ARN",
        "pulumi stack output topicArn",
        "pulumi CLI is not on PATH",
        "--local",
    ):
        assert option in message


def test_the_topic_comes_from_the_pulumi_stack_output(
    no_pulumi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = no_pulumi / "args"
    fake_pulumi(no_pulumi, f'echo "$@" > {log}\necho arn:aws:sns:eu-west-1:111122223333:p\n')
    monkeypatch.setenv("MENTORASSIST_STACK", "prod")
    assert Publisher().topic_arn == "arn:aws:sns:eu-west-1:111122223333:p"
    assert log.read_text().split() == ["stack", "output", "topicArn", "--stack", "prod"]
    Publisher(stack="dev")
    assert log.read_text().split()[-1] == "dev"


def test_a_failing_pulumi_is_explained(no_pulumi: Path) -> None:
    fake_pulumi(no_pulumi, "echo \"error: no stack named 'prod' found\" >&2\nexit 255\n")
    with pytest.raises(TopicNotConfigured, match="no stack named 'prod' found"):
        Publisher()


def test_local_reads_the_local_stacks_outputs(tmp_path: Path) -> None:
    (tmp_path / "outputs.json").write_text(
        json.dumps(
            {
                "topicArn": "arn:aws:sns:us-east-1:123456789012:local-topic",
                "awsEndpointUrl": "http://127.0.0.1:45666",
                "region": "us-east-1",
            }
        )
    )
    publisher = Publisher.local(tmp_path)
    assert publisher.topic_arn.endswith(":local-topic")
    assert publisher.sns.meta.endpoint_url == "http://127.0.0.1:45666"
    credentials = publisher.sns._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("local", "local")


def test_local_without_a_running_stack_says_so(tmp_path: Path) -> None:
    with pytest.raises(TopicNotConfigured, match="local stack is not running"):
        Publisher.local(tmp_path)


def test_local_state_dir_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps({"topicArn": "arn:x"}))
    monkeypatch.setenv("MENTORASSIST_STATE_DIR", str(tmp_path))
    with pytest.raises(TopicNotConfigured, match="lacks awsEndpointUrl, region"):
        Publisher.local()


def test_a_client_that_cannot_be_created_is_publish_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(PublishFailed, match="cannot create an SNS client"):
        Publisher("not-an-arn")
