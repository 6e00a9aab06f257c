"""Pending deliveries: which connections a notification is still owed after a failed attempt.

Written only off the normal path — when a notification reached some but not all of its
connections (transient failures left after the retries), or when the notification is settled
but another record of the same event failed. The retried invocation reads the item and posts to
the remainder only, instead of fanning out again; the item goes once nothing is owed. One item
per notification id (`contract.PENDING_NOTIFICATION_ID`), the owed connection ids as a string
set (`contract.PENDING_REMAINING`; absent = nothing owed), TTL on `contract.EXPIRES_AT`.

Without `PENDING_DELIVERIES_TABLE` nothing is recorded, and a retried event fans out again:
still at-least-once, with duplicates clients drop by envelope id.
"""

from __future__ import annotations

import time

from functions import contract, environment, retry

# Far beyond Lambda's retries of an event (at most 6 h of event age), so an item outlives every
# attempt that could read it; TTL removes whatever is left.
TTL_SECONDS = 24 * 60 * 60
REASONS = "reasons"  # why the remaining connections were not reached (text, for operators)


def table() -> str | None:
    return environment.optional(contract.ENV_PENDING_DELIVERIES_TABLE)


def load(notification_id: str, backoff: retry.Backoff) -> frozenset[str] | None:
    """Connections still owed the notification; None when no earlier attempt left a record."""
    item = retry.aws_call(
        "dynamodb",
        "get_item",
        backoff,
        TableName=_required_table(),
        Key={contract.PENDING_NOTIFICATION_ID: {"S": notification_id}},
        # The previous attempt's write must be seen.
        ConsistentRead=True,
    ).get("Item")
    if item is None:
        return None
    return frozenset(item.get(contract.PENDING_REMAINING, {}).get("SS", ()))


def save(
    notification_id: str,
    remaining: set[str] | frozenset[str],
    reasons: str,
    backoff: retry.Backoff,
    now: float | None = None,
) -> None:
    """Record what the notification is still owed (an empty set: nothing, it is settled)."""
    moment = time.time() if now is None else now
    item = {
        contract.PENDING_NOTIFICATION_ID: {"S": notification_id},
        contract.EXPIRES_AT: {"N": str(int(moment) + TTL_SECONDS)},
        REASONS: {"S": reasons},
    }
    if remaining:  # DynamoDB refuses an empty set
        item[contract.PENDING_REMAINING] = {"SS": sorted(remaining)}
    retry.aws_call("dynamodb", "put_item", backoff, TableName=_required_table(), Item=item)


def clear(notification_id: str, backoff: retry.Backoff) -> None:
    retry.aws_call(
        "dynamodb",
        "delete_item",
        backoff,
        TableName=_required_table(),
        Key={contract.PENDING_NOTIFICATION_ID: {"S": notification_id}},
    )


def _required_table() -> str:
    return environment.required(contract.ENV_PENDING_DELIVERIES_TABLE)
