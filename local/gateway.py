"""A WebSocket gateway on localhost that behaves like API Gateway for this API's routes.

One aiohttp server on one port, as API Gateway serves both on one host:

- `GET /{stage}` upgrades to a WebSocket after the REQUEST authorizer and `$connect` agree;
  frames go through route selection to `$default`; a close runs `$disconnect`.
- `/{stage}/@connections/{connectionId}`: the management API (POST, GET, DELETE) with AWS's
  status codes and error shapes, so botocore raises the ClientError it raises on AWS.
- `/` and `/local/...`: the demo page and its local-only helpers (never part of the API);
  `/clients/web/...`: the browser client module the demo page imports. `/local/faults` reads
  and changes the injected faults while the stack runs.

Limits as API Gateway enforces them: a data frame over 32 KB or a message over 128 KB (its
frames together) closes the connection with 1009; an idle connection closes after 10 minutes
and any connection after 2 hours, both with 1001 Going Away.

Handlers are blocking boto3 code: each invocation runs on a worker thread (`asyncio.to_thread`)
so the event loop keeps serving frames and management calls meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.helpers import set_exception
from aiohttp.http_websocket import WebSocketError

from functions import contract
from local import events
from local.authorization import AuthorizerError, decide
from local.faults import FaultInjector, Faults
from local.lambdas import Invoker

log = logging.getLogger("local.gateway")

STATIC_DIR = Path(__file__).resolve().parent / "static"
WEB_CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "web"
ROUTES_BY_KEY = {route.key: route for route in contract.ROUTES}
# Routes a frame can select; $connect and $disconnect are lifecycle events only.
MESSAGE_ROUTES = {
    key: route
    for key, route in ROUTES_BY_KEY.items()
    if key not in (contract.CONNECT_ROUTE, "$disconnect")
}
# The management API reads bodies up to this size itself, so an oversized post gets AWS's
# 413 PayloadTooLargeException rather than aiohttp's plain-text 413.
MAX_MANAGEMENT_BODY_BYTES = 4 * contract.MAX_MESSAGE_BYTES


class State(enum.Enum):
    CONNECTING = "CONNECTING"  # authorizer / $connect still running: posts get 410
    OPEN = "OPEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Limits:
    """API Gateway's connection timeouts (seconds); tests may shorten them."""

    idle_timeout_seconds: float = contract.IDLE_TIMEOUT_SECONDS
    max_connection_seconds: float = contract.CONNECTION_MAX_SECONDS


@dataclass
class Connection:
    info: events.ConnectionInfo
    state: State = State.CONNECTING
    ws: web.WebSocketResponse | None = None
    last_active_ms: int = field(default_factory=events.now_ms)
    # Why the server closed it, for the $disconnect event (None: the client went away).
    server_close: tuple[int, str] | None = None
    # The subprotocol $connect returned in its Sec-WebSocket-Protocol header, if any.
    chosen_protocol: str | None = None

    @property
    def id(self) -> str:
        return self.info.connection_id

    def touch(self) -> None:
        self.last_active_ms = events.now_ms()


@dataclass(frozen=True)
class DevTools:
    """Local-only helpers behind the demo page: a token for a user, a real SNS publish."""

    issue_token: Callable[[str], str]
    publish: Callable[[list[str], str, str], str]  # (user ids, type, message) -> MessageId


