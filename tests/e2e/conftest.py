"""End-to-end fixtures: the local stack started as a user starts it, in a subprocess.

`python -m local up --port 0 --aws-port 0 --state-dir <tmp>` runs until its `READY ` line; the
fixture then reads `outputs.json` and gives tests real clients (boto3 against the emulator, the
`websockets` library against the gateway). Its output is collected line by line, so a test can
wait for something the stack logs (an event, never a sleep), and a failed test shows the log.
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
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from functions import contract
from functions.tokens import issue_token

ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "READY "
STARTUP_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class LocalStack:
    """A running `python -m local up` process and what it wrote to outputs.json."""

    def __init__(self, state_dir: Path, flags: tuple[str, ...]) -> None:
        self.state_dir = state_dir
        self.flags = flags
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local",
                "up",
                "--port",
                "0",
                "--aws-port",
                "0",
                "--state-dir",
                str(state_dir),
                *flags,
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

    def start(self) -> None:
        self.wait_for_line(lambda line: line.startswith(READY_PREFIX), STARTUP_TIMEOUT_SECONDS)
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
        return boto3.client(
            service,
            endpoint_url=self.outputs["awsEndpointUrl"],
            region_name=self.outputs["region"],
            config=Config(retries={"max_attempts": 1}),
            **CREDENTIALS,
            **kwargs,
        )

    def management(self) -> Any:
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.outputs["managementEndpoint"],
            region_name=self.outputs["region"],
            config=Config(retries={"max_attempts": 1}),
            **CREDENTIALS,
        )

    def secret(self) -> str:
        ssm = self.client("ssm")
        name = self.outputs["jwtSecretParameter"]
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]

    def token(self, user_id: str, **kwargs: Any) -> str:
        return issue_token(user_id, self.secret(), **kwargs)

    def url(self, token: str | None) -> str:
        base = self.outputs["websocketUrl"]
        return base if token is None else f"{base}?{contract.TOKEN_QUERY_PARAMETER}={token}"

    def sessions_of(self, user_id: str) -> list[str]:
        """Connection ids the sessions table holds for a user (through the user index)."""
        dynamodb = self.client("dynamodb")
        response = dynamodb.query(
            TableName=self.outputs["sessionsTable"],
            IndexName=contract.USER_INDEX,
            KeyConditionExpression="#u = :u",
            ExpressionAttributeNames={"#u": contract.USER_ID},
            ExpressionAttributeValues={":u": {"S": user_id}},
        )
        return [item[contract.CONNECTION_ID]["S"] for item in response["Items"]]

    def session_exists(self, connection_id: str) -> bool:
        dynamodb = self.client("dynamodb")
        response = dynamodb.get_item(
            TableName=self.outputs["sessionsTable"],
            Key={contract.CONNECTION_ID: {"S": connection_id}},
            ConsistentRead=True,
        )
        return "Item" in response

    def session(self, connection_id: str) -> dict[str, Any] | None:
        """The connection's row in the sessions table (a consistent read), or None."""
        dynamodb = self.client("dynamodb")
        response = dynamodb.get_item(
            TableName=self.outputs["sessionsTable"],
            Key={contract.CONNECTION_ID: {"S": connection_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else item

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

    def publish(self, message: str, attributes: dict[str, Any]) -> str:
        sns = self.client("sns")
        response = sns.publish(
            TopicArn=self.outputs["topicArn"], Message=message, MessageAttributes=attributes
        )
        return response["MessageId"]

    def wait_published(self, message_id: str) -> str:
        """The delivery's log line once the publish handler has finished with a message."""
        return self.wait_for_log(f"publish message={message_id}")


# Stacks started and not yet stopped: a failed test shows their logs.
RUNNING: list[LocalStack] = []


def _start(tmp_path_factory: pytest.TempPathFactory, *flags: str) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("local-stack"), flags)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        print(stack.log_text())
        raise
    RUNNING.append(stack)
    try:
        yield stack
    finally:
        RUNNING.remove(stack)
        returncode = stack.stop()
    # Ctrl-C stops cleanly and takes outputs.json away (so `local token` says "not running").
    assert returncode == 0, stack.log_text()
    assert not (stack.state_dir / "outputs.json").exists()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from _start(tmp_path_factory)


@pytest.fixture(scope="session")
def lossy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose gateway never runs $disconnect, as when AWS's best effort fails.

    No connecting grace: its tests make clients vanish milliseconds after they connected, and
    the row of such a client goes at the first 410 (the grace itself is unit-tested).
    """
    yield from _start(tmp_path_factory, "--drop-disconnect", "--connecting-grace-seconds", "0")


# A stack whose token issuer and audience are set from the command line (no secret involved).
STRICT_ISSUER = "https://issuer.e2e.invalid"
STRICT_AUDIENCE = "mentorassist-e2e"


@pytest.fixture(scope="module")
def strict_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack that requires a token issuer and audience."""
    yield from _start(
        tmp_path_factory, "--jwt-issuer", STRICT_ISSUER, "--jwt-audience", STRICT_AUDIENCE
    )


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalStack]]:
    """Start stacks with the given flags (stopped at the end of the module)."""
    started: list[Iterator[LocalStack]] = []

    def start(*flags: str) -> LocalStack:
        running = _start(tmp_path_factory, *flags)
        started.append(running)
        return next(running)

    yield start
    for running in reversed(started):
        next(running, None)


@pytest.fixture
def user() -> Callable[[str], str]:
    """Unique user ids per test, so tests never see each other's connections."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        stacks = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, LocalStack)]
        stacks += [stack for stack in RUNNING if stack not in stacks]
        for stack in stacks:
            tail = "\n".join(stack.lines[-200:])
            report.sections.append((f"local stack log {stack.flags or ''}", tail))
