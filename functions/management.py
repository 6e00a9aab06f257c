"""Posting to a client through the API Gateway management API (`@connections`).

Every failure comes out as one exception family, so callers decide per kind instead of reading
botocore error codes: `ConnectionGone` (410: closed, unknown, or still in `$connect`),
`PayloadTooLarge` (413: the connection itself is fine), `DeliveryFailed` for anything else —
raised once the retries `functions.retry` allows for throttling (429), 5xx and timeouts are
spent; `transient` says whether a later attempt could still succeed.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions import aws, contract, environment, retry


class DeliveryFailed(Exception):
    """A post did not reach the connection; `status` and `code` say what API Gateway answered."""

    def __init__(
        self, connection_id: str, status: int | None, code: str, *, transient: bool = False
    ) -> None:
        super().__init__(f"post to {connection_id} failed: {status} {code}")
        self.connection_id = connection_id
        self.status = status
        self.code = code
        self.transient = transient


class ConnectionGone(DeliveryFailed):
    """410: the connection is closed or unknown; its session row can go."""


class PayloadTooLarge(DeliveryFailed):
    """413: the message exceeds what API Gateway delivers."""


# A post is one small request: a connection that hangs should fail fast and be counted, not
# hold the publish function until its timeout.
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10


def management_client() -> Any:
    return aws.client(
        "apigatewaymanagementapi",
        endpoint_url=environment.required(contract.ENV_MANAGEMENT_ENDPOINT),
        # One HTTP connection per publishing thread, so posts do not queue for the pool.
        max_pool_connections=environment.publish_concurrency(),
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        # Retried by `functions.retry` only (see there), so attempts do not multiply.
        retried=False,
    )


def post(connection_id: str, data: bytes, backoff: retry.Backoff | None = None) -> None:
    """Send one message to one connection, retrying transient failures by `backoff` (default
    policy without a deadline when None); raises a DeliveryFailed (or subclass)."""
    try:
        (backoff or retry.Backoff()).call(
            management_client().post_to_connection, ConnectionId=connection_id, Data=data
        )
    except ClientError as error:
        raise _translate(connection_id, error) from error
    except BotoCoreError as error:
        # No answer at all (timeout, connection refused): no status to report.
        raise DeliveryFailed(
            connection_id, None, type(error).__name__, transient=retry.is_transient(error)
        ) from error


def _translate(connection_id: str, error: ClientError) -> DeliveryFailed:
    code = error.response.get("Error", {}).get("Code", "Unknown")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 410 or code == "GoneException":
        return ConnectionGone(connection_id, status, code)
    if status == 413 or code == "PayloadTooLargeException":
        return PayloadTooLarge(connection_id, status, code)
    return DeliveryFailed(connection_id, status, code, transient=retry.is_transient(error))
