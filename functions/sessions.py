"""The sessions table: which connections are open, and whose they are.

One row per connection (key `connectionId`), a global secondary index on `userId` for the
fan-out that carries the keys and `connectedAt` (how old a connection is decides whether a 410
may delete it), and DynamoDB TTL on `expiresAt` (epoch seconds) to sweep rows whose
`$disconnect` never ran.

The publish path passes a `functions.retry.Backoff`: its reads and deletes are then retried
there (throttling, 5xx), page by page; without one, botocore's standard retries apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from functions import aws, contract, environment, retry

DEFAULT_SCAN_SEGMENTS = 4
# Most requests one BatchWriteItem call takes.
BATCH_WRITE_LIMIT = 25

# Connection id -> when it connected (ISO-8601 UTC, as written by `put_session`; None for a row
# without it). Ordered as found; a dict, so a connection appears once however it was found.
Connections = dict[str, str | None]
# How work is spread over threads: `map` itself, or an executor's `map`.
Mapper = Callable[..., Iterator[Any]]


class Forgotten(NamedTuple):
    """What `forget_gone` did with the rows of connections the management API called gone."""

    deleted: tuple[str, ...] = ()
    # Younger than the connecting grace: possibly a client whose `$connect` has not returned.
    kept: tuple[str, ...] = ()
    # Could not be deleted (the error is logged by the caller); TTL removes them.
    failed: tuple[str, ...] = ()
    errors: tuple[BaseException, ...] = ()


def _dynamodb() -> Any:
    return aws.client("dynamodb")


def put_session(connection_id: str, user_id: str, now: float | None = None) -> dict[str, Any]:
    """Record an open connection of a user; returns the item written (DynamoDB JSON)."""
    connected = time.time() if now is None else now
    ttl_seconds = environment.integer(contract.ENV_CONNECTION_TTL_SECONDS)
    item = {
        contract.CONNECTION_ID: {"S": connection_id},
        contract.USER_ID: {"S": user_id},
        contract.CONNECTED_AT: {"S": _iso_utc(connected)},
        # TTL reads epoch seconds; a value in milliseconds would keep the row for millennia.
        contract.EXPIRES_AT: {"N": str(int(connected) + ttl_seconds)},
    }
    _dynamodb().put_item(TableName=environment.sessions_table(), Item=item)
    return item


def delete_session(
    connection_id: str, backoff: retry.Backoff | None = None, **condition: Any
) -> None:
    """Forget a connection; deleting one that is already gone is not an error.

    `condition` (ConditionExpression and its names/values) makes the delete conditional.
    """
    retry.aws_call(
        "dynamodb",
        "delete_item",
        backoff,
        TableName=environment.sessions_table(),
        Key={contract.CONNECTION_ID: {"S": connection_id}},
        **condition,
    )


def forget_gone(
    connections: Mapping[str, str | None],
    backoff: retry.Backoff | None = None,
    now: float | None = None,
    map_: Mapper = map,
) -> Forgotten:
    """Delete the rows of connections the management API called gone (410), in batches.

    A row younger than the connecting grace is kept: the 410 may have come from a connection
    whose `$connect` had written the row but not yet returned, and deleting it would leave that
    client connected and unreachable until it reconnects. The age comes from the lookup that
    found the connection, so the old rows go `BATCH_WRITE_LIMIT` to a call; a connection whose
    age is unknown (an owed one a retry resumed) gets a delete conditional on the row's age.
    `map_` runs the calls (an executor's `map` runs them in parallel).
    """
    moment = time.time() if now is None else now
    cutoff = _iso_utc(moment - environment.connecting_grace_seconds())
    # ISO-8601 UTC strings of one format order like the instants they name.
    old = [cid for cid, connected in connections.items() if connected and connected <= cutoff]
    kept = [cid for cid, connected in connections.items() if connected and connected > cutoff]
    unknown = [cid for cid, connected in connections.items() if not connected]
    batches = [old[i : i + BATCH_WRITE_LIMIT] for i in range(0, len(old), BATCH_WRITE_LIMIT)]

    def delete_batch(batch: list[str]) -> Forgotten:
        try:
            _delete_batch(batch, backoff)
        except Exception as error:
            return Forgotten(failed=tuple(batch), errors=(error,))
        return Forgotten(deleted=tuple(batch))

    def delete_if_old(connection_id: str) -> Forgotten:
        try:
            if _delete_if_connected_before(connection_id, cutoff, backoff):
                return Forgotten(deleted=(connection_id,))
        except Exception as error:
            return Forgotten(failed=(connection_id,), errors=(error,))
        return Forgotten(kept=(connection_id,))  # still connecting, or already deleted

    deleted: list[str] = []
    failed: list[str] = []
    errors: list[BaseException] = []
    for part in [*map_(delete_batch, batches), *map_(delete_if_old, unknown)]:
        deleted += part.deleted
        kept += part.kept
        failed += part.failed
        errors += part.errors
    return Forgotten(tuple(deleted), tuple(kept), tuple(failed), tuple(errors))


def _delete_batch(connection_ids: Iterable[str], backoff: retry.Backoff | None) -> None:
    """BatchWriteItem deletes, retrying what DynamoDB left unprocessed (throttling) under the
    same policy as a throttled call; raises once the policy gives up."""
    table = environment.sessions_table()
    remaining = [
        {"DeleteRequest": {"Key": {contract.CONNECTION_ID: {"S": cid}}}} for cid in connection_ids
    ]

    def attempt() -> None:
        nonlocal remaining
        answer = aws.client("dynamodb", retried=False).batch_write_item(
            RequestItems={table: remaining}
        )
        remaining = answer.get("UnprocessedItems", {}).get(table, [])
        if remaining:
            raise retry.CallFailed(f"{len(remaining)} deletes left unprocessed", transient=True)

    (backoff or retry.Backoff()).call(attempt)


def _delete_if_connected_before(
    connection_id: str, cutoff: str, backoff: retry.Backoff | None
) -> bool:
    try:
        delete_session(
            connection_id,
            backoff,
            ConditionExpression="#connectedAt <= :cutoff",
            ExpressionAttributeNames={"#connectedAt": contract.CONNECTED_AT},
            ExpressionAttributeValues={":cutoff": {"S": cutoff}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def connections_of(
    user_id: str, page_size: int | None = None, backoff: retry.Backoff | None = None
) -> Connections:
    """The connections of one user, read from the user index, every page of it.

    The index is eventually consistent (it rejects ConsistentRead): a connection made a moment
    ago may be missing, which a notification published at the same instant can tolerate.
    """
    request: dict[str, Any] = {
        "TableName": environment.sessions_table(),
        "IndexName": contract.USER_INDEX,
        "KeyConditionExpression": "#user = :user",
        "ProjectionExpression": "#connection, #connectedAt",
        "ExpressionAttributeNames": {
            "#user": contract.USER_ID,
            "#connection": contract.CONNECTION_ID,
            "#connectedAt": contract.CONNECTED_AT,
        },
        "ExpressionAttributeValues": {":user": {"S": user_id}},
    }
    if page_size is not None:
        request["Limit"] = page_size
    return _all_pages("query", request, backoff)


def all_connections(
    segments: int = DEFAULT_SCAN_SEGMENTS,
    page_size: int | None = None,
    backoff: retry.Backoff | None = None,
) -> Connections:
    """Every connection in the table (for broadcast), read by parallel scan segments."""
    table = environment.sessions_table()

    def scan_segment(segment: int) -> Connections:
        request: dict[str, Any] = {
            "TableName": table,
            "Segment": segment,
            "TotalSegments": segments,
            "ProjectionExpression": "#connection, #connectedAt",
            "ExpressionAttributeNames": {
                "#connection": contract.CONNECTION_ID,
                "#connectedAt": contract.CONNECTED_AT,
            },
        }
        if page_size is not None:
            request["Limit"] = page_size
        return _all_pages("scan", request, backoff)

    with ThreadPoolExecutor(max_workers=segments) as pool:
        return {
            cid: at
            for found in pool.map(scan_segment, range(segments))
            for cid, at in found.items()
        }


def _all_pages(
    operation: str, request: dict[str, Any], backoff: retry.Backoff | None
) -> Connections:
    found: Connections = {}
    while True:
        page = retry.aws_call("dynamodb", operation, backoff, **request)
        for item in page.get("Items", []):
            connected = item.get(contract.CONNECTED_AT, {}).get("S")
            found[item[contract.CONNECTION_ID]["S"]] = connected
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return found
        request["ExclusiveStartKey"] = last_key


def _iso_utc(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
