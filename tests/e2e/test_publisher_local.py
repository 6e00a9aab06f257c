"""The publisher library and CLI against the local stack: what they publish reaches clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from mentorassist import Notification, Publisher
from tests.e2e.clients import assert_envelope, next_frame, open_client, run
from tests.e2e.conftest import ROOT, LocalStack


def cli(stack: LocalStack, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m mentorassist ... --local` against the test stack's state dir."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mentorassist",
            *argv,
            "--local",
            "--state-dir",
            str(stack.state_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_send_reaches_the_users_client_as_the_envelope(stack: LocalStack, user) -> None:
    alice = user("alice")
    publisher = Publisher.local(stack.state_dir)

    async def scenario() -> None:
        async with open_client(stack.url(stack.token(alice))) as ws:
            payload = {"text": "Your mentor replied", "thread": 42}
            message_id = await asyncio.to_thread(publisher.send, alice, payload, type="chat")
            frame = await next_frame(ws)
            assert_envelope(frame, id=message_id, type="chat", data=payload)

            text_id = await asyncio.to_thread(publisher.send, [alice, user("nobody")], "plain")
            frame = await next_frame(ws)
            assert (frame["id"], frame["type"], frame["data"]) == (text_id, "notification", "plain")

    run(scenario())


def test_broadcast_and_batch_reach_their_clients(stack: LocalStack, user) -> None:
    alice, bob = user("alice"), user("bob")
    publisher = Publisher.local(stack.state_dir)

    async def scenario() -> None:
        async with (
            open_client(stack.url(stack.token(alice))) as alice_ws,
            open_client(stack.url(stack.token(bob))) as bob_ws,
        ):
            result = await asyncio.to_thread(
                publisher.send_batch,
                [
                    Notification.to(alice, {"n": 1}, type="chat"),
                    Notification.to(bob, {"n": 2}, type="chat"),
                    Notification.to([alice, bob], {"n": 3}, type="chat"),
                ],
            )
            assert result.ok
            first, second, both = result.message_ids
            alice_frames = [await next_frame(alice_ws) for _ in range(2)]
            bob_frames = [await next_frame(bob_ws) for _ in range(2)]
            # No order is promised across notifications.
            assert {(f["id"], f["data"]["n"]) for f in alice_frames} == {(first, 1), (both, 3)}
            assert {(f["id"], f["data"]["n"]) for f in bob_frames} == {(second, 2), (both, 3)}

            everyone = await asyncio.to_thread(publisher.broadcast, {"ops": "maintenance"})
            for ws in (alice_ws, bob_ws):
                frame = await next_frame(ws)
                assert frame["id"] == everyone
                assert frame["data"] == {"ops": "maintenance"}

    run(scenario())


def test_the_cli_send_local_reaches_a_client(stack: LocalStack, user) -> None:
    alice = user("alice")

    async def scenario() -> None:
        async with open_client(stack.url(stack.token(alice))) as ws:
            done = await asyncio.to_thread(
                cli, stack, "send", "--user", alice, "--type", "chat", '{"text": "hi"}'
            )
            assert done.returncode == 0, done.stderr
            message_id = done.stdout.strip()
            frame = await next_frame(ws)
            assert frame["id"] == message_id
            assert (frame["type"], frame["data"]) == ("chat", {"text": "hi"})

    run(scenario())


def test_the_cli_refuses_before_publishing(stack: LocalStack, user, tmp_path: Path) -> None:
    alice = user("alice")
    payload = tmp_path / "too-big.txt"
    payload.write_text("x" * 140_000)

    async def scenario() -> None:
        async with open_client(stack.url(stack.token(alice))) as ws:
            too_big = await asyncio.to_thread(
                cli, stack, "send", "--user", alice, "--data-file", str(payload)
            )
            assert too_big.returncode == 2
            assert "API Gateway delivers at most" in too_big.stderr
            assert too_big.stdout == ""
            # The next notification is the first this client sees: nothing was published.
            done = await asyncio.to_thread(cli, stack, "send", "--user", alice, json.dumps([1]))
            assert done.returncode == 0, done.stderr
            assert (await next_frame(ws))["id"] == done.stdout.strip()

    run(scenario())
