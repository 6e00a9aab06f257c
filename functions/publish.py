"""SNS → every live connection of the users a notification names.

For each SNS record: read the notification id (the `notificationId` attribute when a backend or
the replay tool set it, else the SNS MessageId) and the target from the message attributes
(`userId` as String or String.Array, or `broadcast` = "all"); build the client envelope once;
find the users' connections through the user index (every page) while reading, at the same
time, whether an earlier attempt left connections still owed this notification (unless the
record is too young to be a retry); post to them all at once with a bounded thread pool.

The guarantee: at-least-once delivery to every connection live at publish time, each frame
carrying the notification's stable `id`, and no fan-out again on retry.
- Throttling, 5xx and timeouts (management API and DynamoDB) are retried inside the invocation
  with bounded, jittered exponential backoff, within the Lambda's remaining time
  (`functions.retry`).
- A notification still owed to some connections after that is recorded in the pending
  deliveries table with those connections, and the invocation raises `PublishIncomplete`: Lambda
  retries the event, and the retry posts only to the connections still owed. After Lambda's
  last retry the event lands in the dead-letter queue (the function's on-failure destination).
- Duplicates remain possible where they cannot be told apart from a loss: a post that arrived
  but whose answer did not (timeout), a run cut short by the function's timeout before it could
  record what was owed, SNS delivering the same message twice (the second copy may also come
  too soon after the first to read what the first left owed), or a pending record that could
  not be written. They carry the same `id`; clients drop them.
- A failure a retry cannot fix goes straight to the dead-letter queue with a reason code and the
  record as received, and is not raised: an invalid or malformed target, attributes of ours in
  unexpected shapes, an envelope over API Gateway's 128 KB, a post answered 413 (the connection
  is fine: its row stays). If the dead-letter queue cannot take it, the invocation raises, so
  nothing disappears.
- A connection that answers 410 is gone: its row is deleted (in batches, once the posts are
  done; a row younger than the connecting grace is kept); that is not a failure.
- One bad record never stops the others: every record of the event is attempted before raising.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple

from functions import contract, dead_letters, environment, management, pending, retry, sessions

logger = logging.getLogger(__name__)

DELIVERED, GONE, FAILED = "delivered", "gone", "failed"
PAYLOAD_TOO_LARGE = "payload_too_large"
# The counts a run returns (and PublishIncomplete carries): records seen; records rejected for
# invalid or malformed attributes, too large, or whose connections could not be looked up;
# connections posted to and the outcome of each post; records resumed from a pending delivery;
# records put in the dead-letter queue, and the attempts to do so that failed.
SUMMARY_KEYS = (
    "messages",
    "rejected",
    "oversized",
    "lookup_failed",
    "connections",
    DELIVERED,
    GONE,
    FAILED,
    PAYLOAD_TOO_LARGE,
    "resumed",
    "dead_lettered",
    "dead_letter_failed",
)
# Connection ids one log line names at most.
LOGGED_IDS = 50
# The retry policy of every AWS call in a run, bounded by the invocation's remaining time.
BACKOFF = retry.Backoff()
_pools = threading.local()


class Rejected(ValueError):
    """The record breaks the publishing contract; `reason` is its dead-letter reason code."""

    reason = dead_letters.INVALID_RECORD


class InvalidTarget(Rejected):
    """The record's message attributes do not name a valid target."""

    reason = dead_letters.INVALID_TARGET


class InvalidAttributes(InvalidTarget):
    """An attribute of the contract has an unexpected shape or data type (an InvalidTarget, so
    callers that check a target and its type catch both)."""

    reason = dead_letters.INVALID_ATTRIBUTES


class PublishIncomplete(Exception):
    """Some notification did not reach every connection; `summary` holds the counts."""

    def __init__(self, summary: dict[str, int]) -> None:
        counts = ", ".join(f"{name}={count}" for name, count in summary.items())
        super().__init__(f"publish incomplete: {counts}")
        self.summary = summary


class Target(NamedTuple):
    users: tuple[str, ...] = ()
    broadcast: bool = False


