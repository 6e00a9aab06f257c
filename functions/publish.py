"""SNS → every live connection of the users a notification names.

For each SNS record: read the target from the message attributes (`userId` as String or
String.Array, or `broadcast` = "all"), build the client envelope once, find the users'
connections through the user index (every page), and post to all of them at once with a
bounded thread pool.

Outcomes, per the publishing contract:
- a connection that answers 410 is gone: its row is deleted, it is not a failure;
- a record whose target attributes are invalid is logged and dropped (a retry cannot fix it);
- an envelope over API Gateway's message limit is logged and posted to nobody;
- any other failed post, an oversized envelope or a failed lookup makes the invocation raise
  once every record has been attempted, so Lambda retries the event (clients drop the
  duplicates by `id`) and the failure shows in the function's error metric and on-failure
  destination instead of disappearing.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from functions import contract, environment, management, sessions

logger = logging.getLogger(__name__)

DELIVERED, GONE, FAILED = "delivered", "gone", "failed"
# The counts a run returns (and PublishIncomplete carries): records seen, records dropped for
# invalid target attributes, too large, or whose connections could not be looked up; then
# connections found and the outcome of each post.
SUMMARY_KEYS = (
    "messages",
    "rejected",
    "oversized",
    "lookup_failed",
    "connections",
    DELIVERED,
    GONE,
    FAILED,
)


class InvalidTarget(ValueError):
    """The record's message attributes do not name a valid target."""


class PublishIncomplete(Exception):
    """Some notification did not reach every connection; `summary` holds the counts."""

    def __init__(self, summary: dict[str, int]) -> None:
        counts = ", ".join(f"{name}={count}" for name, count in summary.items())
        super().__init__(f"publish incomplete: {counts}")
        self.summary = summary


