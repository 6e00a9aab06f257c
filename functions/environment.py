"""Settings the handlers read from their environment (names declared in `contract`).

The Pulumi program and the local stack set these variables; a missing or malformed one is a
deployment mistake, so it fails loudly with the variable's name instead of a bare KeyError.
"""

from __future__ import annotations

import os

from functions import contract

DEFAULT_PUBLISH_CONCURRENCY = 32
# API Gateway answers 410 to a post while `$connect` is still running, and `$connect` writes the
# session row before it returns: a row younger than this may belong to a connection that is about
# to open, so a 410 does not delete it. `$connect` returns milliseconds after the write; the
# margin covers a slow integration. A row kept here is removed by a later 410 or by TTL.
DEFAULT_CONNECTING_GRACE_SECONDS = 5
# Lambda retries a failed asynchronous invocation one minute after it failed, then two minutes
# after that (AWS Lambda developer guide, error handling for asynchronous invocation); half of
# it leaves room for the clocks of SNS and Lambda to disagree.
DEFAULT_FIRST_RETRY_AFTER_SECONDS = 30


class ConfigurationError(RuntimeError):
    """A required environment variable is missing or malformed."""


def required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def optional(name: str) -> str | None:
    """The variable's value, or None when unset or empty (empty means "not configured")."""
    value = os.environ.get(name, "").strip()
    return value or None


def integer(name: str, default: int | None = None, *, minimum: int = 1) -> int:
    """An integer setting of at least `minimum`; `default` when unset (required without one)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigurationError(f"environment variable {name} is not set")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be an integer") from None
    if value < minimum:
        raise ConfigurationError(
            f"environment variable {name} must be at least {minimum}, got {value}"
        )
    return value


def flag(name: str) -> bool:
    """True only for "true" (any case): a feature behind a flag stays off unless switched on."""
    return os.environ.get(name, "").strip().lower() == "true"


def sessions_table() -> str:
    return required(contract.ENV_SESSIONS_TABLE)


def publish_concurrency() -> int:
    return integer(contract.ENV_PUBLISH_CONCURRENCY, DEFAULT_PUBLISH_CONCURRENCY)


def connecting_grace_seconds() -> int:
    return integer(
        contract.ENV_CONNECTING_GRACE_SECONDS, DEFAULT_CONNECTING_GRACE_SECONDS, minimum=0
    )


def first_retry_after_seconds() -> int:
    return integer(
        contract.ENV_FIRST_RETRY_AFTER_SECONDS, DEFAULT_FIRST_RETRY_AFTER_SECONDS, minimum=0
    )
