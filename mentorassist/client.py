"""The Python reference client of docs/PROTOCOL.md, on asyncio and `websockets`.

    client = NotificationClient(websocket_url, token_provider=fetch_token)
    client.on("chat", lambda note: print(note.data))
    client.on_state(lambda state: print("state:", state))
    await client.start()          # connects in the background; reconnects on its own
    ...
    await client.close()

What it does, in the protocol's words: the token goes in the `token` query parameter and is
asked for again before every attempt; reconnects use jittered exponential backoff; a handshake
refused with 401 or 403 stops it (state `unauthorized`) until `start()` is called again; it
sends `{"action":"ping"}` every `ping_interval` and treats a missing answer as a dead
connection; it reconnects on its own before API Gateway's 2-hour cap; and it drops a
notification whose `id` it has seen recently.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("mentorassist.client")

CONNECTING, OPEN, RECONNECTING, UNAUTHORIZED, CLOSED = (
    "connecting",
    "open",
    "reconnecting",
    "unauthorized",
    "closed",
)
REFUSED_STATUSES = (401, 403)  # the token will not get better by retrying
PING_FRAME = json.dumps({"action": "ping"})
# A connection counts as healthy (the backoff starts over) once it has received a frame or
# stayed open this long: a server that accepts and closes at once cannot cause a tight loop.
STABLE_AFTER_SECONDS = 30.0

TokenProvider = Callable[[], "str | Awaitable[str]"]


@dataclass(frozen=True)
class Envelope:
    """One notification as delivered: `{"id", "type", "data", "sentAt"}`."""

    id: str
    type: str
    data: Any
    sent_at: str | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits random(0, min(cap, base * 2**n))."""

    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 32)))


class RecentIds:
    """A bounded set of the most recently seen ids (oldest forgotten first)."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, notification_id: str) -> bool:
        """True if the id was seen before; remembers it either way."""
        if notification_id in self._ids:
            self._ids.move_to_end(notification_id)
            return True
        self._ids[notification_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)


class NotificationClient:
    def __init__(
        self,
        url: str,
        token_provider: TokenProvider,
        *,
        ping_interval: float = 5 * 60,
        pong_timeout: float = 30,
        max_connection_age: float = 110 * 60,
        backoff: Backoff | None = None,
        dedupe_size: int = 1000,
        open_timeout: float = 10,
    ) -> None:
        self.url = url
        self.token_provider = token_provider
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.backoff = backoff or Backoff()
        self.open_timeout = open_timeout
        self.recent = RecentIds(dedupe_size)
        self.state = CLOSED
        self._by_type: dict[str, list[Callable[[Envelope], Any]]] = {}
        self._any: list[Callable[[Envelope], Any]] = []
        self._state_callbacks: list[Callable[[str], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._closing = False
        self._pong = asyncio.Event()

    # --- subscriptions ----------------------------------------------------------------------

    def on(self, event_type: str, callback: Callable[[Envelope], Any]) -> None:
        """Call `callback(envelope)` for each new notification of this type."""
        self._by_type.setdefault(event_type, []).append(callback)

    def on_any(self, callback: Callable[[Envelope], Any]) -> None:
        """Call `callback(envelope)` for each new notification, whatever its type."""
        self._any.append(callback)

    def on_state(self, callback: Callable[[str], Any]) -> None:
        """Call `callback(state)` on every state change."""
        self._state_callbacks.append(callback)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background (again, after `unauthorized` or `close()`)."""
        if self._task is not None and not self._task.done():
            return
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="mentorassist-client")

    async def wait_closed(self) -> None:
        """Until the client stops: `close()` or a refused token."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Close the connection (1000) and stop reconnecting."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close(1000, "client closing")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._set_state(CLOSED)

    # --- the connection loop ----------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            await self._set_state(CONNECTING)
            try:
                token = await _maybe_await(self.token_provider())
                async with connect(
                    _with_token(self.url, token),
                    proxy=None,
                    open_timeout=self.open_timeout,
                    ping_interval=None,  # the protocol's JSON ping, not WebSocket pings
                ) as ws:
                    self._ws = ws
                    if await self._serve(ws):
                        attempt = 0
            except InvalidStatus as refused:
                status = refused.response.status_code
                if status in REFUSED_STATUSES:
                    log.warning("handshake refused (%s): not reconnecting", status)
                    await self._set_state(UNAUTHORIZED)
                    return
                log.warning("handshake failed (%s): retrying", status)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # network, TLS, timeout, token provider failures
                log.warning("connection failed: %r", error)
            finally:
                self._ws = None
            if self._closing:
                break
            await self._set_state(RECONNECTING)
            delay = self.backoff.delay(attempt)
            attempt += 1
            log.info("reconnecting in %.2fs (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> bool:
        """Read frames until the connection ends; True if it was healthy for a while."""
        await self._set_state(OPEN)
        loop = asyncio.get_running_loop()
        opened = loop.time()
        received = False
        keepalive = asyncio.create_task(self._keepalive(ws))
        try:
            async for frame in ws:
                received = True
                await self._handle(frame)
        except ConnectionClosed:
            pass
        finally:
            keepalive.cancel()
        log.info("connection closed: %s %s", ws.close_code, ws.close_reason or "")
        return received or loop.time() - opened >= STABLE_AFTER_SECONDS

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping every `ping_interval`; close a connection that stops answering, or that
        reaches `max_connection_age` (jittered, so clients spread their reconnects out)."""
        loop = asyncio.get_running_loop()
        retire_at = loop.time() + self.max_connection_age * random.uniform(0.95, 1.0)
        try:
            while True:
                await asyncio.sleep(max(0.0, min(self.ping_interval, retire_at - loop.time())))
                if loop.time() >= retire_at:
                    await ws.close(1000, "reconnecting before the 2-hour cap")
                    return
                self._pong.clear()
                await ws.send(PING_FRAME)
                try:
                    await asyncio.wait_for(self._pong.wait(), self.pong_timeout)
                except TimeoutError:
                    log.warning(
                        "no answer within %ss: closing a dead connection", self.pong_timeout
                    )
                    await ws.close(1001, "no pong")
                    return
        except ConnectionClosed:
            return

    async def _handle(self, frame: str | bytes) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            log.warning("ignored a frame that is not JSON")
            return
        if not isinstance(message, dict):
            return
        self._pong.set()  # any frame proves the connection is alive
        if "id" not in message:
            if message.get("type") != "pong":
                log.warning("server reply: %s", message)
            return
        if self.recent.seen(str(message["id"])):
            log.debug("dropped duplicate %s", message["id"])
            return
        envelope = Envelope(
            id=str(message["id"]),
            type=str(message.get("type") or "notification"),
            data=message.get("data"),
            sent_at=message.get("sentAt"),
            raw=message,
        )
        for callback in [*self._by_type.get(envelope.type, []), *self._any]:
            await _call(callback, envelope)

    async def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        for callback in self._state_callbacks:
            await _call(callback, state)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _call(callback: Callable[[Any], Any], argument: Any) -> None:
    # An application's callback must not take the connection down.
    try:
        await _maybe_await(callback(argument))
    except Exception:
        log.exception("callback %r failed", callback)


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("token", token)])))
