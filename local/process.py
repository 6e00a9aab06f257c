"""The local stack as a child process, started and stopped the way a user does it.

`python -m local up --port 0 --aws-port 0 --state-dir DIR` runs until it prints its `READY `
line; `outputs.json` then names everything. Tests and the benchmark drive the stack through
this class: its output is collected line by line, so a caller can wait for something the stack
logs (an event, never a sleep), and clients come preconfigured for the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from functions import contract
from functions.tokens import issue_token

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "READY "
STARTUP_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
# The emulator takes any credentials; these make its callers obvious in a log.
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class LocalStackProcess:
    """A running `python -m local up` process and what it wrote to outputs.json."""

    def __init__(self, state_dir: Path, flags: Sequence[str] = ()) -> None:
        self.state_dir = state_dir
        self.flags = tuple(flags)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "local", "up", "--port", "0", "--aws-port", "0"),
                *("--state-dir", str(state_dir), *self.flags),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.outputs: dict[str, str] = {}
        self._secret: str | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # --- waiting on the log ---------------------------------------------------------------

    def wait_for_line(
        self, predicate: Callable[[str], bool], timeout: float = 15, start: int = 0
    ) -> str:
        """The first line from index `start` on that satisfies `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            index = start
            while True:
                while index < len(self.lines):
                    if predicate(self.lines[index]):
                        return self.lines[index]
                    index += 1
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"the stack exited ({self.process.returncode})")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for a log line")
                self._changed.wait(remaining)

    def wait_for_log(self, *fragments: str, timeout: float = 15) -> str:
        return self.wait_for_line(lambda line: all(f in line for f in fragments), timeout)

    def log_text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    # --- life cycle -----------------------------------------------------------------------

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Wait until the stack accepts traffic, then read its outputs."""
        self.wait_for_line(lambda line: line.startswith(READY_PREFIX), timeout)
        self.outputs = json.loads((self.state_dir / "outputs.json").read_text())

    def stop(self) -> int:
        if self.process.poll() is None:
            # Ctrl-C, as a user stops it.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode

    # --- clients --------------------------------------------------------------------------

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of the emulator; no retries, so a fault shows as it happened."""
        settings: dict[str, Any] = {
            "endpoint_url": self.outputs["awsEndpointUrl"],
            "region_name": self.outputs["region"],
            "config": Config(retries={"max_attempts": 1}),
            **CREDENTIALS,
        }
        return boto3.client(service, **{**settings, **kwargs})

    def management(self) -> Any:
        """A boto3 client of the gateway's `@connections` API."""
        return self.client(
            "apigatewaymanagementapi", endpoint_url=self.outputs["managementEndpoint"]
        )

    def secret(self) -> str:
        if self._secret is None:
            name = self.outputs["jwtSecretParameter"]
            parameter = self.client("ssm").get_parameter(Name=name, WithDecryption=True)
            self._secret = parameter["Parameter"]["Value"]
        return self._secret

    def token(self, user_id: str, **kwargs: Any) -> str:
        """A token for the user, valid on this stack (its issuer and audience unless given)."""
        kwargs.setdefault("issuer", self.outputs.get("jwtIssuer") or None)
        kwargs.setdefault("audience", self.outputs.get("jwtAudience") or None)
        return issue_token(user_id, self.secret(), **kwargs)

    def url(self, token: str | None) -> str:
        base = self.outputs["websocketUrl"]
        return base if token is None else f"{base}?{contract.TOKEN_QUERY_PARAMETER}={token}"

    def faults(self, **changes: Any) -> dict[str, Any]:
        """The stack's injected faults (and counts); with changes, change them first."""
        url = self.outputs["demoUrl"] + "local/faults"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(changes).encode() if changes else None
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        )
        with opener.open(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result
