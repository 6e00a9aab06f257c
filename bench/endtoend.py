"""3. End to end on the local stack: latency, sustained deliveries, memory per connection.

N clients (users `e2e-0` … `e2e-{N-1}`, one connection each) stay connected. Then, one sample
at a time and side by side:
- the emulator's floor, the three steps a single-user delivery cannot avoid: an SNS publish
  reaching the delivery side (a probe SQS queue subscribed to the topic, already long-polling,
  receives it), one GSI query for one user, one management POST until the client has the
  frame;
- our latency: an SNS publish naming one user until that user's client has the frame.
Then sustained deliveries: many messages published at once (`publish_batch`, 10 per call,
from a few threads) to random users, first naming one user each, then ten; deliveries/s is
frames received over the time from the first publish to the last frame. Memory per held
connection is the growth of the stack process's resident memory over the connections opened.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.stack import Clients, LocalStack
from functions import contract

PROBE_ATTRIBUTE = "benchProbe"


def e2e_user(index: int) -> str:
    return f"e2e-{index}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Burst:
    users_per_message: int  # 0: every message names one user who has many connections
    messages: int
    expected: int  # frames the clients should receive
    delivered: int
    seconds: float  # first publish until the last frame
    stack_cpu_seconds: float  # CPU the stack process used meanwhile

    @property
    def cpu_ms_per_delivery(self) -> float:
        return self.stack_cpu_seconds * 1000 / max(self.delivered, 1)

    @property
    def deliveries_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


@dataclass
class EndToEnd:
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    sns_to_sqs_ms: list[float] = field(default_factory=list)
    gsi_query_ms: list[float] = field(default_factory=list)
    management_post_ms: list[float] = field(default_factory=list)
    lost: int = 0
    bursts: list[Burst] = field(default_factory=list)

    @property
    def floor_ms(self) -> float:
        return (
            statistics.median(self.sns_to_sqs_ms)
            + statistics.median(self.gsi_query_ms)
            + statistics.median(self.management_post_ms)
        )

    def p(self, share: float) -> float:
        return percentile(self.latencies_ms, share)


@dataclass(frozen=True)
class Memory:
    connections: int
    failed: int
    open_seconds: float
    rss_before: int
    rss_after: int

    @property
    def per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / max(self.connections, 1)


def open_users(stack: LocalStack, clients: Clients, start: int, stop: int) -> float:
    urls = [stack.url(stack.token(e2e_user(index))) for index in range(start, stop)]
    return clients.open(urls)


class _Probe:
    """A queue subscribed to the topic for probe messages only, and a long-polling receiver."""

    def __init__(self, stack: LocalStack) -> None:
        self._sqs = stack.client("sqs")
        sns = stack.client("sns")
        self.url = self._sqs.create_queue(QueueName="bench-floor-probe")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(
            TopicArn=stack.outputs["topicArn"],
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"FilterPolicy": json.dumps({PROBE_ATTRIBUTE: [{"exists": True}]})},
        )

    def receive(self) -> float:
        """Long-poll until a message arrives; returns its arrival time (perf_counter)."""
        while True:
            response = self._sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=1, WaitTimeSeconds=5
            )
            messages = response.get("Messages", [])
            if messages:
                arrived = time.perf_counter()
                self._sqs.delete_message(
                    QueueUrl=self.url, ReceiptHandle=messages[0]["ReceiptHandle"]
                )
                return arrived


def measure(stack: LocalStack, clients: Clients, users: int, samples: int, burst: int) -> EndToEnd:
    result = EndToEnd(clients=users)
    sns = stack.client("sns")
    dynamodb = stack.client("dynamodb")
    management = stack.management()
    probe = _Probe(stack)
    topic = stack.outputs["topicArn"]
    table = stack.outputs["sessionsTable"]
    chooser = random.Random(5)
    connection_of = {}
    for index in chooser.sample(range(users), min(users, 20)):
        connection_of[index] = stack.connection_ids(e2e_user(index))[0]
    with ThreadPoolExecutor(max_workers=1) as receiver:
        for sample in range(samples):
            # The floor: SNS publish → the delivery side (SQS) has it.
            waiting = receiver.submit(probe.receive)
            time.sleep(0.02)  # the receive is long-polling, as the delivery's poller is
            started = time.perf_counter()
            sns.publish(
                TopicArn=topic,
                Message="probe",
                MessageAttributes={PROBE_ATTRIBUTE: {"DataType": "String", "StringValue": "1"}},
            )
            result.sns_to_sqs_ms.append((waiting.result(30) - started) * 1000)

            # One GSI query for one user.
            index = chooser.choice(list(connection_of))
            started = time.perf_counter()
            dynamodb.query(
                TableName=table,
                IndexName=contract.USER_INDEX,
                KeyConditionExpression="#u = :u",
                ExpressionAttributeNames={"#u": contract.USER_ID},
                ExpressionAttributeValues={":u": {"S": e2e_user(index)}},
            )
            result.gsi_query_ms.append((time.perf_counter() - started) * 1000)

            # One management POST until the client has the frame.
            frame_id = f"floor-{sample}"
            started = time.perf_counter()
            management.post_to_connection(
                ConnectionId=connection_of[index], Data=json.dumps({"id": frame_id}).encode()
            )
            arrivals = clients.wait_for(frame_id, 1, timeout=10)
            if arrivals:
                result.management_post_ms.append((arrivals[0] - started) * 1000)

            # Ours: SNS publish naming one user → that user's client has the frame.
            user = e2e_user(chooser.randrange(users))
            started = time.perf_counter()
            message_id = sns.publish(
                TopicArn=topic,
                Message=json.dumps({"sample": sample}),
                MessageAttributes={
                    contract.TARGET_USER_ATTRIBUTE: {"DataType": "String", "StringValue": user}
                },
            )["MessageId"]
            arrivals = clients.wait_for(message_id, 1, timeout=30)
            if arrivals:
                result.latencies_ms.append((arrivals[0] - started) * 1000)
            else:
                result.lost += 1
    for users_per_message in (1, 10):
        result.bursts.append(burst_of(stack, clients, users, burst, users_per_message))
    return result


def _target(users: list[str]) -> dict[str, Any]:
    if len(users) == 1:
        return {"DataType": "String", "StringValue": users[0]}
    return {"DataType": "String.Array", "StringValue": json.dumps(users)}


def burst_of(
    stack: LocalStack, clients: Clients, users: int, deliveries: int, users_per_message: int
) -> Burst:
    """Messages for about `deliveries` frames, each naming `users_per_message` users, all
    published at once; times the first publish until the last frame arrives."""
    topic = stack.outputs["topicArn"]
    chooser = random.Random(7 + users_per_message)
    messages = max(1, deliveries // users_per_message)
    batches = []
    for start in range(0, messages, 10):
        batches.append(
            [
                {
                    "Id": str(n),
                    "Message": json.dumps({"burst": start + n}),
                    "MessageAttributes": {
                        contract.TARGET_USER_ATTRIBUTE: _target(
                            [e2e_user(u) for u in chooser.sample(range(users), users_per_message)]
                        )
                    },
                }
                for n in range(min(10, messages - start))
            ]
        )
    local = threading.local()
    ids: list[str] = []
    lock = threading.Lock()

    def send(batch: list[dict[str, Any]]) -> None:
        if not hasattr(local, "sns"):
            local.sns = stack.client("sns")
        response = local.sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=batch)
        with lock:
            ids.extend(entry["MessageId"] for entry in response.get("Successful", []))

    senders = 4
    clients_ready = [stack.client("sns") for _ in range(senders)]  # built before the clock
    del clients_ready
    before = clients.frames
    cpu = stack.cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        list(pool.map(send, batches))
    expected = len(ids) * users_per_message
    clients.wait_frames(before + expected, timeout=max(60.0, expected / 10))
    stack_cpu = stack.cpu_seconds() - cpu
    last = 0.0
    delivered = 0
    for message_id in ids:
        arrivals = clients.arrivals.get(message_id, [])
        delivered += len(arrivals)
        last = max([last, *arrivals])
    return Burst(
        users_per_message=users_per_message,
        messages=len(ids),
        expected=expected,
        delivered=delivered,
        seconds=(last - started) if delivered else 0.0,
        stack_cpu_seconds=stack_cpu,
    )


def burst_to_many(
    stack: LocalStack, clients: Clients, user: str, connections: int, messages: int
) -> Burst:
    """`messages` messages for one user with `connections` connections, published at once:
    deliveries/s when each message fans out."""
    sns = stack.client("sns")
    topic = stack.outputs["topicArn"]
    entries = [
        {
            "Id": str(n),
            "Message": json.dumps({"many": n}),
            "MessageAttributes": {contract.TARGET_USER_ATTRIBUTE: _target([user])},
        }
        for n in range(messages)
    ]
    before = clients.frames
    cpu = stack.cpu_seconds()
    started = time.perf_counter()
    response = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
    ids = [entry["MessageId"] for entry in response.get("Successful", [])]
    expected = len(ids) * connections
    clients.wait_frames(before + expected, timeout=max(60.0, expected / 20))
    stack_cpu = stack.cpu_seconds() - cpu
    arrivals = [t for message_id in ids for t in clients.arrivals.get(message_id, [])]
    return Burst(
        users_per_message=0,
        messages=len(ids),
        expected=expected,
        delivered=len(arrivals),
        seconds=(max(arrivals) - started) if arrivals else 0.0,
        stack_cpu_seconds=stack_cpu,
    )
