"""A lost $disconnect is repaired by the next publish; the local tools work on a live stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request

from functions.contract import jwt_secret_parameter_name
from infra.settings import load_project
from tests.e2e.clients import next_frame, open_client, run, to_user
from tests.e2e.conftest import ROOT, LocalStack


def test_a_vanished_client_is_removed_by_the_next_publish(lossy_stack: LocalStack, user) -> None:
    stack = lossy_stack
    ghost = user("ghost")

    async def vanish() -> str:
        ws = await open_client(stack.url(stack.token(ghost)))
        (connection_id,) = stack.sessions_of(ghost)
        # Gone without a close frame, as a phone losing its network.
        ws.transport.abort()
        return connection_id

    connection_id = run(vanish())
    stack.wait_for_log(f"conn={connection_id} $disconnect dropped")
    assert stack.session_exists(connection_id)

    message_id = stack.publish("anyone there?", to_user(ghost))
    stack.wait_for_log(f"@connections POST {connection_id} -> 410")
    stack.wait_published(message_id)
    assert not stack.session_exists(connection_id)
    assert stack.sessions_of(ghost) == []


def test_local_token_prints_a_token_the_stack_accepts(stack: LocalStack, user) -> None:
    alice = user("alice")
    printed = subprocess.run(
        [sys.executable, "-m", "local", "token", alice, "--state-dir", str(stack.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()

    async def scenario() -> None:
        async with open_client(stack.url(printed)) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}
        assert len(stack.sessions_of(alice)) <= 1

    run(scenario())


def test_local_token_says_when_no_stack_is_running(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local", "token", "alice", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "not running" in result.stderr


def test_the_demo_page_and_its_helpers(stack: LocalStack, user) -> None:
    alice = user("alice")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(stack.outputs["demoUrl"], timeout=10) as page:
        assert page.status == 200
        assert "<html" in page.read().decode().lower()
    token_url = f"{stack.outputs['demoUrl']}local/token?user={alice}"
    with opener.open(token_url, timeout=10) as response:
        issued = json.load(response)
    assert issued["websocketUrl"] == stack.outputs["websocketUrl"]

    async def scenario() -> None:
        async with open_client(stack.url(issued["token"])) as ws:
            body = json.dumps({"userId": alice, "type": "demo", "message": '{"n": 1}'}).encode()
            request = urllib.request.Request(
                f"{stack.outputs['demoUrl']}local/publish",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            response = await asyncio.to_thread(opener.open, request, timeout=10)
            message_id = json.load(response)["messageId"]
            frame = await next_frame(ws)
            assert frame["id"] == message_id
            assert frame["type"] == "demo"
            assert frame["data"] == {"n": 1}

    run(scenario())


def test_outputs_use_the_pulumi_output_names(stack: LocalStack) -> None:
    outputs = stack.outputs
    pulumi_names = {"websocketUrl", "managementEndpoint", "topicArn", "sessionsTable", "apiId",
                    "stage", "region", "jwtSecretParameter", "publishFunction",
                    "deadLetterQueueUrl", "deadLetterQueueArn",
                    "pendingDeliveriesTable"}  # fmt: skip
    local_extras = {"awsEndpointUrl", "demoUrl", "stack", "jwtIssuer", "jwtAudience"}
    assert pulumi_names | local_extras <= set(outputs)
    assert outputs["websocketUrl"] == outputs["managementEndpoint"].replace("http", "ws", 1)
    assert outputs["websocketUrl"].endswith("/" + outputs["stage"])
    project = load_project()["name"]
    assert outputs["jwtSecretParameter"] == jwt_secret_parameter_name(project, outputs["stack"])
