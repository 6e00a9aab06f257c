"""boto3 clients, created on first use and kept for the life of the container.

Created lazily rather than at import so that a test (or the local stack) can set the
environment or start an emulator after importing the handlers; `reset_clients()` drops the
cache when that environment changes.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError, NoRegionError

from functions import environment

# Standard mode retries throttling (API Gateway's 429 LimitExceededException included) and
# transient 5xx with backoff; the legacy default does not retry a 429. The handlers other than
# publish rely on it.
_RETRIES = {"mode": "standard", "max_attempts": 3}
# One attempt per call: for the publish path, whose calls `functions.retry.Backoff` retries
# (bounded by the invocation's remaining time), so attempts never multiply.
_SINGLE_ATTEMPT = {"mode": "standard", "total_max_attempts": 1}

# Kept across resets: it holds the parsed service models, and clients made from it read the
# region and endpoint variables afresh (only resolved credentials stay cached).
_session: boto3.session.Session | None = None
_clients: dict[tuple[Any, ...], Any] = {}
# The credentials and region of requests signed by hand (`credentials()`, `region()`).
_signing: dict[str, Any] = {}
_lock = threading.Lock()


def client(service_name: str, *, retried: bool = True) -> Any:
    """A cached client for the service.

    boto3 resolves the endpoint itself, which honours the standard `AWS_ENDPOINT_URL` /
    `AWS_ENDPOINT_URL_<SERVICE>` variables. `retried=False` gives a client that makes a single
    attempt per call, for callers that retry themselves: the publish path, whose calls run on up
    to PUBLISH_CONCURRENCY threads at once, so its clients keep that many connections
    (botocore's default of 10 would open and throw away a connection, a TLS handshake on AWS,
    for every call beyond the tenth in flight).
    """
    connections = 10 if retried else environment.publish_concurrency()
    key = (service_name, retried, connections)
    cached = _clients.get(key)
    if cached is not None:
        return cached
    # Publish threads may ask for the same client at once, and creating clients from one
    # session is not thread-safe: build each client once, under the lock.
    with _lock:
        cached = _clients.get(key)
        if cached is None:
            cached = _shared_session().client(
                service_name,
                config=Config(
                    retries=_RETRIES if retried else _SINGLE_ATTEMPT,
                    max_pool_connections=connections,
                ),
            )
            _clients[key] = cached
        return cached


def credentials() -> ReadOnlyCredentials:
    """The function's credentials as of now, for signing a request by hand (refreshed by
    botocore when they expire, as the clients' are)."""
    resolved = _signing.get("credentials")
    if resolved is None:
        # Resolved afresh after `reset_clients`, not taken from the clients' session, which
        # keeps the first credentials it saw for the life of the process.
        resolved = botocore.session.get_session().get_credentials()
        if resolved is None:
            raise NoCredentialsError()
        _signing["credentials"] = resolved
    return resolved.get_frozen_credentials()


def region() -> str:
    """The region the clients use (AWS_REGION on Lambda)."""
    name = _signing.get("region")
    if name is None:
        with _lock:
            name = _shared_session().region_name
        if not name:
            raise NoRegionError()
        _signing["region"] = name
    return name


def _shared_session() -> boto3.session.Session:
    """The one boto3 session; the caller holds `_lock`."""
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session


def reset_clients() -> None:
    """Forget every cached client, e.g. after a test changed the endpoint, region or settings,
    or hooked a client (the next call builds a fresh one)."""
    with _lock:
        _clients.clear()
        _signing.clear()
