"""Dead-lettering a notification the publish function will not deliver, with the reason.

For failures a retry cannot fix (the message is wrong, not the moment): the SNS record goes to
the dead-letter queue (`DEAD_LETTER_QUEUE_URL`) as JSON,

    {"reason": <code>, "detail": <text>, "notificationId": <id>, "source": "publish",
     "record": <the SNS record as received>, ...extra}

so an operator sees why, and `python -m mentorassist.replay` can send it through the topic
again. The same queue also receives, unchanged, what AWS puts there: the publish function's
on-failure destination records (transient failures after Lambda's retries) and SNS redrive
messages (SNS could not invoke the function). A failed SendMessage is raised: the caller must
not treat the notification as settled.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from functions import contract, environment, retry

logger = logging.getLogger(__name__)

SOURCE = "publish"

# Reason codes (stable: tools and alarms match on them).
INVALID_RECORD = "invalid_record"  # not an SNS record, or its body is not a string
INVALID_ATTRIBUTES = "invalid_attributes"  # an attribute of ours in an unexpected shape or type
INVALID_TARGET = "invalid_target"  # no valid userId / broadcast target
TOO_LARGE = "too_large"  # envelope over API Gateway's message limit
PAYLOAD_TOO_LARGE = "payload_too_large"  # a post answered 413
# Every reason this module sends is permanent: replaying it unchanged fails the same way.
PERMANENT_REASONS = frozenset(
    {INVALID_RECORD, INVALID_ATTRIBUTES, INVALID_TARGET, TOO_LARGE, PAYLOAD_TOO_LARGE}
)

# SQS's classic message limit (a queue may allow up to 1 MiB; this fits any queue). A record
# too large for it keeps everything but the message body, which is measured instead.
QUEUE_MAX_MESSAGE_BYTES = 256 * 1024
REASON_ATTRIBUTE = "reason"  # SQS message attribute, to filter without parsing bodies


def message_body(
    reason: str, detail: str, notification_id: str | None, record: Any, **extra: Any
) -> str:
    body = {
        "reason": reason,
        "detail": detail,
        "notificationId": notification_id,
        "source": SOURCE,
        "record": record,
        **extra,
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
    if len(text.encode("utf-8")) <= QUEUE_MAX_MESSAGE_BYTES:
        return text
    sns = record.get("Sns") if isinstance(record, dict) else None
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        raise ValueError(f"dead-letter record too large for the queue ({len(text)} characters)")
    message_bytes = len(sns["Message"].encode("utf-8"))
    trimmed = {**record, "Sns": {**sns, "Message": None}}
    return message_body(
        reason, detail, notification_id, trimmed, messageOmitted=True, messageBytes=message_bytes
    )


def send(
    reason: str,
    detail: str,
    notification_id: str | None,
    record: Any,
    backoff: retry.Backoff,
    **extra: Any,
) -> None:
    """Put one rejected record in the dead-letter queue; raises if that fails."""
    retry.aws_call(
        "sqs",
        "send_message",
        backoff,
        QueueUrl=environment.required(contract.ENV_DEAD_LETTER_QUEUE_URL),
        MessageBody=message_body(reason, detail, notification_id, record, **extra),
        MessageAttributes={REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason}},
    )
    logger.info(
        "dead-lettered notification %s: %s",
        notification_id,
        reason,
        extra={"notificationId": notification_id, "reason": reason},
    )
