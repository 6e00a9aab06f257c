"""Reading the dead-letter queue in end-to-end tests.

Two kinds of record land there:
- Lambda's on-failure destination record, after the publish function failed on every attempt
  (`local.delivery` sends it as Lambda does): the SNS event is its `requestPayload`;
- the publish function's own record of a notification it can never deliver (invalid target,
  too large): `{"reason", "detail", "notificationId", "source", "record"}`, see
  `functions.dead_letters`.
`DeadLetter` reads either into the notification's ids and a reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from functions import contract

ON_FAILURE = "on-failure"
HANDLER = "handler"


@dataclass(frozen=True)
class DeadLetter:
    kind: str  # ON_FAILURE or HANDLER
    message_id: str | None  # the SNS MessageId of the notification
    notification_id: str | None  # the id clients see (`notificationId` attribute or MessageId)
    reason: str
    body: dict[str, Any]
    sqs_message_id: str
    receipt_handle: str = ""


def _sns_ids(sns: dict[str, Any]) -> tuple[str | None, str | None]:
    message_id = sns.get("MessageId")
    attribute = (sns.get("MessageAttributes") or {}).get(contract.NOTIFICATION_ID_ATTRIBUTE)
    notification_id = attribute.get("Value") if isinstance(attribute, dict) else None
    return message_id, notification_id or message_id


def parse(sqs_message: dict[str, Any]) -> DeadLetter:
    body = json.loads(sqs_message["Body"])
    sqs = (sqs_message["MessageId"], sqs_message.get("ReceiptHandle", ""))
    if "requestPayload" in body and "requestContext" in body:
        (record,) = body["requestPayload"]["Records"]
        message_id, notification_id = _sns_ids(record["Sns"])
        error = body.get("responsePayload") or {}
        reason = f"{body['requestContext']['condition']}: {error.get('errorType')}"
        return DeadLetter(ON_FAILURE, message_id, notification_id, reason, body, *sqs)
    # {"reason", "detail", "notificationId", "source": "publish", "record": <the SNS record>}
    record = body.get("record")
    sns = record.get("Sns") if isinstance(record, dict) else None
    message_id, notification_id = _sns_ids(sns) if isinstance(sns, dict) else (None, None)
    notification_id = body.get("notificationId") or notification_id
    return DeadLetter(HANDLER, message_id, notification_id, str(body.get("reason")), body, *sqs)


class DeadLetterReader:
    """Everything the dead-letter queue has received so far (read without deleting)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self.letters: dict[str, DeadLetter] = {}

    def poll(self, wait_seconds: int = 1) -> list[DeadLetter]:
        """New records, waiting up to `wait_seconds` for the first (SQS long polling)."""
        response = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            # Kept invisible for the rest of the test: each record is read once.
            VisibilityTimeout=3600,
        )
        new = []
        for message in response.get("Messages", []):
            if message["MessageId"] not in self.letters:
                letter = parse(message)
                self.letters[message["MessageId"]] = letter
                new.append(letter)
        return new

    def release(self) -> None:
        """Make every record read so far visible again (e.g. for the replay tool)."""
        for letter in self.letters.values():
            self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
            )

    def wait_for(self, notification_id: str, timeout: float = 30) -> DeadLetter:
        """The record of a notification, reading the queue (long polls) until it is there."""
        deadline = time.monotonic() + timeout
        while True:
            for letter in self.letters.values():
                if notification_id in (letter.notification_id, letter.message_id):
                    return letter
            if time.monotonic() > deadline:
                raise AssertionError(f"{notification_id} did not reach the dead-letter queue")
            self.poll()
