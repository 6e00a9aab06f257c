"""Clean-up of gone connections: the DynamoDB calls that delete the rows of N connections that
answered 410.

Ours, `functions.sessions.forget_gone` given the ages the lookup found (the user index carries
`connectedAt`): 25 rows to a `BatchWriteItem`. Against one delete per row, conditional on the
row's age — what the publish function did before, and what it still does for a connection of
unknown age: the same function given no ages. Calls are counted by a botocore hook on the
handlers' own clients; moto runs in-process (`mock_aws`), so its times show the number of
round trips, not DynamoDB's latency (each call is a network round trip of a few ms on AWS).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.lookup import in_process_dynamodb, session_item, write_items
from functions import aws, contract, sessions

TABLE = "bench-cleanup"
# Rows written at this instant, deleted "now" = well past the connecting grace.
CONNECTED_EPOCH = 1_796_000_000
CONNECTED_AT = "2026-11-30T00:53:20.000Z"


@dataclass(frozen=True)
class CleanupRow:
    gone: int
    batched_calls: int
    batched_ms: float
    single_calls: int
    single_ms: float

    @property
    def ratio(self) -> float:
        return self.single_calls / max(self.batched_calls, 1)


class _CallCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **_: Any) -> None:
        self.calls += 1


def measure(sizes: tuple[int, ...]) -> list[CleanupRow]:
    import boto3

    from local import resources

    rows: list[CleanupRow] = []
    with in_process_dynamodb(TABLE):
        counter = _CallCounter()
        for retried in (True, False):
            events = aws.client("dynamodb", retried=retried).meta.events
            for operation in ("BatchWriteItem", "DeleteItem"):
                events.register(f"before-call.dynamodb.{operation}", counter)
        # Loading through a client of its own leaves the counted ones alone.
        loader = boto3.client("dynamodb")
        resources.create_sessions_table(loader, TABLE)
        for size in sizes:
            timings: dict[bool, tuple[int, float]] = {}
            for ages_known in (True, False):
                ids = _load(loader, size)
                gone = dict.fromkeys(ids, CONNECTED_AT if ages_known else None)
                counter.calls = 0
                started = time.perf_counter()
                forgotten = sessions.forget_gone(gone)
                elapsed_ms = (time.perf_counter() - started) * 1000
                if len(forgotten.deleted) != size:
                    raise RuntimeError(f"deleted {len(forgotten.deleted)} of {size} gone rows")
                timings[ages_known] = (counter.calls, elapsed_ms)
            rows.append(CleanupRow(size, *timings[True], *timings[False]))
    return rows


def _load(dynamodb: Any, size: int) -> list[str]:
    items = [session_item(index, f"user-{index // 2}", CONNECTED_EPOCH) for index in range(size)]
    for item in items:
        item[contract.CONNECTED_AT] = {"S": CONNECTED_AT}
    for start in range(0, size, 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        write_items(dynamodb, batch, TABLE)
    return [item[contract.CONNECTION_ID]["S"] for item in items]
