"""Posting to a client through the API Gateway management API (`@connections`).

A post is the request boto3's `post_to_connection` sends — same URL, same body, signed by
botocore's own SigV4 signer for `execute-api` — sent on a kept-alive urllib3 pool instead of
through the SDK's per-call pipeline (parameter validation, serializers, event hooks, endpoint
rules, response parsers). That pipeline cost 2x the CPU of the post itself, and a large fan-out
is CPU-bound on it: one invocation runs one Python thread at a time (docs/PERFORMANCE.md).

Every failure comes out as one exception family, so callers decide per kind instead of reading
HTTP answers: `ConnectionGone` (410: closed, unknown, or still in `$connect`), `PayloadTooLarge`
(413: the connection itself is fine), `DeliveryFailed` for anything else — raised once the
retries `functions.retry` allows for throttling (429), 5xx and timeouts are spent; `transient`
says whether a later attempt could still succeed.
"""

from __future__ import annotations

import json
import threading

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.utils import percent_encode

from functions import aws, contract, environment, retry

# The signing name of the management API (its IAM actions are execute-api:ManageConnections).
SIGNING_SERVICE = "execute-api"
# A post is one small request: a connection that hangs should fail fast and be counted, not
# hold the publish function until its timeout.
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10


class DeliveryFailed(retry.CallFailed):
    """A post did not reach the connection; `status` and `code` say what API Gateway answered
    (`status` is None when nothing answered: a timeout, a refused or dropped connection)."""

    def __init__(
        self, connection_id: str, status: int | None, code: str, *, transient: bool = False
    ) -> None:
        super().__init__(f"post to {connection_id} failed: {status} {code}", transient=transient)
        self.connection_id = connection_id
        self.status = status
        self.code = code


class ConnectionGone(DeliveryFailed):
    """410: the connection is closed or unknown; its session row can go."""


class PayloadTooLarge(DeliveryFailed):
    """413: the message exceeds what API Gateway delivers."""


_connections = threading.local()


def _http() -> urllib3.PoolManager:
    """This thread's HTTP connection, kept alive for the life of the container: each posting
    thread has its own, so posts never wait for one another's connection, and however many
    invocations share a process (the local stack) none are opened and thrown away."""
    http: urllib3.PoolManager | None = getattr(_connections, "http", None)
    if http is None:
        http = _connections.http = urllib3.PoolManager(
            maxsize=1,
            # Retried by `functions.retry` only, so attempts do not multiply.
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        )
    return http


def connection_url(connection_id: str) -> str:
    """The management API's URL of one connection, encoded as the SDK encodes it."""
    endpoint = environment.required(contract.ENV_MANAGEMENT_ENDPOINT).rstrip("/")
    return f"{endpoint}/@connections/{percent_encode(connection_id)}"


def signed_post(connection_id: str, data: bytes) -> tuple[str, dict[str, str]]:
    """(URL, headers) of a post, signed with the function's credentials for its region."""
    request = AWSRequest(method="POST", url=connection_url(connection_id), data=data)
    SigV4Auth(aws.credentials(), SIGNING_SERVICE, aws.region()).add_auth(request)
    headers = {name: _text(value) for name, value in request.headers.items()}
    return request.url, headers


def post(connection_id: str, data: bytes, backoff: retry.Backoff | None = None) -> None:
    """Send one message to one connection, retrying transient failures by `backoff` (default
    policy without a deadline when None); raises a DeliveryFailed (or subclass)."""
    (backoff or retry.Backoff()).call(_post_once, connection_id, data)


def _post_once(connection_id: str, data: bytes) -> None:
    # Signed per attempt: a retry after a pause must carry a fresh date.
    url, headers = signed_post(connection_id, data)
    try:
        response = _http().request("POST", url, body=data, headers=headers, redirect=False)
    except urllib3.exceptions.HTTPError as error:
        # No answer at all (timeout, connection refused or dropped). A post whose answer was
        # lost may have been delivered: its retry is a duplicate with the same envelope id.
        raise DeliveryFailed(connection_id, None, type(error).__name__, transient=True) from error
    if response.status < 300:
        return
    raise _failure(connection_id, response.status, _error_code(response))


def _failure(connection_id: str, status: int, code: str) -> DeliveryFailed:
    if status == 410 or code == "GoneException":
        return ConnectionGone(connection_id, status, code)
    if status == 413 or code == "PayloadTooLargeException":
        return PayloadTooLarge(connection_id, status, code)
    return DeliveryFailed(
        connection_id, status, code, transient=retry.is_transient_answer(status, code)
    )


def _error_code(response: urllib3.BaseHTTPResponse) -> str:
    """The error's name as the SDK reads it: the `x-amzn-ErrorType` header (up to a ':'),
    else the body's `__type` or `code`, else the HTTP status."""
    header = response.headers.get("x-amzn-ErrorType")
    if header:
        return header.split(":", 1)[0]
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("__type", "code"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key].rsplit("#", 1)[-1]
    return str(response.status)


def _text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value
