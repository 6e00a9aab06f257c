"""A Lambda-like `context` for handlers invoked in-process."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        # Nothing enforces the deadline locally; handlers that size work by it still see it shrink.
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_context(
    function_name: str,
    *,
    region: str,
    account: str,
    memory_mb: int,
    timeout_seconds: float,
    request_id: str | None = None,
) -> LambdaContext:
    arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
    context = LambdaContext(
        function_name=function_name,
        invoked_function_arn=arn,
        memory_limit_in_mb=memory_mb,
        timeout_seconds=timeout_seconds,
    )
    if request_id:
        context.aws_request_id = request_id
    return context
