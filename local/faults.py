"""Faults the local stack can inject, so tests can reach the paths production rarely takes.

Each field of `Faults` is one `python -m local up` flag (`management_error_rate` ->
`--management-error-rate`); adding a field adds the flag. Every fault is off by default.

`FaultInjector` is what the running stack consults: one seeded random source for every
decision (`--fault-seed` makes a run's sequence of decisions reproducible; which request meets
which decision still depends on thread timing) and counters of what it injected. Its faults can
be changed while the stack runs (the local-only `/local/faults` endpoint), so a test can break
delivery, watch a notification be dead-lettered, heal it and replay.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# How a throttled DynamoDB request is answered (the JSON 1.0 protocol's error shape).
DYNAMODB_THROTTLE_CODE = "ProvisionedThroughputExceededException"
DYNAMODB_THROTTLE_BODY = json.dumps(
    {
        "__type": f"com.amazonaws.dynamodb.v20120810#{DYNAMODB_THROTTLE_CODE}",
        "message": "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    }
).encode()
# The management API's throttling and server error, as API Gateway names them.
MANAGEMENT_ERRORS = (
    (429, "LimitExceededException", "Rate exceeded"),
    (500, "InternalServerErrorException", "Internal server error"),
)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


@dataclass(frozen=True)
class Faults:
    drop_disconnect: bool = field(
        default=False,
        metadata={
            "help": "do not run $disconnect when a client goes away (as when API Gateway's "
            "best-effort $disconnect is lost); the next publish then meets 410 Gone"
        },
    )
    drop_disconnect_rate: float = field(
        default=0.0,
        metadata={"help": "share (0-1) of $disconnect events dropped", "type": _rate},
    )
    management_error_rate: float = field(
        default=0.0,
        metadata={
            "help": "share (0-1) of @connections POSTs answered 429 LimitExceededException "
            "or 500 InternalServerErrorException (half each)",
            "type": _rate,
        },
    )
    management_latency_ms: int = field(
        default=0,
        metadata={
            "help": "milliseconds every @connections call waits before it is answered",
            "type": _non_negative,
        },
    )
    dynamodb_throttle_rate: float = field(
        default=0.0,
        metadata={
            "help": "share (0-1) of DynamoDB requests answered 400 "
            "ProvisionedThroughputExceededException",
            "type": _rate,
        },
    )
    fault_seed: int | None = field(
        default=None,
        metadata={"help": "seed for the fault decisions (default: random)", "type": int},
    )

    def __post_init__(self) -> None:
        for name in ("drop_disconnect_rate", "management_error_rate", "dynamodb_throttle_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.management_latency_ms < 0:
            raise ValueError("management_latency_ms must not be negative")

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("fault injection (all off by default)")
        for spec in fields(Faults):
            flag = "--" + spec.name.replace("_", "-")
            help_text = spec.metadata.get("help")
            if spec.type in (bool, "bool"):
                group.add_argument(flag, action="store_true", help=help_text)
            elif "type" in spec.metadata:
                group.add_argument(
                    flag, type=spec.metadata["type"], default=spec.default, help=help_text
                )
            else:  # pragma: no cover - a new fault must say how its flag parses
                raise TypeError(f"add CLI support for fault {spec.name} of type {spec.type}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Faults:
        return cls(**{spec.name: getattr(args, spec.name) for spec in fields(cls)})

    def describe(self) -> str:
        active = [
            spec.name if isinstance(value, bool) else f"{spec.name}={value}"
            for spec in fields(self)
            if (value := getattr(self, spec.name)) and spec.name != "fault_seed"
        ]
        if active and self.fault_seed is not None:
            active.append(f"fault_seed={self.fault_seed}")
        return ", ".join(active) if active else "none"


class FaultInjector:
    """The stack's current faults, the random source that applies them, and what it injected."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._faults = faults or Faults()
        self._random = random.Random(self._faults.fault_seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        # Off until the stack has created its resources: startup itself is never faulted.
        self.armed = False

    @property
    def faults(self) -> Faults:
        return self._faults

    def update(self, changes: dict[str, Any]) -> Faults:
        """Replace some faults while running; raises ValueError for unknown or invalid ones."""
        known = {spec.name for spec in fields(Faults)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        with self._lock:
            self._faults = replace(self._faults, **changes)
            if "fault_seed" in changes:
                self._random.seed(self._faults.fault_seed)
            return self._faults

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"faults": asdict(self._faults), "injected": dict(self.injected)}

    def _draw(self, rate: float, kind: str) -> float | None:
        """A uniform draw below `rate` (the fault happens), else None."""
        if not self.armed or rate <= 0:
            return None
        with self._lock:
            draw = self._random.random()
            if draw >= rate:
                return None
            self.injected[kind] += 1
            return draw

    # --- the faults -------------------------------------------------------------------------

    def drop_disconnect(self) -> bool:
        if self._faults.drop_disconnect and self.armed:
            with self._lock:
                self.injected["disconnect_dropped"] += 1
            return True
        return self._draw(self._faults.drop_disconnect_rate, "disconnect_dropped") is not None

    def management_error(self) -> tuple[int, str, str] | None:
        """(status, error type, message) a POST should answer instead of delivering, or None."""
        rate = self._faults.management_error_rate
        draw = self._draw(rate, "management_error")
        if draw is None:
            return None
        # The draw is uniform below `rate`: its lower half answers 429, the upper half 500.
        error = MANAGEMENT_ERRORS[0] if draw < rate / 2 else MANAGEMENT_ERRORS[1]
        with self._lock:
            self.injected[f"management_{error[0]}"] += 1
        return error

    def management_latency_seconds(self) -> float:
        return self._faults.management_latency_ms / 1000 if self.armed else 0.0

    def throttle_dynamodb(self) -> bool:
        return self._draw(self._faults.dynamodb_throttle_rate, "dynamodb_throttled") is not None


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def dynamodb_throttling(app: WsgiApp, injector: FaultInjector) -> WsgiApp:
    """WSGI middleware for the emulator: throttle a share of DynamoDB API requests.

    DynamoDB requests are the JSON 1.0 calls whose `X-Amz-Target` starts with `DynamoDB_`; a
    throttled one never reaches moto and gets the 400 botocore parses as
    ProvisionedThroughputExceededException (which the SDK's retry modes retry).
    """

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_") and injector.throttle_dynamodb():
            # Read the request body, so the connection stays usable for the next request.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                environ["wsgi.input"].read(length)
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(DYNAMODB_THROTTLE_BODY))),
                    ("x-amzn-ErrorType", DYNAMODB_THROTTLE_CODE),
                ],
            )
            return [DYNAMODB_THROTTLE_BODY]
        return app(environ, start_response)

    return middleware
