"""1. Lookup cost: items DynamoDB reads to find one user's connections.

Our path, `functions.sessions.connections_of` (a Query on the `userId` index, every page),
against the whole-table Scan with a `userId` filter of the common AWS samples (every page too,
so it finds them all), for a user with 3 connections in tables of growing size. Items read are
DynamoDB's own counts (`ScannedCount` of each page, summed), taken from the responses by a
botocore hook on the client the handler uses; moto runs in-process (`mock_aws`). Rows are
loaded with `batch_write_item`, 25 at a time, and the load is timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from functions import aws, contract, sessions

TABLE = "bench-sessions"
TARGET_USER = "target-user"
TARGET_CONNECTIONS = 3
REGION = "us-east-1"


@dataclass(frozen=True)
class LookupRow:
    table_items: int
    query_read: int  # items DynamoDB read for our Query (ScannedCount summed)
    query_found: int
    query_ms: float
    scan_read: int  # items read by the Scan-and-filter approach
    scan_found: int
    scan_ms: float
    load_seconds: float  # to grow the table to this size with batch_write_item

    @property
    def ratio(self) -> float:
        return self.scan_read / max(self.query_read, 1)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def in_process_dynamodb(table: str) -> Iterator[None]:
    """moto in this process with fake credentials, the handlers' sessions table set to
    `table`, and the handlers' clients made afresh inside (and forgotten after)."""
    from moto import mock_aws

    fake = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        contract.ENV_SESSIONS_TABLE: table,
    }
    with environment(**fake), mock_aws():
        # Endpoint variables from the caller's shell would bypass the mock.
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
            os.environ.pop(name)
        aws.reset_clients()
        try:
            yield
        finally:
            aws.reset_clients()


def session_item(index: int, user: str, now: int) -> dict[str, Any]:
    return {
        contract.CONNECTION_ID: {"S": f"C{index:011d}="},
        contract.USER_ID: {"S": user},
        contract.CONNECTED_AT: {"S": "2026-01-01T00:00:00.000Z"},
        contract.EXPIRES_AT: {"N": str(now + 7500)},
    }


def _load(dynamodb: Any, start: int, stop: int) -> None:
    now = int(time.time())
    batch: list[dict[str, Any]] = []
    for index in range(start, stop):
        # Other users hold 1-3 connections each, as real users do.
        batch.append({"PutRequest": {"Item": session_item(index, f"user-{index // 2}", now)}})
        if len(batch) == 25:
            write_items(dynamodb, batch)
            batch = []
    if batch:
        write_items(dynamodb, batch)


def write_items(dynamodb: Any, batch: list[dict[str, Any]], table: str = TABLE) -> None:
    request = {table: batch}
    while request:
        request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


class _ReadCounter:
    """Sums ScannedCount over the Query/Scan responses a client receives."""

    def __init__(self) -> None:
        self.read = 0

    def __call__(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        self.read += int(parsed.get("ScannedCount", 0))


def _scan_for_user(dynamodb: Any, user: str) -> list[str]:
    """What the common samples do: scan the whole table, filter on the user (all pages)."""
    request: dict[str, Any] = {
        "TableName": TABLE,
        "FilterExpression": "#u = :u",
        "ExpressionAttributeNames": {"#u": contract.USER_ID},
        "ExpressionAttributeValues": {":u": {"S": user}},
    }
    found: list[str] = []
    while True:
        page = dynamodb.scan(**request)
        found += [item[contract.CONNECTION_ID]["S"] for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def measure(sizes: tuple[int, ...]) -> list[LookupRow]:
    import boto3
    from botocore.config import Config

    from local import resources

    rows: list[LookupRow] = []
    with in_process_dynamodb(TABLE):
        dynamodb = aws.client("dynamodb")  # the client connections_of uses
        counter = _ReadCounter()
        dynamodb.meta.events.register("after-call.dynamodb.Query", counter)
        dynamodb.meta.events.register("after-call.dynamodb.Scan", counter)
        resources.create_sessions_table(dynamodb, TABLE)
        # Loading goes through a client of its own without parameter validation (the rows
        # are ours), which saves a fifth of the load time and leaves the counted client alone.
        loader = boto3.client("dynamodb", config=Config(parameter_validation=False))
        now = int(time.time())
        target = [
            {"PutRequest": {"Item": session_item(10**10 + i, TARGET_USER, now)}}
            for i in range(TARGET_CONNECTIONS)
        ]
        write_items(loader, target)
        loaded = TARGET_CONNECTIONS
        for size in sizes:
            started = time.perf_counter()
            _load(loader, loaded, size)
            load_seconds = time.perf_counter() - started
            loaded = size

            counter.read = 0
            started = time.perf_counter()
            found = sessions.connections_of(TARGET_USER)
            query_ms = (time.perf_counter() - started) * 1000
            query_read = counter.read

            counter.read = 0
            started = time.perf_counter()
            scanned = _scan_for_user(dynamodb, TARGET_USER)
            scan_ms = (time.perf_counter() - started) * 1000
            rows.append(
                LookupRow(
                    table_items=size,
                    query_read=query_read,
                    query_found=len(found),
                    query_ms=query_ms,
                    scan_read=counter.read,
                    scan_found=len(scanned),
                    scan_ms=scan_ms,
                    load_seconds=load_seconds,
                )
            )
    return rows
