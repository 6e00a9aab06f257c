"""SNS -> publish Lambda: what the topic's Lambda subscription and Lambda's asynchronous
invocation do on AWS.

The emulator's topic delivers (after the subscription's filter policy) to an SQS queue standing
in for the subscription; this module long-polls that queue and invokes
`functions.publish.handler` with the SNS-shaped event Lambda would receive.

SNS invokes Lambda asynchronously, so a handler that raises is retried like any asynchronous
invocation: twice more, after a delay (AWS waits about one minute, then about two; locally the
delays are `RetryPolicy.delays_seconds`, a few seconds by default, `--lambda-retry-delays`).
After the last attempt Lambda sends an invocation record to the function's on-failure
destination, the dead-letter queue: `{"version": "1.0", "timestamp", "requestContext":
{"requestId", "functionArn", "condition": "RetriesExhausted", "approximateInvokeCount"},
"requestPayload": <the event>, "responseContext": {...}, "responsePayload": <the error>}`.
Every attempt of one event carries the same request id, as on AWS.

A retry waits in the subscription queue itself (its visibility timeout is set to the delay),
so the attempt count is the message's receive count.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
from botocore.config import Config

from functions import contract
from local.events import sns_event

log = logging.getLogger("local.delivery")

# Long-poll wait. moto wakes a waiting receive as soon as a message arrives, so this bounds
# only how long shutdown waits for the poll in flight, not delivery latency.
POLL_WAIT_SECONDS = 1
# Concurrent publish invocations: one slow fan-out must not hold back the next notification.
WORKERS = 32
# SQS hands out at most ten messages per receive.
RECEIVE_BATCH = 10
# Lambda's own retry delays for a failed asynchronous invocation (about 1 and 2 minutes).
AWS_RETRY_DELAYS_SECONDS = (60, 120)
# Locally: short enough to watch, long enough to be a real pause between attempts.
LOCAL_RETRY_DELAYS_SECONDS = (1, 2)


@dataclass(frozen=True)
class RetryPolicy:
    """Delays before each retry of a failed invocation; Lambda makes at most two retries."""

    delays_seconds: tuple[int, ...] = LOCAL_RETRY_DELAYS_SECONDS

    def __post_init__(self) -> None:
        if len(self.delays_seconds) > 2 or any(delay < 0 for delay in self.delays_seconds):
            raise ValueError("Lambda retries an asynchronous invocation at most twice")

    @property
    def max_attempts(self) -> int:
        return len(self.delays_seconds) + 1

    @classmethod
    def parse(cls, text: str) -> RetryPolicy:
        """From `--lambda-retry-delays`: e.g. "1,2", "60,120" (AWS), "0" or "" (no retry)."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        return cls(tuple(int(part) for part in parts))


class PublishInvoker(Protocol):
    def invoke(
        self, handler: str, event: dict[str, Any], *, request_id: str | None = None
    ) -> Any: ...


class Delivery:
    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        subscription_arn: str,
        dead_letter_queue_url: str,
        function_arn: str,
        lambdas: PublishInvoker,
        retries: RetryPolicy | None = None,
        workers: int = WORKERS,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._subscription_arn = subscription_arn
        self._dead_letter_queue_url = dead_letter_queue_url
        self._function_arn = function_arn
        self._lambdas = lambdas
        self.retries = retries or RetryPolicy()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="publish")
        # Never receive more than the pool can start: a received message is invisible to
        # other receives, and waiting for a worker would delay it for no reason.
        self._free = workers
        self._free_changed = threading.Condition()
        self._thread = threading.Thread(target=self._poll, name="delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._free_changed:
            self._free_changed.notify_all()
        self._thread.join(timeout=POLL_WAIT_SECONDS + 5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- polling ----------------------------------------------------------------------------

    def _take_slots(self) -> int:
        with self._free_changed:
            self._free_changed.wait_for(lambda: self._free > 0 or self._stop.is_set())
            taken = min(self._free, RECEIVE_BATCH)
            self._free -= taken
            return taken

    def _give_slots(self, count: int) -> None:
        if count:
            with self._free_changed:
                self._free += count
                self._free_changed.notify_all()

    def _poll(self) -> None:
        while not self._stop.is_set():
            slots = self._take_slots()
            if self._stop.is_set():
                return
            try:
                response = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=slots,
                    WaitTimeSeconds=POLL_WAIT_SECONDS,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except Exception:
                self._give_slots(slots)
                if self._stop.is_set():
                    return
                log.exception("receiving from the subscription queue failed; retrying")
                self._stop.wait(1)
                continue
            messages = response.get("Messages", [])
            self._give_slots(slots - len(messages))
            for index, message in enumerate(messages):
                try:
                    self._pool.submit(self._attempt, message)
                except RuntimeError:  # pool shut down while stopping
                    self._give_slots(len(messages) - index)
                    return

    # --- one attempt ------------------------------------------------------------------------

    def _attempt(self, message: dict[str, Any]) -> None:
        try:
            self._invoke(message)
        except Exception:
            log.exception("delivering an SNS message failed")
        finally:
            self._give_slots(1)

    def _invoke(self, message: dict[str, Any]) -> None:
        notification = json.loads(message["Body"])
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        message_id = notification.get("MessageId")
        targets = _describe_targets(notification.get("MessageAttributes") or {})
        # One asynchronous invocation, one request id across its retries (as on AWS).
        request_id = message["MessageId"]
        event = sns_event(self._subscription_arn, notification)
        of = f"attempt {attempt}/{self.retries.max_attempts}"
        try:
            result = self._lambdas.invoke(contract.PUBLISH, event, request_id=request_id)
        except Exception as error:
            if attempt < self.retries.max_attempts:
                delay = self.retries.delays_seconds[attempt - 1]
                log.warning(
                    "publish message=%s %s %s failed: %s: %s; retried in %ss",
                    message_id,
                    targets,
                    of,
                    type(error).__name__,
                    error,
                    delay,
                )
                # Visible again after the delay: the next receive is the retry.
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=delay,
                )
                return
            record = on_failure_record(
                request_id=request_id,
                function_arn=self._function_arn,
                attempts=attempt,
                event=event,
                error=error,
            )
            # Sent before the delete: a crash in between duplicates the record, never loses it.
            self._sqs.send_message(
                QueueUrl=self._dead_letter_queue_url, MessageBody=json.dumps(record)
            )
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            log.error(
                "publish message=%s %s %s failed: %s: %s; retries exhausted, "
                "on-failure record sent to the dead-letter queue",
                message_id,
                targets,
                of,
                type(error).__name__,
                error,
            )
            return
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        log.info("publish message=%s %s %s ok %s", message_id, targets, of, _summary(result))


def on_failure_record(
    *,
    request_id: str,
    function_arn: str,
    attempts: int,
    event: dict[str, Any],
    error: BaseException,
) -> dict[str, Any]:
    """The invocation record Lambda sends to an on-failure destination after the retries."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "version": "1.0",
        "timestamp": now,
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        # What the Python runtime reports for an exception that escapes the handler.
        "responsePayload": {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(error.__traceback__),
        },
    }


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


def sqs_client_for_polling(workers: int = WORKERS) -> Any:
    """An SQS client whose read timeout outlasts the long poll, with a connection for the
    poller and each worker (a smaller pool opens and throws away one per call beyond it)."""
    return boto3.client(
        "sqs",
        config=Config(read_timeout=POLL_WAIT_SECONDS + 10, max_pool_connections=workers + 1),
    )
