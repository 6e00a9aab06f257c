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
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from botocore.config import Config

from functions import contract
from functions.tokens import issue_token

ROOT = Path(__file__).resolve().parents[1]
READY_PREFIX = "READY "
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class LocalStack:
    """A running `python -m local up --port 0 --aws-port 0`, started and waited for like the
    end-to-end tests do (its `READY ` line, then outputs.json)."""

    def __init__(self, state_dir: Path, *flags: str, timeout: float = 90) -> None:
        self.state_dir = state_dir
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "local", "up", "--port", "0", "--aws-port", "0"),
                *("--state-dir", str(state_dir), *flags),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            tail = "\n".join(self.lines[-40:])
            raise RuntimeError(f"the local stack did not become ready:\n{tail}")
        self.outputs: dict[str, str] = json.loads((state_dir / "outputs.json").read_text())
        self._secret: str | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            # Keep only a tail: a stack logs a few lines per connection and per post.
            self.lines.append(line.rstrip("\n"))
            if len(self.lines) > 2000:
                del self.lines[:1000]
            if line.startswith(READY_PREFIX):
                self._ready.set()
        self._ready.set()

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode

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

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.outputs["awsEndpointUrl"],
            region_name=self.outputs["region"],
            config=Config(retries={"max_attempts": 1}, **config),
            **CREDENTIALS,
        )

    def management(self, **config: Any) -> Any:
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.outputs["managementEndpoint"],
            region_name=self.outputs["region"],
            config=Config(retries={"max_attempts": 1}, **config),
            **CREDENTIALS,
        )

    def token(self, user_id: str) -> str:
        if self._secret is None:
            name = self.outputs["jwtSecretParameter"]
            parameter = self.client("ssm").get_parameter(Name=name, WithDecryption=True)
            self._secret = parameter["Parameter"]["Value"]
        return issue_token(
            user_id,
            self._secret,
            ttl_seconds=3600,
            issuer=self.outputs.get("jwtIssuer") or None,
            audience=self.outputs.get("jwtAudience") or None,
        )

    def url(self, token: str) -> str:
        return f"{self.outputs['websocketUrl']}?{contract.TOKEN_QUERY_PARAMETER}={token}"

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change the stack's injected faults while it runs (`/local/faults`)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            self.outputs["demoUrl"] + "local/faults",
            data=json.dumps(changes).encode(),
            headers={"Content-Type": "application/json"},
        )
        with opener.open(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

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
