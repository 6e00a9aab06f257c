"""The Lambda functions of `functions/`, invoked in-process as Lambda would invoke them.

The modules are imported on first use, after the local stack has set the environment they read
(endpoint, table, ...), and are called unchanged: `handler(event, context)`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from functions import contract
from local.lambda_context import lambda_context

log = logging.getLogger("local.lambda")

# API Gateway gives up on an integration after 29 s; the WebSocket handlers live within that.
GATEWAY_INTEGRATION_TIMEOUT_SECONDS = 29


class Invoker(Protocol):
    """What the gateway and the delivery need: run a handler of `contract.HANDLERS`."""

    def invoke(self, handler: str, event: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Lambdas:
    project: str
    stack: str
    region: str
    account: str
    memory_mb: int
    publish_timeout_seconds: int

    def function_name(self, handler: str) -> str:
        return f"{self.project}-{self.stack}-{handler}"

    def _resolve(self, handler: str) -> Callable[[dict[str, Any], Any], Any]:
        module_name, _, attribute = contract.handler_path(handler).rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)

    def function_arn(self, handler: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name(handler)}"

    def invoke(self, handler: str, event: dict[str, Any], *, request_id: str | None = None) -> Any:
        """Run one handler synchronously (callers put it on a thread); exceptions propagate.

        `request_id` is the context's aws_request_id (an asynchronous invocation keeps one
        across its retries); a fresh one by default.
        """
        timeout = (
            self.publish_timeout_seconds
            if handler == contract.PUBLISH
            else GATEWAY_INTEGRATION_TIMEOUT_SECONDS
        )
        context = lambda_context(
            self.function_name(handler),
            region=self.region,
            account=self.account,
            memory_mb=self.memory_mb,
            timeout_seconds=timeout,
            request_id=request_id,
        )
        function = self._resolve(handler)
        started = time.monotonic()
        try:
            return function(event, context)
        finally:
            elapsed_ms = (time.monotonic() - started) * 1000
            log.debug("%s request=%s %.0f ms", handler, context.aws_request_id, elapsed_ms)

    def preload(self) -> list[str]:
        """Import every handler now, so a broken module fails `up` instead of a first request."""
        missing = []
        for handler in contract.HANDLERS:
            try:
                self._resolve(handler)
            except (ImportError, AttributeError) as error:
                missing.append(f"{handler}: {error}")
        return missing
