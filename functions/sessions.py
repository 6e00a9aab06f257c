"""The sessions table: which connections are open, and whose they are.

One row per connection (key `connectionId`), a keys-only global secondary index on `userId` for
the fan-out, and DynamoDB TTL on `expiresAt` (epoch seconds) to sweep rows whose `$disconnect`
never ran.

The publish path passes a `functions.retry.Backoff`: its reads and deletes are then retried
there (throttling, 5xx), page by page; without one, botocore's standard retries apply.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from functions import aws, contract, environment, retry

DEFAULT_SCAN_SEGMENTS = 4


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
    connection_id: str, backoff: retry.Backoff | None = None, now: float | None = None
) -> bool:
    """Delete the row of a connection the management API called gone (410); True if deleted.

    A row younger than the connecting grace is kept: the 410 may have come from a connection
    whose `$connect` had written the row but not yet returned, and deleting it would leave that
    client connected and unreachable until it reconnects.
    """
    moment = time.time() if now is None else now
    cutoff = _iso_utc(moment - environment.connecting_grace_seconds())
    try:
        delete_session(
            connection_id,
            backoff,
            # ISO-8601 UTC strings of one format order like the instants they name.
            ConditionExpression="#connectedAt <= :cutoff",
            ExpressionAttributeNames={"#connectedAt": contract.CONNECTED_AT},
            ExpressionAttributeValues={":cutoff": {"S": cutoff}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False  # still connecting, or already deleted
        raise
    return True


def connections_of(
    user_id: str, page_size: int | None = None, backoff: retry.Backoff | None = None
) -> list[str]:
    """Connection ids of one user, read from the user index, every page of it.

    The index is eventually consistent (it rejects ConsistentRead): a connection made a moment
    ago may be missing, which a notification published at the same instant can tolerate.
    """
    request: dict[str, Any] = {
        "TableName": environment.sessions_table(),
        "IndexName": contract.USER_INDEX,
        "KeyConditionExpression": "#user = :user",
        "ProjectionExpression": "#connection",
        "ExpressionAttributeNames": {
            "#user": contract.USER_ID,
            "#connection": contract.CONNECTION_ID,
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
) -> list[str]:
    """Every connection id in the table (for broadcast), read by parallel scan segments."""
    table = environment.sessions_table()

    def scan_segment(segment: int) -> list[str]:
        request: dict[str, Any] = {
            "TableName": table,
            "Segment": segment,
            "TotalSegments": segments,
            "ProjectionExpression": "#connection",
            "ExpressionAttributeNames": {"#connection": contract.CONNECTION_ID},
        }
        if page_size is not None:
            request["Limit"] = page_size
        return _all_pages("scan", request, backoff)

    with ThreadPoolExecutor(max_workers=segments) as pool:
        return [cid for found in pool.map(scan_segment, range(segments)) for cid in found]


def _all_pages(operation: str, request: dict[str, Any], backoff: retry.Backoff | None) -> list[str]:
    connection_ids: list[str] = []
    while True:
        page = retry.aws_call("dynamodb", operation, backoff, **request)
        connection_ids.extend(item[contract.CONNECTION_ID]["S"] for item in page.get("Items", []))
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            return connection_ids
        request["ExclusiveStartKey"] = last_key


def _iso_utc(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
