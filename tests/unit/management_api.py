"""API Gateway's management API (`POST /{stage}/@connections/{id}`) as a real HTTP server.

The publish path posts over HTTP with a hand-signed request (`functions.management`), so the
unit tests answer it the way API Gateway does: on a socket, checking the SigV4 signature
against the process's credentials (a request signed for the wrong region, service, URL or body
is refused with 403, as AWS refuses it), and answering errors with the `x-amzn-ErrorType`
header and JSON body AWS sends. What each connection answers is a script the test sets.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from functions import management

Answers = tuple[int, str] | list[tuple[int, str]]

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


class ScriptedManagementApi:
    """Answers each post by connection id and records it; works with posts arriving
    concurrently in any order."""

    def __init__(self, answers: dict[str, Answers], delay: float = 0.0) -> None:
        # connectionId -> (HTTP status, error code) for every post, or a list of them for the
        # first posts in turn (200 after the list); 200 for a connection not named.
        self.answers = answers
        self.delay = delay  # seconds each post takes
        self.posts: dict[str, list[bytes]] = {}  # every post made, whatever the answer
        self.delivered: dict[str, list[bytes]] = {}  # the posts answered 2xx
        self.refused: list[str] = []  # why requests were refused before reaching a connection
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def answer(self, connection_id: str) -> tuple[int, str]:
        """(HTTP status, error code) for a post to this connection (called under the lock)."""
        scripted = self.answers.get(connection_id, (200, ""))
        if isinstance(scripted, list):
            return scripted.pop(0) if scripted else (200, "")
        return scripted

    def last_delivered(self) -> dict[str, bytes]:
        """The last frame each connection received."""
        with self._lock:
            return {cid: frames[-1] for cid, frames in self.delivered.items()}

    def receive(self, connection_id: str, data: bytes) -> tuple[int, str]:
        with self._lock:
            self.posts.setdefault(connection_id, []).append(data)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)  # the post's own duration, not a synchronisation
        finally:
            with self._lock:
                self.in_flight -= 1
                status, code = self.answer(connection_id)
        if status < 300:
            with self._lock:
                self.delivered.setdefault(connection_id, []).append(data)
        return status, code

    def refuse(self, why: str) -> tuple[int, str]:
        with self._lock:
            self.refused.append(why)
        return 403, "ForbiddenException"


class GatewayManagementApi(ScriptedManagementApi):
    """As API Gateway answers: a post to a connection in `open` is delivered (200); any other
    id (closed, never opened, still in `$connect`) answers 410."""

    def __init__(self) -> None:
        super().__init__({})
        self.open: set[str] = set()

    def answer(self, connection_id: str) -> tuple[int, str]:
        return (200, "") if connection_id in self.open else (410, "GoneException")


class ManagementApiServer:
    """One HTTP server for the test session; `script` is what answers right now. With a
    certificate chain and key it serves HTTPS, as API Gateway does."""

    def __init__(self, stage: str, tls: tuple[Path, Path] | None = None) -> None:
        self.stage = stage
        self.script = ScriptedManagementApi({})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.open_sockets: set[Any] = set()  # kept-alive client connections being served
        self.scheme = "http"
        self.certificate = tls[0] if tls else None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """The `MANAGEMENT_ENDPOINT` value: base URL with the stage, as on AWS."""
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}/{self.stage}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def drop_idle_connections(self) -> None:
        """Close every kept-alive connection, as API Gateway does with idle ones."""
        for sock in list(self.open_sockets):
            sock.shutdown(socket.SHUT_RDWR)

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, str]:
        script = self.script
        prefix = f"/{self.stage}/@connections/"
        if method != "POST" or not path.startswith(prefix) or "/" in path[len(prefix) :]:
            return script.refuse(f"{method} {path}")
        why = _signature_problem(method, path, headers, body)
        if why:
            return script.refuse(why)
        return script.receive(unquote(path[len(prefix) :]), body)


def _handler_for(server: ManagementApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the poster expects

        def setup(self) -> None:
            super().setup()
            server.open_sockets.add(self.connection)

        def finish(self) -> None:
            server.open_sockets.discard(self.connection)
            super().finish()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, code = server.handle(self.command, self.path, self.headers, body)
            payload = b"" if status < 300 else json.dumps({"message": code}).encode()
            self.send_response(status)
            if status >= 300:
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_DELETE = do_PUT = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) files for 127.0.0.1, valid for a day; the certificate is its own
    issuer, so a client trusts it only when told to."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "management-api.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = directory / "server.pem", directory / "server.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_file, key_file


def _signature_problem(method: str, path: str, headers: Any, body: bytes) -> str | None:
    """Why AWS would refuse this request's SigV4 signature, or None when it is valid for the
    process's credentials, the management API's signing name and the region configured."""
    match = _AUTHORIZATION.match(headers.get("Authorization", ""))
    if match is None:
        return "missing or malformed Authorization header"
    credentials = Credentials(
        os.environ["AWS_ACCESS_KEY_ID"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
        os.environ.get("AWS_SESSION_TOKEN"),
    )
    region = os.environ.get("AWS_REGION") or os.environ["AWS_DEFAULT_REGION"]
    if match["key"] != credentials.access_key:
        return f"signed with key {match['key']!r}"
    if (match["service"], match["region"]) != (management.SIGNING_SERVICE, region):
        return f"signed for {match['service']} in {match['region']}"
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return f"host and x-amz-date must be signed, got {signed}"
    if credentials.token and headers.get("X-Amz-Security-Token") != credentials.token:
        return "the session token is missing"
    request = AWSRequest(
        method=method,
        url=f"http://{headers['Host']}{path}",
        data=body,
        headers={name: headers[name] for name in signed if name != "host"},
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(credentials, match["service"], match["region"])
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if expected != match["signature"]:
        return "signature does not match"
    return None
