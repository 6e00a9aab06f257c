"""Move dead-lettered notifications back through the topic.

    python -m mentorassist.replay --queue-url URL --topic-arn ARN \\
        [--endpoint-url URL] [--region R] [--max N] [--dry-run] [--include-permanent]

The dead-letter queue holds three kinds of message, and each gives back the original
notification (its body, its message attributes and its id):
- the publish function's own record of a notification it will not deliver,
  `{"reason", "detail", "notificationId", "source": "publish", "record": <SNS record>}`
  (see `functions.dead_letters`); its reasons are permanent (invalid target, too large, …), so
  these are skipped and reported unless `--include-permanent` (e.g. after fixing the stack);
- Lambda's on-failure destination record after the publish function failed on every attempt,
  `{"requestContext": {"condition": "RetriesExhausted", …}, "requestPayload": <the SNS event>,
  "responseContext": {…}, "responsePayload": {"errorMessage", "errorType", …}}`;
- SNS's redrive of a message it could not deliver to the function: the SNS notification
  document itself (`{"Type": "Notification", "MessageId", "Message", "MessageAttributes", …}`),
  with SQS attributes `RequestID`, `ErrorCode`, `ErrorMessage`.

Each notification is published again with its original body and attributes, plus
`notificationId` = its original id, so the envelope clients receive keeps the `id` they dedupe
by; then the dead letter is deleted. A message that cannot be read is left in the queue and
counted. Prints a summary: replayed / skipped / unreadable / failed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from functions import contract, dead_letters
from mentorassist.publisher import region_of

# Long enough that one run does not see a message it left in place (skipped, unreadable) again.
VISIBILITY_TIMEOUT_SECONDS = 300
RECEIVE_BATCH = 10  # SQS's maximum per ReceiveMessage

DIRECT, ON_FAILURE, SNS_REDRIVE = "publish", "on-failure", "sns-redrive"


class Unreadable(ValueError):
    """A dead letter none of the known shapes explains."""


@dataclass(frozen=True)
class Notification:
    """One original notification, as published to the topic."""

    notification_id: str
    message: str
    attributes: dict[str, Any]  # SNS → Lambda shape: {name: {"Type", "Value"}}


@dataclass(frozen=True)
class DeadLetter:
    kind: str  # DIRECT, ON_FAILURE or SNS_REDRIVE
    reason: str
    notifications: tuple[Notification, ...]

    @property
    def permanent(self) -> bool:
        return self.kind == DIRECT and self.reason in dead_letters.PERMANENT_REASONS


@dataclass
class Summary:
    replayed: int = 0  # dead letters whose notifications were all republished, then deleted
    skipped: int = 0  # permanent failures left in the queue
    unreadable: int = 0  # left in the queue
    failed: int = 0  # republishing failed: left in the queue
    notifications: int = 0  # notifications republished (an on-failure record may hold several)
    dry_run: bool = False
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        return (
            f"{verb} {self.replayed} ({self.notifications} notification(s)), "
            f"skipped {self.skipped}, unreadable {self.unreadable}, failed {self.failed}"
        )


def parse(body: str) -> DeadLetter:
    """The notifications a dead-letter message body holds, whichever of the three shapes."""
    try:
        document = json.loads(body)
    except ValueError:
        raise Unreadable("body is not JSON") from None
    if not isinstance(document, dict):
        raise Unreadable("body is not a JSON object")
    if document.get("source") == dead_letters.SOURCE and "record" in document:
        record = document["record"]
        sns = record.get("Sns") if isinstance(record, dict) else None
        notification = _notification(sns, document.get("notificationId"))
        return DeadLetter(DIRECT, str(document.get("reason")), (notification,))
    if "requestPayload" in document and "requestContext" in document:
        records = (document.get("requestPayload") or {}).get("Records")
        if not isinstance(records, list) or not records:
            raise Unreadable("on-failure record without SNS records in its requestPayload")
        notifications = tuple(
            _notification(record.get("Sns") if isinstance(record, dict) else None)
            for record in records
        )
        condition = (document.get("requestContext") or {}).get("condition", "failed")
        error = (document.get("responsePayload") or {}).get("errorType")
        reason = f"{condition}: {error}" if error else str(condition)
        return DeadLetter(ON_FAILURE, reason, notifications)
    if document.get("Type") == "Notification" and "Message" in document:
        return DeadLetter(SNS_REDRIVE, "sns-delivery-failed", (_notification(document),))
    raise Unreadable("not a dead letter of the publish path")


def _notification(sns: Any, notification_id: Any = None) -> Notification:
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        raise Unreadable("no SNS message body to replay")
    attributes = sns.get("MessageAttributes") or {}
    if not isinstance(attributes, dict):
        raise Unreadable("message attributes are not an object")
    if not isinstance(notification_id, str) or not notification_id:
        given = attributes.get(contract.NOTIFICATION_ID_ATTRIBUTE)
        value = given.get("Value") if isinstance(given, dict) else None
        notification_id = value if isinstance(value, str) and value else sns.get("MessageId")
    if not isinstance(notification_id, str) or not notification_id:
        raise Unreadable("no notification id")
    return Notification(notification_id, sns["Message"], attributes)


def publish_attributes(notification: Notification) -> dict[str, dict[str, Any]]:
    """SNS Publish attributes: the originals, and `notificationId` = the original id."""
    published: dict[str, dict[str, Any]] = {}
    for name, attribute in notification.attributes.items():
        if not isinstance(attribute, dict) or not isinstance(attribute.get("Value"), str):
            raise Unreadable(f"attribute {name!r} is not a {{Type, Value}} pair")
        kind = str(attribute.get("Type") or "String")
        if kind == "Binary":
            try:
                value = base64.b64decode(attribute["Value"], validate=True)
            except (binascii.Error, ValueError):
                raise Unreadable(f"Binary attribute {name!r} is not base64") from None
            published[name] = {"DataType": kind, "BinaryValue": value}
        else:
            published[name] = {"DataType": kind, "StringValue": attribute["Value"]}
    published[contract.NOTIFICATION_ID_ATTRIBUTE] = {
        "DataType": "String",
        "StringValue": notification.notification_id,
    }
    return published


def replay(
    queue_url: str,
    topic_arn: str,
    *,
    sqs: Any = None,
    sns: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    max_messages: int | None = None,
    dry_run: bool = False,
    include_permanent: bool = False,
) -> Summary:
    """Republish the queue's dead-lettered notifications through the topic (see module doc)."""
    # Without a region, the topic's own: the queue and the topic live in one stack's region.
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    region = region or region_of(topic_arn)
    sqs = sqs or boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
    sns = sns or boto3.client("sns", endpoint_url=endpoint_url, region_name=region)
    summary = Summary(dry_run=dry_run)
    left: list[str] = []  # receipt handles of the messages left in the queue
    for message in _messages(sqs, queue_url, max_messages):
        sqs_id = message["MessageId"]
        try:
            letter = parse(message["Body"])
            attributes = [publish_attributes(n) for n in letter.notifications]
        except Unreadable as unreadable:
            summary.unreadable += 1
            summary.details.append(f"unreadable {sqs_id}: {unreadable}")
            left.append(message["ReceiptHandle"])
            continue
        ids = ", ".join(n.notification_id for n in letter.notifications)
        if letter.permanent and not include_permanent:
            summary.skipped += 1
            summary.details.append(f"skipped {ids}: {letter.reason} (permanent)")
            left.append(message["ReceiptHandle"])
            continue
        if dry_run:
            left.append(message["ReceiptHandle"])
        else:
            try:
                for notification, published in zip(letter.notifications, attributes, strict=True):
                    sns.publish(
                        TopicArn=topic_arn,
                        Message=notification.message,
                        MessageAttributes=published,
                    )
            except Exception as error:
                # Left in the queue: it becomes visible again and a later run retries it. A
                # notification already republished from the same dead letter is then sent
                # twice, with the same id.
                summary.failed += 1
                summary.details.append(f"failed {ids}: {error}")
                left.append(message["ReceiptHandle"])
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        summary.replayed += 1
        summary.notifications += len(letter.notifications)
        summary.details.append(f"{'would replay' if dry_run else 'replayed'} {ids} ({letter.kind})")
    _release(sqs, queue_url, left)
    return summary


