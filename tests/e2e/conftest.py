"""End-to-end fixtures: the local stack started as a user starts it, in a subprocess.

`local.process.LocalStackProcess` runs `python -m local up --port 0 --aws-port 0 --state-dir
<tmp>` until its `READY ` line and reads `outputs.json`; the fixtures here give tests that stack
with real clients (boto3 against the emulator, the `websockets` library against the gateway)
and a few table reads, and a failed test shows the stack's log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions import contract
from local.process import ROOT, LocalStackProcess

__all__ = ["ROOT", "LocalStack"]


class LocalStack(LocalStackProcess):
    """The stack process plus what the end-to-end tests read from it."""

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
        return self.session(connection_id) is not None

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