class Run(NamedTuple):
    """What every record of one invocation shares."""

    backoff: retry.Backoff
    broadcast_enabled: bool
    pool: Executor
    summary: dict[str, int]


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Deliver every record; returns the counts, or raises PublishIncomplete with them."""
    summary = dict.fromkeys(SUMMARY_KEYS, 0)
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        records = [event]  # not an SNS event at all: dead-lettered as one invalid record
    run = Run(
        backoff=BACKOFF.within(context),
        broadcast_enabled=environment.flag(contract.ENV_BROADCAST_ENABLED),
        pool=_pool(environment.publish_concurrency()),
        summary=summary,
    )
    settled: list[tuple[str | None, bool]] = []
    for record in records:
        summary["messages"] += 1
        settled.append((record_id(record), _publish(record, run)))

    if not all(done for _, done in settled):
        # Lambda retries the whole event: the records already settled are marked so, and the
        # retry skips them instead of posting or dead-lettering them twice.
        unsettled = {nid for nid, done in settled if not done}
        _mark_settled(sorted({nid for nid, done in settled if done and nid} - unsettled), run)
        logger.error("publish incomplete", extra={"summary": summary})
        raise PublishIncomplete(summary)
    logger.info("publish done", extra={"summary": summary})
    return summary


def _pool(size: int) -> Executor:
    """The posting threads, kept for the life of the container like the SDK clients: starting
    them on every invocation cost 5-10 % of a small publish (docs/PERFORMANCE.md).
    One pool per invoking thread and size: Lambda runs one invocation per container at a time,
    and where several run in one process (the local stack) each keeps a pool of its own, as it
    would have a container of its own. Every task a run submits is waited for before the
    handler returns, so nothing runs on between invocations."""
    pools: dict[int, ThreadPoolExecutor] | None = getattr(_pools, "by_size", None)
    if pools is None:
        pools = _pools.by_size = {}
    pool = pools.get(size)
    if pool is None:
        pool = pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="publish")
    return pool


def _publish(record: Any, run: Run) -> bool:
    """Deliver one record; True once it is settled (delivered, gone or dead-lettered)."""
    notification_id = record_id(record)
    owed = _owed_lookup(notification_id, record, run)
    try:
        sns = read_record(record)
        read_notification_id(sns)  # a malformed `notificationId` is refused, not replaced
        attributes = sns.get("MessageAttributes") or {}
        target = read_target(attributes, broadcast_enabled=run.broadcast_enabled)
        event_type = read_type(attributes)
    except Rejected as rejected:
        if _already_settled(owed, notification_id, run):
            return True
        run.summary["rejected"] += 1
        return _dead_letter(rejected.reason, str(rejected), notification_id, record, run)

    body = envelope(notification_id, event_type, sns["Message"], sns.get("Timestamp"))
    if len(body) > contract.MAX_MESSAGE_BYTES:
        if _already_settled(owed, notification_id, run):
            return True
        run.summary["oversized"] += 1
        detail = (
            f"envelope is {len(body)} bytes; API Gateway delivers at most "
            f"{contract.MAX_MESSAGE_BYTES}; posted to nobody"
        )
        return _dead_letter(dead_letters.TOO_LARGE, detail, notification_id, record, run)

    connections = _recipients(target, owed, notification_id, run)
    if connections is None:
        run.summary["lookup_failed"] += 1
        return False
    undelivered = _post_to_all(connections, body, notification_id, record, run)
    if undelivered:
        _remember_owed(notification_id, undelivered, run)
        return False
    if owed is not None and owed.result() is not None:
        _forget_owed(notification_id, run)
    return True


def _recipients(
    target: Target,
    owed: Future[frozenset[str] | None] | None,
    notification_id: str | None,
    run: Run,
) -> sessions.Connections | None:
    """The connections to post to: those an earlier attempt left owed if it left any, else the
    target's connections; None when that cannot be known."""
    try:
        found: sessions.Connections | None = _connections(target, run)
    except Exception:
        logger.exception("could not look up connections", extra=_fields(notification_id))
        found = None
    try:
        still_owed = owed.result() if owed else None
    except Exception:
        logger.exception("could not read pending deliveries", extra=_fields(notification_id))
        return None
    if still_owed is None:
        return found
    run.summary["resumed"] += 1
    # An earlier attempt reached the others. How old these are was not recorded.
    return dict.fromkeys(sorted(still_owed))