class Gateway:
    def __init__(
        self,
        *,
        stage: str,
        region: str,
        account: str,
        lambdas: Invoker,
        faults: Faults | FaultInjector,
        dev_tools: DevTools,
        websocket_url: Callable[[], str],
        limits: Limits | None = None,
    ) -> None:
        self.stage = stage
        self.region = region
        self.account = account
        self.lambdas = lambdas
        if isinstance(faults, Faults):
            faults = FaultInjector(faults)
            faults.armed = True
        self.faults = faults
        self.dev_tools = dev_tools
        self.limits = limits or Limits()
        self._websocket_url = websocket_url
        self.connections: dict[str, Connection] = {}
        self._sessions: set[asyncio.Task[Any]] = set()

    # --- application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MANAGEMENT_BODY_BYTES)
        app.router.add_get("/", self.demo_page)
        app.router.add_get("/local/token", self.local_token)
        app.router.add_post("/local/publish", self.local_publish)
        app.router.add_get("/local/faults", self.local_faults)
        app.router.add_post("/local/faults", self.local_faults)
        app.router.add_static("/clients/web/", WEB_CLIENT_DIR)
        app.router.add_get("/{stage}", self.handshake)
        app.router.add_route("*", "/{stage}/@connections/{connection_id}", self.management)
        return app

    async def close_all(self, timeout: float = 5.0) -> None:
        """Close every client (1001 Going Away, as API Gateway does on a deployment swap)."""
        for connection in list(self.connections.values()):
            if connection.ws is not None and connection.state is State.OPEN:
                connection.server_close = (WSCloseCode.GOING_AWAY, "Going away")
                await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away")
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=timeout)

    # --- $connect ---------------------------------------------------------------------------

    async def handshake(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["stage"] != self.stage:
            return _plain(403, "Forbidden")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _plain(426, "Upgrade Required")
        query = list(request.query.items())
        # The token is the authorizer's identity source: API Gateway refuses a handshake
        # without it (401) and never invokes the authorizer.
        if not request.query.get(contract.TOKEN_QUERY_PARAMETER):
            log.info("$connect refused 401: no %s query parameter", contract.TOKEN_QUERY_PARAMETER)
            return _plain(401, "Unauthorized")

        info = events.ConnectionInfo(
            connection_id=events.new_connection_id(),
            stage=self.stage,
            domain_name=request.host,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
        )
        connection = Connection(info)
        self.connections[connection.id] = connection
        try:
            response = await self._authorize_and_connect(connection, request, query)
            if response is not None:
                return response
            return await self._serve(connection, request)
        finally:
            connection.state = State.CLOSED
            self.connections.pop(connection.id, None)

    async def _authorize_and_connect(
        self, connection: Connection, request: web.Request, query: list[tuple[str, str]]
    ) -> web.StreamResponse | None:
        """None when the handshake may complete; otherwise the response refusing it."""
        info = connection.info
        headers = _forwarded_headers(request)
        event = events.authorizer_event(
            info, region=self.region, account=self.account, headers=headers, query=query
        )
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(self.lambdas.invoke, contract.AUTHORIZER, event)
            decision = decide(result, event["methodArn"])
        except AuthorizerError as error:
            log.error("conn=%s authorizer answer malformed: %s -> 500", connection.id, error)
            return _plain(500, "Internal Server Error")
        except Exception as error:
            # The documented way for an authorizer to say "no identity" is to raise exactly
            # this; API Gateway answers 401. Anything else is an authorizer failure: 500.
            if str(error) == "Unauthorized":
                log.info("conn=%s authorizer: Unauthorized -> 401", connection.id)
                return _plain(401, "Unauthorized")
            log.exception("conn=%s authorizer raised -> 500", connection.id)
            return _plain(500, "Internal Server Error")
        if not decision.allowed:
            log.info("conn=%s authorizer: %s denied -> 403", connection.id, decision.principal_id)
            return _plain(403, "Forbidden")
        info.authorizer = {**decision.context, "principalId": decision.principal_id}
        log.info(
            "conn=%s authorizer: allow principal=%s (%s)",
            connection.id,
            decision.principal_id,
            _elapsed(started),
        )

        started = time.monotonic()
        event = events.connect_event(info, headers=headers, query=query)
        try:
            result = await asyncio.to_thread(self.lambdas.invoke, contract.CONNECT, event)
        except Exception:
            log.exception("conn=%s $connect raised -> 500", connection.id)
            return _plain(500, "Internal Server Error")
        status = _status_of(result)
        log.info("conn=%s $connect -> %s (%s)", connection.id, status, _elapsed(started))
        if not 200 <= status < 300:
            body = result.get("body") if isinstance(result, dict) else None
            return web.Response(status=status, text=body if isinstance(body, str) else "")
        connection.chosen_protocol = _header(result, "Sec-WebSocket-Protocol")
        return None

    async def _serve(self, connection: Connection, request: web.Request) -> web.StreamResponse:
        chosen = connection.chosen_protocol
        offered = [
            part.strip()
            for part in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if part.strip()
        ]
        if chosen and chosen not in offered:
            log.warning(
                "conn=%s $connect chose subprotocol %r the client did not offer (%s)",
                connection.id,
                chosen,
                offered,
            )
        # API Gateway never echoes the client's offer: only what $connect returned is sent.
        ws = _LimitedWebSocketResponse(
            protocols=(chosen,) if chosen else (),
            # aiohttp refuses a message of exactly max_msg_size; 128 KB itself is allowed.
            max_msg_size=contract.MAX_MESSAGE_BYTES + 1,
            # No permessage-deflate: the frame and message limits apply to what is on the wire.
            compress=False,
            autoping=True,
        )
        await ws.prepare(request)
        connection.ws = ws
        connection.state = State.OPEN
        connection.touch()
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        log.info(
            "conn=%s OPEN user-agent=%r subprotocol=%s",
            connection.id,
            connection.info.user_agent,
            chosen or "-",
        )
        inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        worker = asyncio.create_task(self._route_frames(connection, inbox))
        watchdog = asyncio.create_task(self._watch_timeouts(connection))
        close_code, close_reason = WSCloseCode.ABNORMAL_CLOSURE, "Connection lost"
        try:
            while True:
                message = await ws.receive()
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    connection.touch()
                    inbox.put_nowait(message.data)
                elif message.type is WSMsgType.CLOSE:
                    close_code, close_reason = int(message.data), message.extra or ""
                    break
                elif message.type is WSMsgType.ERROR:
                    # e.g. a frame over the size limit: aiohttp closed with 1009.
                    close_code = ws.close_code or WSCloseCode.ABNORMAL_CLOSURE
                    close_reason = str(message.data)
                    break
                else:  # CLOSING / CLOSED: the transport went away without a close frame
                    break
        finally:
            connection.state = State.CLOSED
            self.connections.pop(connection.id, None)
            worker.cancel()
            watchdog.cancel()
        try:
            if connection.server_close is not None:
                close_code, close_reason = connection.server_close
            log.info("conn=%s CLOSED code=%s reason=%r", connection.id, close_code, close_reason)
            await self._disconnect(connection, close_code, close_reason)
        finally:
            # Only now is the connection finished: close_all() waits for its $disconnect too.
            if task is not None:
                self._sessions.discard(task)
        return ws

    # --- frames -----------------------------------------------------------------------------

    async def _route_frames(self, connection: Connection, inbox: asyncio.Queue[Any]) -> None:
        # One frame at a time per connection, so replies come back in the order of the frames
        # while the reader keeps answering pings and noticing closes.
        while True:
            body = await inbox.get()
            await self._handle_frame(connection, body)

    async def _handle_frame(self, connection: Connection, body: str | bytes) -> None:
        route_key = select_route(body)
        route = MESSAGE_ROUTES.get(route_key) if route_key else None
        if route is None:
            route = MESSAGE_ROUTES.get("$default")
        event_route = route.key if route else (route_key or "$default")
        event = events.message_event(connection.info, event_route, body)
        request_id = event["requestContext"]["requestId"]
        if route is None:
            # No matching route and no $default: API Gateway answers with an error frame.
            await self._send_error(connection, "Forbidden", request_id)
            return
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(self.lambdas.invoke, route.handler, event)
        except Exception:
            log.exception("conn=%s %s raised", connection.id, route.key)
            await self._send_error(connection, "Internal server error", request_id)
            return
        log.info(
            "conn=%s %s -> %s (%s)", connection.id, route.key, _status_of(result), _elapsed(started)
        )
        if route.two_way and isinstance(result, dict) and result.get("body") is not None:
            await self._send(connection, str(result["body"]))

    async def _send_error(self, connection: Connection, message: str, request_id: str) -> None:
        frame = {"message": message, "connectionId": connection.id, "requestId": request_id}
        await self._send(connection, json.dumps(frame))

    async def _send(self, connection: Connection, data: str | bytes) -> bool:
        ws = connection.ws
        if ws is None or connection.state is not State.OPEN or ws.closed:
            return False
        try:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)
        except (ConnectionError, RuntimeError):
            return False
        connection.touch()
        return True

    async def _watch_timeouts(self, connection: Connection) -> None:
        """Close idle connections after 10 minutes and every connection after 2 hours."""
        opened = time.monotonic()
        while connection.state is State.OPEN:
            idle_for = (events.now_ms() - connection.last_active_ms) / 1000
            idle_left = self.limits.idle_timeout_seconds - idle_for
            age_left = self.limits.max_connection_seconds - (time.monotonic() - opened)
            if idle_left <= 0 or age_left <= 0:
                reason = "Idle timeout" if idle_left <= 0 else "Connection duration limit"
                connection.server_close = (WSCloseCode.GOING_AWAY, reason)
                if connection.ws is not None:
                    await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=reason.encode())
                return
            await asyncio.sleep(min(idle_left, age_left))

    # --- $disconnect ------------------------------------------------------------------------

    async def _disconnect(self, connection: Connection, code: int, reason: str) -> None:
        if self.faults.drop_disconnect():
            log.info("conn=%s $disconnect dropped (fault drop_disconnect)", connection.id)
            return
        event = events.disconnect_event(connection.info, code, reason)
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(self.lambdas.invoke, contract.DISCONNECT, event)
        except Exception:
            log.exception("conn=%s $disconnect raised", connection.id)
            return
        log.info(
            "conn=%s $disconnect -> %s (%s)", connection.id, _status_of(result), _elapsed(started)
        )

    # --- @connections -----------------------------------------------------------------------

    async def management(self, request: web.Request) -> web.StreamResponse:
        connection_id = request.match_info["connection_id"]
        response = await self._manage(request, connection_id)
        log.info("@connections %s %s -> %s", request.method, connection_id, response.status)
        return response

    async def _manage(self, request: web.Request, connection_id: str) -> web.StreamResponse:
        latency = self.faults.management_latency_seconds()
        if latency:
            await asyncio.sleep(latency)
        # The management API is IAM-authorized: unsigned calls never reach a connection.
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            return _aws_error(403, "ForbiddenException", "Missing Authentication Token")
        if request.match_info["stage"] != self.stage:
            return _aws_error(403, "ForbiddenException", "Forbidden")
        if request.method not in ("POST", "GET", "DELETE"):
            return _aws_error(403, "ForbiddenException", "Forbidden")
        if not events.is_valid_connection_id(connection_id):
            return _aws_error(400, "BadRequestException", f"Invalid connectionId: {connection_id}")

        body = b""
        if request.method == "POST":
            if (request.content_length or 0) > contract.MAX_MESSAGE_BYTES:
                return _payload_too_large()
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _payload_too_large()
            if len(body) > contract.MAX_MESSAGE_BYTES:
                return _payload_too_large()

        if request.method == "POST":
            injected = self.faults.management_error()
            if injected is not None:
                status, code, message = injected
                log.info("@connections POST %s: injected %s %s", connection_id, status, code)
                return _aws_error(status, code, message)

        connection = self.connections.get(connection_id)
        # Unknown, closed and still-connecting connections all answer 410 on AWS.
        if connection is None or connection.state is not State.OPEN:
            return _aws_error(410, "GoneException", f"Connection {connection_id} is gone")

        if request.method == "GET":
            return _aws_json(
                200,
                {
                    "connectedAt": _iso(connection.info.connected_at_ms),
                    "identity": {
                        "sourceIp": connection.info.source_ip,
                        "userAgent": connection.info.user_agent,
                    },
                    "lastActiveAt": _iso(connection.last_active_ms),
                },
            )
        if request.method == "DELETE":
            connection.server_close = (WSCloseCode.OK, "Connection deleted")
            connection.state = State.CLOSED
            self.connections.pop(connection_id, None)
            if connection.ws is not None:
                # Do not hold the caller while the client answers the close frame.
                _background(connection.ws.close(code=WSCloseCode.OK, message=b"Goodbye"))
            return web.Response(status=204, headers=_request_id_header())

        try:
            text: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body
        if not await self._send(connection, text):
            return _aws_error(410, "GoneException", f"Connection {connection_id} is gone")
        return web.Response(status=200, headers=_request_id_header())

    # --- demo page and local-only helpers ---------------------------------------------------

    async def demo_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def local_token(self, request: web.Request) -> web.StreamResponse:
        user = request.query.get("user", "").strip()
        if not user:
            return web.json_response({"message": "user query parameter required"}, status=400)
        token = await asyncio.to_thread(self.dev_tools.issue_token, user)
        return web.json_response({"token": token, "websocketUrl": self._websocket_url()})

    async def local_publish(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.json()
            users = payload.get("userIds") or [payload["userId"]]
            users = [str(user).strip() for user in users if str(user).strip()]
            kind = str(payload.get("type") or contract.DEFAULT_TYPE)
            message = payload.get("message", "")
            if not isinstance(message, str):
                message = json.dumps(message)
        except (ValueError, KeyError, TypeError, AttributeError):
            return web.json_response(
                {"message": 'expected {"userId": ..., "type": ..., "message": ...}'}, status=400
            )
        if not users:
            return web.json_response({"message": "userId required"}, status=400)
        try:
            message_id = await asyncio.to_thread(self.dev_tools.publish, users, kind, message)
        except Exception as error:
            log.exception("demo publish failed")
            return web.json_response({"message": str(error)}, status=502)
        log.info("demo publish message=%s to %s", message_id, ",".join(users))
        return web.json_response({"messageId": message_id})

    async def local_faults(self, request: web.Request) -> web.StreamResponse:
        """GET: the faults in force and what was injected; POST {"field": value}: change them."""
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object of fault fields")
                faults = self.faults.update(changes)
            except (ValueError, TypeError) as error:
                return web.json_response({"message": str(error)}, status=400)
            log.info("faults changed: %s", faults.describe())
        return web.json_response(self.faults.snapshot())


class _FrameLimit:
    """Stands between the connection and aiohttp's WebSocket parser: a data frame whose
    declared payload is over 32 KB fails the connection with 1009 before it is buffered.

    aiohttp limits whole messages only (max_msg_size); API Gateway also limits each frame.
    Only frame headers are read here; every byte still goes to aiohttp's parser.
    """

    def __init__(self, parser: Any, queue: Any, max_frame_bytes: int) -> None:
        self._parser = parser
        self._queue = queue
        self._max = max_frame_bytes
        self._header = bytearray()  # the current frame's header bytes, while incomplete
        self._skip = 0  # payload bytes of the current frame still to pass
        self._failed = False

    def feed_eof(self) -> None:
        self._parser.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        oversized = self._scan(bytes(data))
        if oversized is not None:
            self._failed = True
            set_exception(
                self._queue,
                WebSocketError(
                    WSCloseCode.MESSAGE_TOO_BIG,
                    f"Frame size {oversized} exceeds limit {self._max}",
                ),
            )
            return True, b""
        result: tuple[bool, bytes] = self._parser.feed_data(data)
        return result

    def _scan(self, data: bytes) -> int | None:
        """The payload length of an oversized data frame starting in `data`, if any."""
        position = 0
        while position < len(data):
            if self._skip:
                step = min(self._skip, len(data) - position)
                self._skip -= step
                position += step
                continue
            self._header.append(data[position])
            position += 1
            needed = _header_length(self._header)
            if needed is None or len(self._header) < needed:
                continue
            opcode, length = _frame_opcode_and_length(self._header)
            self._header.clear()
            if opcode in (0x0, 0x1, 0x2) and length > self._max:
                return length
            self._skip = length
        return None


def _header_length(header: bytearray) -> int | None:
    """Bytes of the frame header once its second byte is known (RFC 6455 section 5.2)."""
    if len(header) < 2:
        return None
    length_flag = header[1] & 0x7F
    extended = 2 if length_flag == 126 else 8 if length_flag == 127 else 0
    mask = 4 if header[1] & 0x80 else 0
    return 2 + extended + mask


def _frame_opcode_and_length(header: bytearray) -> tuple[int, int]:
    length_flag = header[1] & 0x7F
    if length_flag == 126:
        length = int.from_bytes(header[2:4], "big")
    elif length_flag == 127:
        length = int.from_bytes(header[2:10], "big")
    else:
        length = length_flag
    return header[0] & 0x0F, length


class _LimitedWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocketResponse with API Gateway's 32 KB frame limit (`_FrameLimit`)."""

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        super()._post_start(request, protocol, writer)
        connection = request.protocol
        parser = getattr(connection, "_payload_parser", None)
        queue = getattr(self, "_reader", None)
        if parser is None or queue is None:  # pragma: no cover - aiohttp internals moved
            log.warning("aiohttp internals changed: the 32 KB frame limit is not enforced")
            return
        connection._payload_parser = _FrameLimit(parser, queue, contract.MAX_FRAME_BYTES)


def select_route(body: str | bytes) -> str | None:
    """The route key `$request.body.action` selects, or None when the body names none."""
    prefix = "$request.body."
    expression = contract.ROUTE_SELECTION_EXPRESSION
    if not expression.startswith(prefix) or isinstance(body, bytes):
        return None
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    for part in expression[len(prefix) :].split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, str) else None


