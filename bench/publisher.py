"""The publish Lambda in a process of its own: `python -m bench.publisher` (a benchmark worker).

On AWS the publish function runs apart from API Gateway; in the local stack both share one
process (and one GIL) with the emulator. This worker runs `functions.publish.handler`
unchanged, in its own process, against the stack's emulator and gateway (the stack's own
environment variables, given by the benchmark), so its fan-out time is the handler's, not the
stack's. It reads one JSON request per line on stdin and answers one JSON line on stdout:

- `{"op": "publish", "user": U, "id": ID}`: invoke the handler with an SNS event naming U whose
  MessageId is ID; answers the handler's wall time, the part spent finding connections and
  the process CPU time it used.
- `{"op": "remember", "user": U}`: look up U's connections once, for the posters below.
- `{"op": "sequential", "user": U, "limit": N}`: what a sequential poster does:
  `management.post` to at most N of U's connections one after the other.
- `{"op": "minimal", "user": U, "concurrency": C}`: the same posts with no SDK at all (below).
- `{"op": "post_cpu", "user": U, "posts": N, "rounds": R}`: CPU per post of `management.post`
  and of boto3's `post_to_connection`, side by side (below).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import boto3
from botocore.config import Config

from functions import contract, environment, management, publish, sessions
from local.events import sns_event
from local.lambda_context import lambda_context

_lookup_seconds = 0.0
_original_connections = publish._connections


def _timed_connections(*args: Any, **kwargs: Any) -> Any:
    global _lookup_seconds
    started = time.perf_counter()
    try:
        return _original_connections(*args, **kwargs)
    finally:
        _lookup_seconds = time.perf_counter() - started


publish._connections = _timed_connections  # type: ignore[assignment]


def _event(user: str, message_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    notification = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:bench",
        "Message": json.dumps({"bench": message_id}),
        "Timestamp": now,
        "MessageAttributes": {contract.TARGET_USER_ATTRIBUTE: {"Type": "String", "Value": user}},
    }
    return sns_event("arn:aws:sns:us-east-1:123456789012:bench:sub", notification)


def _publish(request: dict[str, Any]) -> dict[str, Any]:
    context = lambda_context(
        "bench-publish",
        region="us-east-1",
        account="123456789012",
        memory_mb=256,
        timeout_seconds=900,
    )
    cpu = time.process_time()
    started = time.perf_counter()
    summary = publish.handler(_event(request["user"], request["id"]), context)
    total = time.perf_counter() - started
    return {
        "seconds": total,
        "lookup_seconds": _lookup_seconds,
        "cpu_seconds": time.process_time() - cpu,
        "summary": summary,
    }


_known: dict[str, list[str]] = {}


def _connection_ids(user: str) -> list[str]:
    """A user's connections, looked up once: the posters compared here are timed without
    the lookup, and the emulator's CPU while they run is theirs alone."""
    if user not in _known:
        _known[user] = list(sessions.connections_of(user))
    return _known[user]


def _remember(request: dict[str, Any]) -> dict[str, Any]:
    return {"connections": len(_connection_ids(request["user"]))}


def _sequential(request: dict[str, Any]) -> dict[str, Any]:
    ids = _connection_ids(request["user"])
    chosen = ids[: request["limit"]]
    body = json.dumps({"id": "sequential"}).encode()
    started = time.perf_counter()
    for connection_id in chosen:
        management.post(connection_id, body)
    return {"seconds": time.perf_counter() - started, "posts": len(chosen), "found": len(ids)}


def _minimal(request: dict[str, Any]) -> dict[str, Any]:
    """The least a poster can do here: the same posts, C at a time, from one asyncio loop with
    aiohttp and no SDK (unsigned; the local gateway only checks the scheme's name). What the
    gateway and this machine allow, measured beside the handler."""
    ids = _connection_ids(request["user"])
    endpoint = environment.required(contract.ENV_MANAGEMENT_ENDPOINT)
    headers = {"Authorization": "AWS4-HMAC-SHA256 bench-minimal-poster"}
    body = json.dumps({"id": "minimal"}).encode()

    async def post_all() -> float:
        gate = asyncio.Semaphore(request["concurrency"])
        connector = aiohttp.TCPConnector(limit=request["concurrency"])
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post(connection_id: str) -> None:
                async with gate:
                    url = f"{endpoint}/@connections/{quote(connection_id, safe='')}"
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()

            started = time.perf_counter()
            await asyncio.gather(*(post(connection_id) for connection_id in ids))
            return time.perf_counter() - started

    cpu = time.process_time()
    seconds = asyncio.run(post_all())
    return {"seconds": seconds, "posts": len(ids), "cpu_seconds": time.process_time() - cpu}


def _post_cpu(request: dict[str, Any]) -> dict[str, Any]:
    """Process CPU time per post, one post after another to the same N connections, rounds
    alternating: ours (`management.post`: botocore's signer, a urllib3 connection) against
    boto3's `post_to_connection` on a single-attempt client (what publish used before)."""
    ids = _connection_ids(request["user"])[: request["posts"]]
    sdk = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=environment.required(contract.ENV_MANAGEMENT_ENDPOINT),
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    body = json.dumps({"id": "post-cpu"}).encode()
    posters: dict[str, Any] = {
        "ours": lambda cid: management.post(cid, body),
        "sdk": lambda cid: sdk.post_to_connection(ConnectionId=cid, Data=body),
    }
    for post in posters.values():  # connections and clients made before timing
        post(ids[0])
    per_post: dict[str, list[float]] = {name: [] for name in posters}
    for _ in range(request["rounds"]):
        for name, post in posters.items():
            cpu = time.process_time()
            for connection_id in ids:
                post(connection_id)
            per_post[name].append((time.process_time() - cpu) / len(ids))
    return {name: statistics.median(values) for name, values in per_post.items()} | {
        "posts": len(ids)
    }


OPERATIONS = {
    "remember": _remember,
    "publish": _publish,
    "sequential": _sequential,
    "minimal": _minimal,
    "post_cpu": _post_cpu,
}


def main() -> int:
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(OPERATIONS[request["op"]](request)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