def _post_to_all(
    connections: sessions.Connections,
    body: bytes,
    notification_id: str | None,
    record: Any,
    run: Run,
) -> dict[str, str]:
    """Post concurrently; then delete the rows of the connections found gone, and dead-letter
    the message once if some connection answered 413. Returns the connections still owed it,
    with why."""
    run.summary["connections"] += len(connections)
    outcomes = run.pool.map(lambda cid: _deliver(cid, body, notification_id, run), connections)
    undelivered: dict[str, str] = {}
    too_large: list[str] = []
    gone: sessions.Connections = {}
    for connection_id, (outcome, why) in zip(connections, outcomes, strict=True):
        run.summary[outcome] += 1
        if outcome == FAILED:
            undelivered[connection_id] = why
        elif outcome == PAYLOAD_TOO_LARGE:
            too_large.append(connection_id)
        elif outcome == GONE:
            gone[connection_id] = connections[connection_id]
    if gone:
        _forget_gone(gone, notification_id, run)
    if too_large:
        detail = f"{len(too_large)} connection(s) answered 413 Payload Too Large"
        sent = _dead_letter(
            dead_letters.PAYLOAD_TOO_LARGE,
            detail,
            notification_id,
            record,
            run,
            connections=too_large,
        )
        if not sent:  # owed until it is in the queue: the retry posts (and tries) again
            undelivered.update(dict.fromkeys(too_large, "413, not dead-lettered"))
    return undelivered


def record_id(record: Any) -> str | None:
    """The notification id of a record, for logs and dead letters even when it is invalid."""
    sns = record.get("Sns") if isinstance(record, dict) else None
    if not isinstance(sns, dict):
        return None
    try:
        return read_notification_id(sns)
    except Rejected:
        message_id = sns.get("MessageId")
        return message_id if isinstance(message_id, str) else None


