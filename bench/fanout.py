"""2. Fan-out time: one publish reaching K connections when every management call takes L.

The local stack's gateway holds the latency (`management_latency_ms`, changed while it runs
through `/local/faults`); user `fan-K` has K real WebSocket connections held by the benchmark's
client pool. One sample: an SNS publish naming `fan-K`, timed from just before the publish
until the K-th client has the frame (the SNS → publish Lambda path included). Against:
- a sequential poster: `post_to_connection` to the same K connections one after the other,
  from the benchmark process (measured over at most `SEQUENTIAL_SAMPLE` posts, scaled by K
  beyond that: a sequential loop is linear by construction);
- the ideal bound ⌈K/C⌉·L for the configured concurrency C (PUBLISH_CONCURRENCY);
- a minimal poster (aiohttp, no SDK, C at a time) posting to the same connections: what the
  gateway and this machine allow, side by side.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.profile import Profile, Recorder
from bench.stack import Clients, LocalStack
from functions import contract
from local.process import ROOT

SEQUENTIAL_SAMPLE = 200


@dataclass(frozen=True)
class FanoutRow:
    connections: int
    latency_ms: int
    concurrency: int
    samples: int
    # Through the local stack: SNS publish until the K-th client has the frame (median).
    stack_seconds: float
    # The publish handler in a process of its own: its wall time, and the part of it spent
    # finding the connections (the emulator's GSI query), medians.
    handler_seconds: float
    lookup_seconds: float
    delivered: int  # copies the clients received in the last handler sample
    sequential_seconds: float  # a sequential poster, scaled to K posts
    sequential_measured_posts: int
    cpu_seconds: float  # handler process CPU time (median)
    # The same posts from a minimal asyncio poster (aiohttp, no SDK) in the same process, C at
    # a time: what the gateway and this machine allow (median).
    minimal_seconds: float
    # CPU per post while the minimal poster ran: the gateway's (the stack process: request,
    # frame, answer) and the minimal poster's own, in ms; None when the posts took too little
    # CPU for the kernel's 10 ms accounting ticks to tell.
    gateway_cpu_ms: float | None
    minimal_cpu_ms: float | None

    @property
    def ideal_seconds(self) -> float:
        return math.ceil(self.connections / self.concurrency) * self.latency_ms / 1000

    @property
    def posting_seconds(self) -> float:
        return self.handler_seconds - self.lookup_seconds

    def over_ideal(self, seconds: float) -> float:
        return seconds / self.ideal_seconds

    @property
    def lockstep_seconds(self) -> float:
        """The fan-out time when the C posts of a round reach the gateway together and it
        serves them one after another: ⌈K/C⌉·(L + C·g), g the gateway's CPU per post. What
        even a poster that cost nothing would take here."""
        rounds = math.ceil(self.connections / self.concurrency)
        per_round_ms = self.latency_ms + self.concurrency * (self.gateway_cpu_ms or 0.0)
        return rounds * per_round_ms / 1000

    @property
    def speedup(self) -> float:
        """Sequential poster time over the handler's posting time."""
        return self.sequential_seconds / self.posting_seconds