def _release(sqs: Any, queue_url: str, receipt_handles: list[str]) -> None:
    """Make the messages left in place visible again now, for the next run or reader."""
    for receipt_handle in receipt_handles:
        try:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
            )
        except Exception:  # best effort: they reappear after the visibility timeout anyway
            continue


def _messages(sqs: Any, queue_url: str, limit: int | None) -> Iterator[dict[str, Any]]:
    """Each message of the queue once (left ones stay invisible for the run), up to `limit`."""
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        batch = RECEIVE_BATCH if limit is None else min(RECEIVE_BATCH, limit - len(seen))
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch,
            VisibilityTimeout=VISIBILITY_TIMEOUT_SECONDS,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mentorassist.replay",
        description="Republish dead-lettered MentorAssist notifications through the topic.",
    )
    parser.add_argument("--queue-url", required=True, help="the dead-letter queue")
    parser.add_argument("--topic-arn", required=True, help="the notifications topic")
    parser.add_argument("--endpoint-url", help="AWS endpoint (e.g. the local stack's emulator)")
    parser.add_argument(
        "--region", help="AWS region (default: from the environment, else the topic ARN's)"
    )
    parser.add_argument("--max", type=int, dest="max_messages", help="at most N messages")
    parser.add_argument("--dry-run", action="store_true", help="report, publish and delete nothing")
    parser.add_argument(
        "--include-permanent",
        action="store_true",
        help="also replay notifications rejected for a permanent reason (invalid target, …)",
    )
    args = parser.parse_args(argv)
    if args.max_messages is not None and args.max_messages < 1:
        parser.error("--max must be at least 1")
    try:
        summary = replay(
            args.queue_url,
            args.topic_arn,
            endpoint_url=args.endpoint_url,
            region=args.region,
            max_messages=args.max_messages,
            dry_run=args.dry_run,
            include_permanent=args.include_permanent,
        )
    except (BotoCoreError, ClientError) as error:
        # Nothing was lost: a message leaves the queue only after it was republished.
        print(f"error: could not reach the queue or the topic: {error}", file=sys.stderr)
        return 1
    for detail in summary.details:
        print(detail)
    print(summary.line())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
