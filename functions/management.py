"""Posting to a client through the API Gateway management API (`@connections`).

A post is the request boto3's `post_to_connection` sends — same URL, same body, signed by
botocore's own SigV4 signer for `execute-api` — sent on a kept-alive `http.client` connection
of the posting thread's own, instead of through the SDK's per-call pipeline (parameter
validation, serializers, event hooks, endpoint rules, response parsers) and urllib3's pool.
A large fan-out is CPU-bound on what each post costs, since one invocation runs one Python
thread at a time: side by side, the SDK's call took 0.68 ms of CPU, urllib3's pool 0.26 ms,
the standard library's connection 0.11 ms, signing 0.07 ms (docs/PERFORMANCE.md).

Every failure comes out as one exception family, so callers decide per kind instead of reading
HTTP answers: `ConnectionGone` (410: closed, unknown, or still in `$connect`), `PayloadTooLarge`
(413: the connection itself is fine), `DeliveryFailed` for anything else — raised once the
retries `functions.retry` allows for throttling (429), 5xx and timeouts are spent; `transient`
says whether a later attempt could still succeed.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
import threading
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import get_cert_path
from botocore.utils import percent_encode
from urllib3.util.wait import wait_for_read

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


class _KeptAlive:
    """One HTTP/1.1 connection to one origin, reused from post to post by the thread that
    owns it; reopened when the server has closed it (API Gateway closes idle connections, and
    a Lambda container may sleep for minutes between invocations)."""

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        self._scheme, self._host, self._port = scheme, host, port
        self._connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, error type header, body) of one request; OSError or HTTPException when
        nothing answered (the connection is then closed, and opened anew next time)."""
        connection = self._open()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, response.getheader("x-amzn-ErrorType") or "", data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _open(self) -> http.client.HTTPConnection:
        if self._connection is not None and _still_open(self._connection):
            return self._connection
        self.close()
        if self._scheme == "https":
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT_SECONDS, context=_tls()
            )
        else:
            connection = http.client.HTTPConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT_SECONDS
            )
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(READ_TIMEOUT_SECONDS)
        # http.client writes the headers and the body separately: without this, Nagle's
        # algorithm holds the body back until the server acknowledges the headers.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connection = connection
        return connection


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """Readable while idle means the server closed it (or broke the protocol)."""
    return connection.sock is not None and not wait_for_read(connection.sock, timeout=0.0)


_thread_connections = threading.local()


@functools.cache
def _tls() -> ssl.SSLContext:
    """Certificates and host names verified against the CA bundle botocore itself uses."""
    return ssl.create_default_context(cafile=get_cert_path(True))


def _kept_alive(scheme: str, netloc: str) -> _KeptAlive:
    """This thread's connection to that origin: each posting thread has its own, so posts
    never wait for one another's connection and need no lock."""
    by_origin: dict[tuple[str, str], _KeptAlive] | None = getattr(
        _thread_connections, "by_origin", None
    )
    if by_origin is None:
        by_origin = _thread_connections.by_origin = {}
    connection = by_origin.get((scheme, netloc))
    if connection is None:
        origin = urlsplit(f"{scheme}://{netloc}")
        if scheme not in ("http", "https") or not origin.hostname:
            raise environment.ConfigurationError(
                f"{contract.ENV_MANAGEMENT_ENDPOINT} must be an http(s) URL, got {scheme}://{netloc}"
            )
        connection = by_origin[(scheme, netloc)] = _KeptAlive(scheme, origin.hostname, origin.port)
    return connection


def close_connections() -> None:
    """Close this thread's kept-alive connections (e.g. after a test changed the endpoint's
    trust or the server); the next post opens a fresh one."""
    for connection in getattr(_thread_connections, "by_origin", {}).values():
        connection.close()


def connection_url(connection_id: str) -> str:
    """The management API's URL of one connection, encoded as the SDK encodes it."""
    endpoint = environment.required(contract.ENV_MANAGEMENT_ENDPOINT).rstrip("/")
    return f"{endpoint}/@connections/{percent_encode(connection_id)}"


def signed_post(connection_id: str, data: bytes) -> tuple[str, dict[str, str]]:
    """(URL, headers) of a post, signed with the function's credentials for its region."""
    request = AWSRequest(method="POST", url=connection_url(connection_id), data=data)
    SigV4Auth(aws.credentials(), SIGNING_SERVICE, aws.region()).add_auth(request)
    headers = dict(request.headers.items())
    return request.url, headers


def post(connection_id: str, data: bytes, backoff: retry.Backoff | None = None) -> None:
    """Send one message to one connection, retrying transient failures by `backoff` (default
    policy without a deadline when None); raises a DeliveryFailed (or subclass)."""
    (backoff or retry.Backoff()).call(_post_once, connection_id, data)


def _post_once(connection_id: str, data: bytes) -> None:
    # Signed per attempt: a retry after a pause must carry a fresh date.
    url, headers = signed_post(connection_id, data)
    target = urlsplit(url)
    try:
        status, error_type, body = _kept_alive(target.scheme, target.netloc).post(
            target.path, data, headers
        )
    except (OSError, http.client.HTTPException) as error:
        # No answer at all (timeout, connection refused or dropped). A post whose answer was
        # lost may have been delivered: its retry is a duplicate with the same envelope id.
        raise DeliveryFailed(connection_id, None, type(error).__name__, transient=True) from error
    if status < 300:
        return
    raise _failure(connection_id, status, _error_code(status, error_type, body))


def _failure(connection_id: str, status: int, code: str) -> DeliveryFailed:
    if status == 410 or code == "GoneException":
        return ConnectionGone(connection_id, status, code)
    if status == 413 or code == "PayloadTooLargeException":
        return PayloadTooLarge(connection_id, status, code)
    return DeliveryFailed(
        connection_id, status, code, transient=retry.is_transient_answer(status, code)
    )


def _error_code(status: int, error_type: str, body: bytes) -> str:
    """The error's name as the SDK reads it: the `x-amzn-ErrorType` header (up to a ':'),
    else the body's `__type` or `code`, else the HTTP status."""
    if error_type:
        return error_type.split(":", 1)[0]
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("__type", "code"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return parsed[key].rsplit("#", 1)[-1]
    return str(status)