class PublishWorker:
    """`python -m bench.publisher` with the stack's handler environment."""

    def __init__(self, stack: LocalStack, concurrency: int) -> None:
        outputs = stack.outputs
        environment = {
            **os.environ,
            "AWS_ENDPOINT_URL": outputs["awsEndpointUrl"],
            "AWS_DEFAULT_REGION": outputs["region"],
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            contract.ENV_SESSIONS_TABLE: outputs["sessionsTable"],
            contract.ENV_MANAGEMENT_ENDPOINT: outputs["managementEndpoint"],
            contract.ENV_PUBLISH_CONCURRENCY: str(concurrency),
            contract.ENV_BROADCAST_ENABLED: "true",
            contract.ENV_PENDING_DELIVERIES_TABLE: outputs["pendingDeliveriesTable"],
            contract.ENV_DEAD_LETTER_QUEUE_URL: outputs["deadLetterQueueUrl"],
            "PYTHONUNBUFFERED": "1",
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.publisher"],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the publish worker exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def fan_user(k: int) -> str:
    return f"fan-{k}"


def open_fans(stack: LocalStack, clients: Clients, sizes: tuple[int, ...]) -> float:
    """Open K connections for user fan-K, for every K; returns seconds taken."""
    urls = []
    for k in sizes:
        url = stack.url(stack.token(fan_user(k)))
        urls += [url] * k
    return clients.open(urls)


def publish_to(stack: LocalStack, sns: object, user: str, message: str) -> str:
    response = sns.publish(  # type: ignore[attr-defined]
        TopicArn=stack.outputs["topicArn"],
        Message=message,
        MessageAttributes={
            contract.TARGET_USER_ATTRIBUTE: {"DataType": "String", "StringValue": user}
        },
    )
    return str(response["MessageId"])


def measure(
    stack: LocalStack,
    clients: Clients,
    sizes: tuple[int, ...],
    *,
    latency_ms: int,
    concurrency: int,
    samples: int,
    profiles: dict[str, Profile] | None = None,
) -> list[FanoutRow]:
    """One row per K; with `profiles`, py-spy samples the handler samples of the largest K
    (the handler's process and the stack's) into it."""
    sns = stack.client("sns")
    worker = PublishWorker(stack, concurrency)
    rows = []
    try:
        worker.ask(op="publish", user=fan_user(sizes[0]), id="warm-up")  # clients, imports
        stack.faults(management_latency_ms=latency_ms)
        for k in sizes:
            user = fan_user(k)
            count = samples if k <= 1000 else max(1, samples // 2)
            through_stack, handler, lookup, cpu = [], [], [], []
            delivered = 0
            recorders = []
            if profiles is not None and k == max(sizes):
                recorders = [Recorder(worker.pid), Recorder(stack.process.pid)]
                time.sleep(1)  # py-spy attaches
                for recorder in recorders:
                    recorder.pause()
            for sample in range(count):
                started = time.perf_counter()
                message_id = publish_to(stack, sns, user, f'{{"fanout": {k}, "n": {sample}}}')
                arrivals = clients.wait_for(message_id, k, timeout=300)
                through_stack.append((max(arrivals) if arrivals else started) - started)

                for recorder in recorders:
                    recorder.resume()
                frame_id = f"handler-{k}-{sample}"
                answer = worker.ask(op="publish", user=user, id=frame_id)
                delivered = len(clients.wait_for(frame_id, k, timeout=60))
                handler.append(answer["seconds"])
                lookup.append(answer["lookup_seconds"])
                cpu.append(answer["cpu_seconds"])
                for recorder in recorders:
                    recorder.pause()
            if recorders and profiles is not None:
                handler_profile, stack_profile = (recorder.stop() for recorder in recorders)
                profiles[f"fan-out to {k:,}: publish handler process"] = handler_profile
                profiles[f"fan-out to {k:,}: stack process (gateway, emulator)"] = stack_profile
            worker.ask(op="remember", user=user)
            stack_cpu = stack.cpu_seconds()
            minimal_answers = [
                worker.ask(op="minimal", user=user, concurrency=concurrency) for _ in range(count)
            ]
            minimal_posts = max(1, sum(answer["posts"] for answer in minimal_answers))
            gateway_cpu = stack.cpu_seconds() - stack_cpu
            minimal_cpu = sum(answer["cpu_seconds"] for answer in minimal_answers)
            gateway_cpu_ms = gateway_cpu * 1000 / minimal_posts if gateway_cpu >= 0.2 else None
            minimal_cpu_ms = minimal_cpu * 1000 / minimal_posts if minimal_cpu >= 0.2 else None
            minimal = [answer["seconds"] for answer in minimal_answers]
            sequential = worker.ask(op="sequential", user=user, limit=SEQUENTIAL_SAMPLE)
            per_post = sequential["seconds"] / max(sequential["posts"], 1)
            rows.append(
                FanoutRow(
                    connections=k,
                    latency_ms=latency_ms,
                    concurrency=concurrency,
                    samples=count,
                    stack_seconds=statistics.median(through_stack),
                    handler_seconds=statistics.median(handler),
                    lookup_seconds=statistics.median(lookup),
                    delivered=delivered,
                    sequential_seconds=per_post * k,
                    sequential_measured_posts=sequential["posts"],
                    cpu_seconds=statistics.median(cpu),
                    minimal_seconds=statistics.median(minimal),
                    gateway_cpu_ms=gateway_cpu_ms,
                    minimal_cpu_ms=minimal_cpu_ms,
                )
            )
    finally:
        stack.faults(management_latency_ms=0)
        worker.close()
    return rows


@dataclass(frozen=True)
class PostCost:
    """CPU per post in the handler's process, ours against the SDK's, side by side."""

    posts: int
    rounds: int
    ours_ms: float
    sdk_ms: float


def post_cost(stack: LocalStack, user: str, posts: int, rounds: int) -> PostCost:
    """Measured with no injected latency (CPU time does not depend on it)."""
    worker = PublishWorker(stack, concurrency=1)
    try:
        answer = worker.ask(op="post_cpu", user=user, posts=posts, rounds=rounds)
    finally:
        worker.close()
    return PostCost(answer["posts"], rounds, answer["ours"] * 1000, answer["sdk"] * 1000)
