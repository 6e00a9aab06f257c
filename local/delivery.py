"""SNS -> publish Lambda: what the topic's Lambda subscription does on AWS.

The emulator's topic delivers (after the subscription's filter policy) to an SQS queue; this
module long-polls that queue and invokes `functions.publish.handler` with the SNS-shaped event
Lambda would receive. Like Lambda's asynchronous invocation, a failed invocation is retried
(the message becomes visible again after the queue's visibility timeout) and, after the last
attempt, lands in the dead-letter queue (the queue's redrive policy).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from functions import contract
from local.events import sns_event
from local.lambdas import Invoker
from local.resources import DELIVERY_MAX_RECEIVES, DELIVERY_RETRY_SECONDS

log = logging.getLogger("local.delivery")

# Long-poll wait. moto wakes a waiting receive as soon as a message arrives, so this bounds
# only how long shutdown waits for the poll in flight, not delivery latency.
POLL_WAIT_SECONDS = 1
# Concurrent publish invocations: one slow fan-out must not hold back the next notification.
WORKERS = 4


class Delivery:
    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        subscription_arn: str,
        lambdas: Invoker,
        workers: int = WORKERS,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._subscription_arn = subscription_arn
        self._lambdas = lambdas
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="publish")
        # Never receive more than the pool can start, so a message's visibility timeout does
        # not run out while it waits for a worker.
        self._slots = threading.Semaphore(workers)
        self._thread = threading.Thread(target=self._poll, name="delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=POLL_WAIT_SECONDS + 5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._slots.acquire()
            try:
                response = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=POLL_WAIT_SECONDS,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except Exception:
                self._slots.release()
                if self._stop.is_set():
                    return
                log.exception("receiving from the delivery queue failed; retrying")
                self._stop.wait(1)
                continue
            messages = response.get("Messages", [])
            if not messages:
                self._slots.release()
                continue
            try:
                self._pool.submit(self._deliver, messages[0])
            except RuntimeError:  # pool shut down while stopping
                self._slots.release()
                return

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            notification = json.loads(message["Body"])
            attempt = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
            message_id = notification.get("MessageId")
            targets = _describe_targets(notification.get("MessageAttributes") or {})
            try:
                result = self._lambdas.invoke(
                    contract.PUBLISH, sns_event(self._subscription_arn, notification)
                )
            except Exception:
                # Not deleted: the message becomes visible again after the queue's visibility
                # timeout (a retry), and the redrive policy moves it to the DLQ after the last.
                then = (
                    "it goes to the dead-letter queue"
                    if int(attempt) >= DELIVERY_MAX_RECEIVES
                    else f"retried in {DELIVERY_RETRY_SECONDS}s"
                )
                log.exception(
                    "publish message=%s %s attempt %s/%s failed; %s",
                    message_id,
                    targets,
                    attempt,
                    DELIVERY_MAX_RECEIVES,
                    then,
                )
                return
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            log.info("publish message=%s %s ok %s", message_id, targets, _summary(result))
        except Exception:
            log.exception("delivering an SNS message failed")
        finally:
            self._slots.release()


def _describe_targets(attributes: dict[str, Any]) -> str:
    parts = []
    for name in (contract.TARGET_USER_ATTRIBUTE, contract.BROADCAST_ATTRIBUTE):
        if name in attributes:
            parts.append(f"{name}={attributes[name].get('Value')}")
    return " ".join(parts) or "no target"


def _summary(result: Any) -> str:
    if result is None:
        return ""
    text = json.dumps(result, default=str, separators=(",", ":"))
    return text if len(text) <= 200 else text[:197] + "..."


def sqs_client_for_polling() -> Any:
    """An SQS client whose read timeout outlasts the long poll."""
    return boto3.client("sqs", config=Config(read_timeout=POLL_WAIT_SECONDS + 10))
