"""The replay tool against moto: three dead-letter shapes in, the original notifications out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions import contract, dead_letters, publish
from mentorassist import replay
from tests.unit import events
from tests.unit.conftest import _test_session
from tests.unit.events import sns_event, sns_record, string, string_array


@pytest.fixture
def aws(moto: None) -> dict[str, Any]:
    """A topic, a queue subscribed to it (what the topic republishes), and a dead-letter queue."""
    sqs = _test_session.client("sqs", region_name=events.REGION)
    sns = _test_session.client("sns", region_name=events.REGION)
    topic_arn = sns.create_topic(Name="notifications")["TopicArn"]
    republished = sqs.create_queue(QueueName="republished")["QueueUrl"]
    republished_arn = sqs.get_queue_attributes(QueueUrl=republished, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=republished_arn)
    dlq = sqs.create_queue(QueueName="dead-letters")["QueueUrl"]
    return {"sqs": sqs, "sns": sns, "topic": topic_arn, "republished": republished, "dlq": dlq}


def send(aws: dict[str, Any], body: Any, **attributes: str) -> None:
    aws["sqs"].send_message(
        QueueUrl=aws["dlq"],
        MessageBody=body if isinstance(body, str) else json.dumps(body),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )


def run(aws: dict[str, Any], **options: Any) -> replay.Summary:
    return replay.replay(aws["dlq"], aws["topic"], sqs=aws["sqs"], sns=aws["sns"], **options)


def republished(aws: dict[str, Any]) -> list[dict[str, Any]]:
    """What the topic delivered since: SNS notification documents, in no particular order."""
    found = []
    while True:
        messages = (
            aws["sqs"]
            .receive_message(QueueUrl=aws["republished"], MaxNumberOfMessages=10)
            .get("Messages", [])
        )
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            aws["sqs"].delete_message(
                QueueUrl=aws["republished"], ReceiptHandle=message["ReceiptHandle"]
            )


def left_in(aws: dict[str, Any]) -> int:
    attributes = aws["sqs"].get_queue_attributes(
        QueueUrl=aws["dlq"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def on_failure_record(*records: dict[str, Any]) -> dict[str, Any]:
    """Lambda's on-failure destination record for an asynchronous invocation."""
    return {
        "version": "1.0",
        "timestamp": "2026-12-03T18:23:41.772Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-4f4a-8880-a18cdf61200e",
            "functionArn": f"arn:aws:lambda:{events.REGION}:{events.ACCOUNT}:function:publish",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": sns_event(*records),
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorMessage": "publish incomplete: messages=1, failed=1",
            "errorType": "PublishIncomplete",
            "requestId": "e4b46cbf-b738-4f4a-8880-a18cdf61200e",
            "stackTrace": ["  File ..."],
        },
    }


def sns_redrive_body(record: dict[str, Any]) -> dict[str, Any]:
    """What SNS puts in the subscription's DLQ: the notification document it could not deliver."""
    sns = record["Sns"]
    return {
        "Type": "Notification",
        "MessageId": sns["MessageId"],
        "TopicArn": sns["TopicArn"],
        "Message": sns["Message"],
        "Timestamp": sns["Timestamp"],
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": sns["MessageAttributes"],
    }