def read_record(record: Any) -> dict[str, Any]:
    """The SNS part of a Lambda record, checked for the fields delivery needs."""
    sns = record.get("Sns") if isinstance(record, dict) else None
    if not isinstance(sns, dict):
        raise Rejected("not an SNS record (no 'Sns' object)")
    if not isinstance(sns.get("Message"), str):
        raise Rejected("the SNS message body is missing or not a string")
    attributes = sns.get("MessageAttributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise InvalidAttributes("MessageAttributes is not an object")
    return sns


def read_notification_id(sns: dict[str, Any]) -> str:
    """The `notificationId` String attribute when present, else the SNS MessageId."""
    attributes = sns.get("MessageAttributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidAttributes("MessageAttributes is not an object")
    given = _attribute(attributes, contract.NOTIFICATION_ID_ATTRIBUTE, ("String",))
    if given is None:
        message_id = sns.get("MessageId")
        if not isinstance(message_id, str) or not message_id:
            raise Rejected("the SNS record has no MessageId")
        return message_id
    value = given[1]
    if not value.strip() or len(value) > contract.MAX_NOTIFICATION_ID_LENGTH:
        raise InvalidAttributes(
            f"{contract.NOTIFICATION_ID_ATTRIBUTE!r} must be a non-empty String of at most "
            f"{contract.MAX_NOTIFICATION_ID_LENGTH} characters"
        )
    return value


def read_target(attributes: dict[str, Any], *, broadcast_enabled: bool) -> Target:
    """The users (or everyone) a record is for, from its SNS message attributes."""
    if not isinstance(attributes, dict):
        raise InvalidAttributes("MessageAttributes is not an object")
    users = _attribute(attributes, contract.TARGET_USER_ATTRIBUTE, ("String", "String.Array"))
    broadcast = _attribute(attributes, contract.BROADCAST_ATTRIBUTE, ("String",))
    if users is not None and broadcast is not None:
        raise InvalidTarget(
            f"names both {contract.TARGET_USER_ATTRIBUTE!r} and {contract.BROADCAST_ATTRIBUTE!r}"
        )
    if broadcast is not None:
        if not broadcast_enabled:
            raise InvalidTarget("broadcast is disabled on this stack")
        if broadcast[1] != contract.BROADCAST_ALL:
            raise InvalidTarget(
                f"{contract.BROADCAST_ATTRIBUTE!r} must be the String {contract.BROADCAST_ALL!r}"
            )
        return Target(broadcast=True)
    if users is None:
        raise InvalidTarget(f"no {contract.TARGET_USER_ATTRIBUTE!r} attribute")
    return Target(users=_read_users(*users))


def _attribute(
    attributes: dict[str, Any], name: str, types: tuple[str, ...]
) -> tuple[str, str] | None:
    """(data type, value) of one of our attributes, None when absent; InvalidAttributes when
    it is not `{"Type": <one of types>, "Value": <string>}` (Number and Binary included)."""
    attribute = attributes.get(name)
    if attribute is None:
        return None
    if not isinstance(attribute, dict):
        raise InvalidAttributes(f"{name!r} is not a {{Type, Value}} attribute")
    kind, value = attribute.get("Type"), attribute.get("Value")
    if kind not in types:
        expected = " or ".join(types)
        raise InvalidAttributes(f"{name!r} must be a {expected} attribute, got {kind!r}")
    if not isinstance(value, str):
        raise InvalidAttributes(f"{name!r} has a {type(value).__name__} value, not a string")
    return kind, value


def _read_users(kind: str, value: str) -> tuple[str, ...]:
    name = contract.TARGET_USER_ATTRIBUTE
    if kind == "String":
        ids: Any = [value]
    else:
        try:
            ids = json.loads(value)
        except ValueError:
            raise InvalidTarget(f"{name!r} String.Array is not a JSON array") from None
        if not isinstance(ids, list):
            raise InvalidTarget(f"{name!r} String.Array is not a JSON array")
        if not ids:
            raise InvalidTarget(f"{name!r} names no user")
    if not all(isinstance(user, str) and user.strip() for user in ids):
        raise InvalidTarget(f"{name!r} user ids must be non-empty strings")
    users = tuple(dict.fromkeys(ids))
    if len(users) > contract.MAX_TARGET_USERS:
        raise InvalidTarget(
            f"{name!r} names {len(users)} users; at most {contract.MAX_TARGET_USERS} per message"
        )
    return users


def read_type(attributes: dict[str, Any]) -> str:
    attribute = _attribute(attributes, contract.TYPE_ATTRIBUTE, ("String",))
    if attribute is None:
        return contract.DEFAULT_TYPE
    if not attribute[1]:
        raise InvalidAttributes(f"{contract.TYPE_ATTRIBUTE!r} must be a non-empty String")
    return attribute[1]


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


def _connections(target: Target, run: Run) -> sessions.Connections:
    if target.broadcast:
        return sessions.all_connections(backoff=run.backoff)
    found: sessions.Connections = {}
    for of_user in run.pool.map(
        lambda user: sessions.connections_of(user, backoff=run.backoff), target.users
    ):
        found.update(of_user)
    return found


def _deliver(
    connection_id: str, body: bytes, notification_id: str | None, run: Run
) -> tuple[str, str]:
    """(outcome, why) of one post, retries included."""
    fields = {**_fields(notification_id), "connectionId": connection_id}
    try:
        management.post(connection_id, body, run.backoff)
    except management.ConnectionGone:
        return GONE, ""
    except management.PayloadTooLarge as failed:
        logger.error("post refused: 413 %s", failed.code, extra=fields)
        return PAYLOAD_TOO_LARGE, f"{failed.status} {failed.code}"
    except management.DeliveryFailed as failed:
        logger.error(
            "post failed: %s %s",
            failed.status,
            failed.code,
            extra={**fields, "status": failed.status, "code": failed.code},
        )
        return FAILED, f"{failed.status} {failed.code}"
    except Exception as error:
        # A bug must not stop the other posts; it is owed and retried like any failure.
        logger.exception("post failed unexpectedly", extra=fields)
        return FAILED, type(error).__name__
    return DELIVERED, ""


def _forget_gone(gone: sessions.Connections, notification_id: str | None, run: Run) -> None:
    """Delete the rows of connections that answered 410, batched and in parallel. A row that
    cannot be deleted now is not a lost notification: its TTL removes it."""
    forgotten = sessions.forget_gone(gone, backoff=run.backoff, map_=run.pool.map)
    fields = _fields(notification_id)
    if forgotten.deleted:
        logger.info(
            "deleted %d gone connection(s)",
            len(forgotten.deleted),
            extra={**fields, "connectionIds": _some(forgotten.deleted)},
        )
    if forgotten.kept:
        logger.info(
            "kept the row of %d gone connection(s) that may still be connecting",
            len(forgotten.kept),
            extra={**fields, "connectionIds": _some(forgotten.kept)},
        )
    if forgotten.failed:
        logger.warning(
            "could not delete %d gone connection(s): %s",
            len(forgotten.failed),
            "; ".join(sorted({f"{type(e).__name__}: {e}" for e in forgotten.errors})),
            extra={**fields, "connectionIds": _some(forgotten.failed)},
        )


def _dead_letter(
    reason: str, detail: str, notification_id: str | None, record: Any, run: Run, **extra: Any
) -> bool:
    """Send the record to the dead-letter queue; True when it is there."""
    logger.error(
        "dead-lettering notification %s: %s: %s",
        notification_id,
        reason,
        detail,
        extra={**_fields(notification_id), "reason": reason, "detail": detail},
    )
    try:
        dead_letters.send(reason, detail, notification_id, record, run.backoff, **extra)
    except Exception:
        logger.exception("could not dead-letter; the event fails", extra=_fields(notification_id))
        run.summary["dead_letter_failed"] += 1
        return False
    run.summary["dead_lettered"] += 1
    return True


def _owed_lookup(
    notification_id: str | None, record: Any, run: Run
) -> Future[frozenset[str] | None] | None:
    """Start reading what an earlier attempt left owed (alongside the connection lookup),
    unless the record is too young to be Lambda's retry of an attempt that failed."""
    if notification_id is None or pending.table() is None or _first_attempt(record):
        return None
    return run.pool.submit(pending.load, notification_id, run.backoff)


def _first_attempt(record: Any) -> bool:
    """True when this record cannot have been tried before: its id is the SNS MessageId (a
    `notificationId` attribute may be reused, by a replay for one) and SNS published it more
    recently than Lambda's first retry could come. Anything unclear counts as a retry."""
    sns = record.get("Sns") if isinstance(record, dict) else None
    if not isinstance(sns, dict) or not isinstance(sns.get("Timestamp"), str):
        return False
    attributes = sns.get("MessageAttributes")
    if not isinstance(attributes, dict) or contract.NOTIFICATION_ID_ATTRIBUTE in attributes:
        return False
    try:
        published = datetime.fromisoformat(sns["Timestamp"])
    except ValueError:
        return False
    if published.tzinfo is None:
        return False
    age = time.time() - published.timestamp()
    return 0 <= age < environment.first_retry_after_seconds()


def _already_settled(
    owed: Future[frozenset[str] | None] | None, notification_id: str | None, run: Run
) -> bool:
    """True when an earlier attempt already dead-lettered this record (its marker goes)."""
    try:
        settled = owed is not None and owed.result() == frozenset()
    except Exception:
        logger.warning("could not read pending deliveries", extra=_fields(notification_id))
        return False
    if settled:
        _forget_owed(notification_id, run)
    return settled


def _remember_owed(notification_id: str | None, undelivered: dict[str, str], run: Run) -> None:
    if notification_id is None or pending.table() is None:
        return
    reasons = ", ".join(f"{why} x{n}" for why, n in Counter(undelivered.values()).items())
    try:
        pending.save(notification_id, set(undelivered), reasons, run.backoff)
    except Exception:
        # The retry then fans out again: duplicates, same id, nothing lost.
        logger.exception("could not record pending deliveries", extra=_fields(notification_id))


def _forget_owed(notification_id: str | None, run: Run) -> None:
    if notification_id is None:
        return
    try:
        pending.clear(notification_id, run.backoff)
    except Exception:
        # TTL removes it; only a duplicate delivery of this notification would read it.
        logger.warning("could not clear pending deliveries", extra=_fields(notification_id))


def _mark_settled(notification_ids: list[str], run: Run) -> None:
    if pending.table() is None:
        return
    for notification_id in notification_ids:
        try:
            pending.save(notification_id, set(), "settled", run.backoff)
        except Exception:
            logger.warning("could not mark settled", extra=_fields(notification_id), exc_info=True)


def _some(connection_ids: tuple[str, ...]) -> list[str]:
    """At most LOGGED_IDS of them: a broadcast may find thousands gone, and one log event
    holds 256 KB."""
    return list(connection_ids[:LOGGED_IDS])


def _fields(notification_id: str | None) -> dict[str, Any]:
    return {"notificationId": notification_id}