@dataclass(frozen=True)
class Target:
    users: tuple[str, ...] = ()
    broadcast: bool = False


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Deliver every record; returns the counts, or raises PublishIncomplete with them."""
    summary = dict.fromkeys(SUMMARY_KEYS, 0)
    broadcast_enabled = environment.flag(contract.ENV_BROADCAST_ENABLED)
    with ThreadPoolExecutor(max_workers=environment.publish_concurrency()) as pool:
        for record in event.get("Records") or []:
            summary["messages"] += 1
            _publish(record["Sns"], broadcast_enabled, pool, summary)

    if summary[FAILED] or summary["oversized"] or summary["lookup_failed"]:
        logger.error("publish incomplete", extra={"summary": summary})
        raise PublishIncomplete(summary)
    logger.info("publish done", extra={"summary": summary})
    return summary


def _publish(
    sns: dict[str, Any], broadcast_enabled: bool, pool: Executor, summary: dict[str, int]
) -> None:
    message_id = sns.get("MessageId")
    attributes = sns.get("MessageAttributes") or {}
    try:
        target = read_target(attributes, broadcast_enabled=broadcast_enabled)
        event_type = read_type(attributes)
    except InvalidTarget as invalid:
        logger.error(
            "rejected notification: %s",
            invalid,
            extra={"messageId": message_id, "reason": str(invalid)},
        )
        summary["rejected"] += 1
        return

    body = envelope(message_id, event_type, sns.get("Message"), sns.get("Timestamp"))
    if len(body) > contract.MAX_MESSAGE_BYTES:
        logger.error(
            "notification too large: %d bytes, API Gateway delivers at most %d; posted to nobody",
            len(body),
            contract.MAX_MESSAGE_BYTES,
            extra={"messageId": message_id, "bytes": len(body)},
        )
        summary["oversized"] += 1
        return

    try:
        connection_ids = _connections(target, pool)
    except Exception:
        logger.exception("could not look up connections", extra={"messageId": message_id})
        summary["lookup_failed"] += 1
        return

    summary["connections"] += len(connection_ids)
    for outcome in pool.map(lambda cid: _deliver(cid, body, message_id), connection_ids):
        summary[outcome] += 1


def read_target(attributes: dict[str, Any], *, broadcast_enabled: bool) -> Target:
    """The users (or everyone) a record is for, from its SNS message attributes."""
    users = attributes.get(contract.TARGET_USER_ATTRIBUTE)
    broadcast = attributes.get(contract.BROADCAST_ATTRIBUTE)
    if users is not None and broadcast is not None:
        raise InvalidTarget(
            f"names both {contract.TARGET_USER_ATTRIBUTE!r} and {contract.BROADCAST_ATTRIBUTE!r}"
        )
    if broadcast is not None:
        if not broadcast_enabled:
            raise InvalidTarget("broadcast is disabled on this stack")
        if broadcast.get("Type") != "String" or broadcast.get("Value") != contract.BROADCAST_ALL:
            raise InvalidTarget(
                f"{contract.BROADCAST_ATTRIBUTE!r} must be the String {contract.BROADCAST_ALL!r}"
            )
        return Target(broadcast=True)
    if users is None:
        raise InvalidTarget(f"no {contract.TARGET_USER_ATTRIBUTE!r} attribute")
    return Target(users=_read_users(users))


def _read_users(attribute: dict[str, Any]) -> tuple[str, ...]:
    name = contract.TARGET_USER_ATTRIBUTE
    kind, value = attribute.get("Type"), attribute.get("Value")
    if kind == "String":
        ids: Any = [value]
    elif kind == "String.Array":
        try:
            ids = json.loads(value)
        except (TypeError, ValueError):
            raise InvalidTarget(f"{name!r} String.Array is not a JSON array") from None
        if not isinstance(ids, list):
            raise InvalidTarget(f"{name!r} String.Array is not a JSON array")
        if not ids:
            raise InvalidTarget(f"{name!r} names no user")
    else:
        raise InvalidTarget(f"{name!r} must be a String or String.Array, got {kind!r}")
    if not all(isinstance(user, str) and user.strip() for user in ids):
        raise InvalidTarget(f"{name!r} user ids must be non-empty strings")
    users = tuple(dict.fromkeys(ids))
    if len(users) > contract.MAX_TARGET_USERS:
        raise InvalidTarget(
            f"{name!r} names {len(users)} users; at most {contract.MAX_TARGET_USERS} per message"
        )
    return users


def read_type(attributes: dict[str, Any]) -> str:
    attribute = attributes.get(contract.TYPE_ATTRIBUTE)
    if attribute is None:
        return contract.DEFAULT_TYPE
    value = attribute.get("Value")
    if attribute.get("Type") != "String" or not isinstance(value, str) or not value:
        raise InvalidTarget(f"{contract.TYPE_ATTRIBUTE!r} must be a non-empty String")
    return value


def envelope(message_id: str | None, event_type: str, message: Any, sent_at: str | None) -> bytes:
    """The frame clients receive, serialized once for every connection."""
    frame = {"id": message_id, "type": event_type, "data": _payload(message), "sentAt": sent_at}
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _payload(message: Any) -> Any:
    # JSON bodies reach clients as JSON; any other text as a string.
    if not isinstance(message, str):
        return message
    try:
        return json.loads(message)
    except ValueError:
        return message


def _connections(target: Target, pool: Executor) -> list[str]:
    if target.broadcast:
        found = sessions.all_connections()
    else:
        found = [cid for ids in pool.map(sessions.connections_of, target.users) for cid in ids]
    # A connection appears once however it was found (a retried scan page, overlapping users).
    return list(dict.fromkeys(found))


def _deliver(connection_id: str, body: bytes, message_id: str | None) -> str:
    fields = {"messageId": message_id, "connectionId": connection_id}
    try:
        management.post(connection_id, body)
    except management.ConnectionGone:
        _forget(connection_id, fields)
        return GONE
    except management.DeliveryFailed as failed:
        logger.error(
            "post failed: %s %s",
            failed.status,
            failed.code,
            extra={**fields, "status": failed.status, "code": failed.code},
        )
        return FAILED
    except Exception:
        # A bug must not stop the other posts; it is counted and raised at the end.
        logger.exception("post failed unexpectedly", extra=fields)
        return FAILED
    return DELIVERED


def _forget(connection_id: str, fields: dict[str, Any]) -> None:
    try:
        sessions.delete_session(connection_id)
    except Exception:
        # The row's TTL removes it anyway; the notification itself was not lost.
        logger.warning("could not delete gone connection", extra=fields, exc_info=True)
    else:
        logger.info("deleted gone connection", extra=fields)