def direct_body(reason: str, record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(dead_letters.message_body(reason, "why", record["Sns"]["MessageId"], record))


def attribute_values(document: dict[str, Any]) -> dict[str, str]:
    return {name: value["Value"] for name, value in document["MessageAttributes"].items()}


def test_every_shape_is_republished_with_its_original_id_then_deleted(
    aws: dict[str, Any],
) -> None:
    failed = sns_record('{"n": 1}', {"userId": string("alice")}, message_id="lambda-1")
    redriven = sns_record(
        "plain text", {"userId": string_array(["bob", "carol"])}, message_id="sns-1"
    )
    payload_413 = sns_record('{"n": 3}', {"userId": string("dave")}, message_id="direct-1")
    send(aws, on_failure_record(failed))
    send(aws, sns_redrive_body(redriven), ErrorCode="AccessDenied", RequestID="r-1")
    send(aws, direct_body(dead_letters.PAYLOAD_TOO_LARGE, payload_413))

    summary = run(aws, include_permanent=True)
    assert (summary.replayed, summary.notifications, summary.skipped, summary.unreadable) == (
        3,
        3,
        0,
        0,
    )
    documents = {
        doc["MessageAttributes"]["notificationId"]["Value"]: doc for doc in republished(aws)
    }
    assert documents.keys() == {"lambda-1", "sns-1", "direct-1"}
    assert documents["lambda-1"]["Message"] == '{"n": 1}'
    assert attribute_values(documents["sns-1"]) == {
        "userId": '["bob", "carol"]',
        "notificationId": "sns-1",
    }
    assert documents["sns-1"]["MessageAttributes"]["userId"]["Type"] == "String.Array"
    assert documents["sns-1"]["Message"] == "plain text"
    assert left_in(aws) == 0


def test_a_replayed_notification_keeps_the_id_clients_saw() -> None:
    original = sns_record("{}", {"userId": string("alice")}, message_id="original-id")
    [notification] = replay.parse(json.dumps(on_failure_record(original))).notifications
    attributes = {
        name: {"Type": value["DataType"], "Value": value["StringValue"]}
        for name, value in replay.publish_attributes(notification).items()
    }
    # SNS gives the replayed copy a new MessageId; the handler uses the attribute instead.
    copy = {**original["Sns"], "MessageId": "new-sns-id", "MessageAttributes": attributes}
    assert publish.read_notification_id(copy) == "original-id"


def test_permanent_rejections_are_skipped_and_left_unless_included(
    aws: dict[str, Any],
) -> None:
    bad = sns_record("{}", {"userId": string_array([])}, message_id="bad-1")
    send(aws, direct_body(dead_letters.INVALID_TARGET, bad))
    send(aws, direct_body(dead_letters.TOO_LARGE, sns_record("x", {}, message_id="big-1")))

    summary = run(aws)
    assert (summary.replayed, summary.skipped) == (0, 2)
    assert any("bad-1: invalid_target (permanent)" in line for line in summary.details)
    assert republished(aws) == []
    assert left_in(aws) == 2


def test_unreadable_messages_are_counted_and_left(aws: dict[str, Any]) -> None:
    send(aws, "not json")
    send(aws, {"some": "other document"})
    send(aws, {"requestContext": {}, "requestPayload": {"Records": []}})
    send(aws, on_failure_record(sns_record("{}", {"userId": string("a")})))
    summary = run(aws)
    assert (summary.replayed, summary.unreadable) == (1, 3)
    assert left_in(aws) == 3


def test_dry_run_publishes_and_deletes_nothing(aws: dict[str, Any]) -> None:
    send(aws, on_failure_record(sns_record("{}", {"userId": string("a")}, message_id="m-1")))
    summary = run(aws, dry_run=True)
    assert summary.replayed == 1
    assert summary.line().startswith("would replay 1")
    assert republished(aws) == []
    assert left_in(aws) == 1


def test_max_bounds_the_messages_handled(aws: dict[str, Any]) -> None:
    for n in range(5):
        send(aws, on_failure_record(sns_record("{}", {"userId": string("a")}, message_id=f"m{n}")))
    assert run(aws, max_messages=2).replayed == 2
    assert left_in(aws) == 3


def test_an_on_failure_record_with_several_records_replays_each(aws: dict[str, Any]) -> None:
    send(
        aws,
        on_failure_record(
            sns_record("1", {"userId": string("a")}, message_id="m-1"),
            sns_record(
                "2",
                {"userId": string("b"), "blob": {"Type": "Binary", "Value": "AAE="}},
                message_id="m-2",
            ),
        ),
    )
    summary = run(aws)
    assert (summary.replayed, summary.notifications) == (1, 2)
    documents = republished(aws)
    assert sorted(doc["Message"] for doc in documents) == ["1", "2"]
    [with_blob] = [doc for doc in documents if "blob" in doc["MessageAttributes"]]
    assert base64.b64decode(with_blob["MessageAttributes"]["blob"]["Value"]) == b"\x00\x01"


def test_a_failed_publish_leaves_the_dead_letter(aws: dict[str, Any]) -> None:
    send(aws, on_failure_record(sns_record("{}", {"userId": string("a")})))
    summary = replay.replay(
        aws["dlq"],
        aws["topic"] + "-missing",
        sqs=aws["sqs"],
        sns=aws["sns"],
    )
    assert (summary.replayed, summary.failed) == (0, 1)
    assert left_in(aws) == 1


def test_the_handlers_own_dead_letter_round_trips(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record the handler dead-letters is read back by the tool as what was published."""
    monkeypatch.setenv(contract.ENV_DEAD_LETTER_QUEUE_URL, aws["dlq"])
    monkeypatch.setenv(contract.ENV_BROADCAST_ENABLED, "false")
    record = sns_record('{"hello": 1}', {"broadcast": string("all")}, message_id="bc-1")
    assert publish.handler(sns_event(record), None)["dead_lettered"] == 1
    assert run(aws).skipped == 1  # broadcast disabled: permanent, until the stack changes
    summary = run(aws, include_permanent=True)
    assert summary.replayed == 1
    [document] = republished(aws)
    assert attribute_values(document) == {"broadcast": "all", "notificationId": "bc-1"}
    assert document["Message"] == '{"hello": 1}'


def test_cli_prints_the_summary(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    send(aws, on_failure_record(sns_record("{}", {"userId": string("a")}, message_id="m-1")))
    code = replay.main(
        ["--queue-url", aws["dlq"], "--topic-arn", aws["topic"], "--region", events.REGION]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "replayed m-1 (on-failure)" in out
    assert out.strip().endswith("replayed 1 (1 notification(s)), skipped 0, unreadable 0, failed 0")
