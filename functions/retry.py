"""Retrying the publish path's AWS calls: bounded exponential backoff with full jitter.

One mechanism, here. The publish function's clients make a single attempt per call
(`aws.client(..., retried=False)`) and every call goes through `Backoff.call`, which retries
what a retry can fix — throttling (API Gateway's 429 `LimitExceededException`, DynamoDB's
`ProvisionedThroughputExceededException` / `ThrottlingException` / `RequestLimitExceeded`, …),
5xx answers and timeouts or dropped connections — and nothing else.

Why not botocore's standard retry mode: it cannot see the Lambda's deadline (it may sleep into
the function's timeout, where nothing gets recorded), its backoff cannot be bounded by the
invocation or observed in tests, and stacking it under a loop of our own would multiply the
attempts. Here the attempts, the delays and the deadline are explicit, and the sleep and
random functions are injected so tests never sleep.

Delay before retry n (1-based): uniform(0, min(cap, base * 2**(n-1))) ("full jitter"), and no
retry whose pause would leave less than `margin_ms` of the invocation.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from functions import aws

logger = logging.getLogger(__name__)

# Error codes that mean "slow down", whatever the HTTP status says.
THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",  # API Gateway management API (429)
        "TooManyRequestsException",
        "TooManyRequests",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",  # DynamoDB
        "RequestLimitExceeded",  # DynamoDB (account throughput)
        "SlowDown",
    }
)
# Server-side errors reported with a 4xx-looking code.
TRANSIENT_CODES = frozenset(
    {"InternalServerError", "InternalServerErrorException", "ServiceUnavailable"}
)


class CallFailed(Exception):
    """A failed call of ours that already knows whether a retry could fix it (a post to a
    connection, made without the SDK: `functions.management`)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def is_transient_answer(status: int, code: str) -> bool:
    """True when an AWS API's error answer (HTTP status, error code) says "try again later"."""
    return code in THROTTLING_CODES or code in TRANSIENT_CODES or status == 429 or status >= 500


def is_transient(error: BaseException) -> bool:
    """True when the same call may succeed if made again a little later."""
    if isinstance(error, CallFailed):
        return error.transient
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return is_transient_answer(status, code)
    # Timeouts, refused or dropped connections: no answer at all. A post whose answer was lost
    # may have been delivered; its retry is a duplicate with the same envelope id.
    return isinstance(error, HTTPClientError | BotoConnectionError)


class Backoff(NamedTuple):
    """How often and how long to retry one call; `call` applies it."""

    max_attempts: int = 6
    base_seconds: float = 0.1
    cap_seconds: float = 2.0
    # The invocation's remaining time (context.get_remaining_time_in_millis), if known.
    remaining_ms: Callable[[], int] | None = None
    # Left untouched for what follows the retries: recording the pending connections, the
    # dead-letter message, returning. Posts also have their own connect/read timeouts.
    margin_ms: int = 3000
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random

    def within(self, context: Any) -> Backoff:
        """This policy bounded by a Lambda context's remaining time (unbounded without one)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return self._replace(remaining_ms=remaining) if callable(remaining) else self

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry)."""
        return self.random() * min(self.cap_seconds, self.base_seconds * 2 ** (retry - 1))

    def call(self, operation: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`operation(*args, **kwargs)`, retried while its error is transient and time allows;
        the last error is raised as is."""
        for attempt in itertools.count(1):
            try:
                return operation(*args, **kwargs)
            except Exception as error:
                if not is_transient(error) or attempt >= self.max_attempts:
                    raise
                pause = self.delay(attempt)
                if not self._leaves_margin(pause):
                    raise
                logger.warning(
                    "transient error, retrying in %.3fs (attempt %d/%d): %s",
                    pause,
                    attempt + 1,
                    self.max_attempts,
                    error,
                )
                self.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _leaves_margin(self, pause: float) -> bool:
        if self.remaining_ms is None:
            return True
        return self.remaining_ms() - pause * 1000 >= self.margin_ms


def aws_call(service: str, operation: str, backoff: Backoff | None, **request: Any) -> Any:
    """One AWS API call: retried by `backoff` on a single-attempt client, or, without one,
    by botocore's standard mode (the handlers other than publish)."""
    if backoff is None:
        return getattr(aws.client(service), operation)(**request)
    return backoff.call(getattr(aws.client(service, retried=False), operation), **request)
