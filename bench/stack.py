"""The local stack as a subprocess (`python -m local up`), and many WebSocket clients held by
one lightweight asyncio client pool in the benchmark process.

The clients run on an event loop of their own (a background thread), so the benchmark's
blocking boto3 calls never stall them; every frame a client receives is timestamped on arrival
with `time.perf_counter()` and recorded by its envelope id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiohttp

from functions import contract
from local.process import LocalStackProcess


class LocalStack(LocalStackProcess):
    """The stack process, started and waited for like the end-to-end tests do, plus what the
    benchmark reads from it (memory and CPU of the process, a user's connections)."""

    def __init__(self, state_dir: Path, *flags: str, timeout: float = 90) -> None:
        super().__init__(state_dir, flags)
        try:
            self.start(timeout)
        except BaseException:
            self.stop()
            tail = "\n".join(self.lines[-40:])
            raise RuntimeError(f"the local stack did not become ready:\n{tail}") from None

    # --- what the benchmark reads -------------------------------------------------------------

    def rss_bytes(self) -> int:
        """Resident memory of the stack process (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """CPU time the stack process has used (user + system, every thread)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def connection_ids(self, user_id: str) -> list[str]:
        """The user's connection ids, from the user index (every page)."""
        dynamodb = self.client("dynamodb")
        request: dict[str, Any] = {
            "TableName": self.outputs["sessionsTable"],
            "IndexName": contract.USER_INDEX,
            "KeyConditionExpression": "#u = :u",
            "ExpressionAttributeNames": {"#u": contract.USER_ID},
            "ExpressionAttributeValues": {":u": {"S": user_id}},
        }
        found: list[str] = []
        while True:
            page = dynamodb.query(**request)
            found += [item[contract.CONNECTION_ID]["S"] for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Clients:
    """WebSocket clients on a private event loop; frames are recorded as (id, arrival time)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task[None]] = []
        self._changed = threading.Condition()
        # envelope id -> arrival times (perf_counter seconds), and all frames counted.
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.frames = 0
        self.failed_connects = 0
        self.closed = 0

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result()

    @property
    def count(self) -> int:
        return len(self._sockets)

    def open(self, urls: Sequence[str], parallel: int = 32) -> float:
        """Open one connection per URL, `parallel` handshakes at a time; returns seconds."""
        return float(self._run(self._open(list(urls), parallel)))

    async def _open(self, urls: list[str], parallel: int) -> float:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            )
        started = time.perf_counter()
        gate = asyncio.Semaphore(parallel)

        async def one(url: str) -> None:
            async with gate:
                try:
                    ws = await self._session.ws_connect(  # type: ignore[union-attr]
                        url, autoping=True, heartbeat=None, max_msg_size=0, compress=0
                    )
                except (TimeoutError, aiohttp.ClientError, OSError):
                    self.failed_connects += 1
                    return
                self._sockets.append(ws)
                self._readers.append(asyncio.create_task(self._read(ws)))

        await asyncio.gather(*(one(url) for url in urls))
        return time.perf_counter() - started

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            now = time.perf_counter()
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame_id = json.loads(message.data).get("id")
            except (ValueError, AttributeError):
                frame_id = None
            with self._changed:
                self.frames += 1
                if frame_id is not None:
                    self.arrivals[frame_id].append(now)
                self._changed.notify_all()
        self.closed += 1

    def wait_for(self, frame_id: str, count: int = 1, timeout: float = 30) -> list[float]:
        """Arrival times of the first `count` copies of a frame (fewer on timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.arrivals.get(frame_id, ())) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return list(self.arrivals.get(frame_id, ()))

    def wait_frames(self, total: int, timeout: float) -> int:
        """Wait until `total` frames have arrived overall; returns the count reached."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.frames < total:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self.frames

    def close(self) -> None:
        async def shut() -> None:
            for task in self._readers:
                task.cancel()
            await asyncio.gather(*(ws.close() for ws in self._sockets), return_exceptions=True)
            if self._session is not None:
                await self._session.close()

        with contextlib.suppress(Exception):  # closing is best effort
            self._run(asyncio.wait_for(shut(), 60))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