def _forwarded_headers(request: web.Request) -> list[tuple[str, str]]:
    # What API Gateway passes on from the handshake, plus the X-Forwarded-* it adds.
    headers = [(name, value) for name, value in request.headers.items()]
    port = request.url.port or 80
    headers += [
        ("X-Forwarded-For", request.remote or "127.0.0.1"),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", request.scheme),
    ]
    return headers


def _status_of(result: Any) -> int:
    # A proxy integration that returns no statusCode is treated as success, as API Gateway does.
    if isinstance(result, dict):
        status = result.get("statusCode", 200)
        try:
            return int(status)
        except (TypeError, ValueError):
            return 502
    return 200


def _header(result: Any, name: str) -> str | None:
    if not isinstance(result, dict):
        return None
    for key in ("headers", "multiValueHeaders"):
        for header, value in (result.get(key) or {}).items():
            if header.lower() == name.lower():
                return value[0] if isinstance(value, list) and value else str(value)
    return None


def _plain(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _request_id_header() -> dict[str, str]:
    return {"x-amzn-RequestId": events.new_invocation_id()}


def _aws_json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=_request_id_header())


def _aws_error(status: int, code: str, message: str) -> web.Response:
    """An error botocore's rest-json parser turns into ClientError with Error.Code == code."""
    headers = {**_request_id_header(), "x-amzn-ErrorType": code}
    return web.json_response({"message": message}, status=status, headers=headers)


def _payload_too_large() -> web.Response:
    return _aws_error(
        413,
        "PayloadTooLargeException",
        f"Message too long: limit is {contract.MAX_MESSAGE_BYTES} bytes",
    )


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _elapsed(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


_background_tasks: set[asyncio.Task[Any]] = set()


def _background(awaitable: Awaitable[Any]) -> None:
    # Keep a reference until done: the event loop holds tasks only weakly.
    task = asyncio.ensure_future(awaitable)
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)
