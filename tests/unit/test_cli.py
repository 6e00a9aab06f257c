"""`python -m mentorassist`: what it publishes, what it prints, and its exit status."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mentorassist import cli
from tests.unit.test_publisher import Topic, attributes_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def topic(moto: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Topic:
    topic = Topic()
    monkeypatch.setenv("MENTORASSIST_TOPIC_ARN", topic.arn)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi CLI
    return topic


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_send_publishes_and_prints_the_message_id(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "send", "--user", "alice", "--user", "bob", "--type", "chat", '{"text": "hi"}'
    )
    assert (code, err) == (0, "")
    published = topic.only()
    assert out == published["MessageId"] + "\n"
    assert published["Message"] == '{"text": "hi"}'  # as given: the handler parses JSON
    assert attributes_of(published) == {
        "userId": ("String.Array", '["alice", "bob"]'),
        "type": ("String", "chat"),
    }


def test_send_text_and_an_id(topic: Topic, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "send", "--user", "alice", "--id", "n-7", "hello there")
    assert code == 0
    published = topic.only()
    assert published["Message"] == "hello there"
    assert attributes_of(published) == {
        "userId": ("String", "alice"),
        "notificationId": ("String", "n-7"),
    }


def test_broadcast(topic: Topic, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "broadcast", "--type", "ops", "Maintenance at 22:00 UTC")
    assert code == 0
    published = topic.only()
    assert out.strip() == published["MessageId"]
    assert attributes_of(published) == {"broadcast": ("String", "all"), "type": ("String", "ops")}


def test_data_file_and_stdin(
    topic: Topic,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"sessionId": "s-42"}', encoding="utf-8")
    assert run(capsys, "send", "--user", "alice", "--data-file", str(payload))[0] == 0
    assert topic.only()["Message"] == '{"sessionId": "s-42"}'

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    assert run(capsys, "send", "--user", "alice", "--data-file", "-")[0] == 0
    assert topic.only()["Message"] == "from stdin"


def test_text_that_looks_like_json_needs_text(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(capsys, "send", "--user", "alice", "--text", "[not json]")
    assert code == 0
    assert topic.only()["Message"] == "[not json]"


def test_topic_arn_option_wins(topic: Topic, capsys: pytest.CaptureFixture[str]) -> None:
    other = topic.sns.create_topic(Name="other")["TopicArn"]
    code, _, _ = run(
        capsys, "send", "--topic-arn", other, "--region", "us-east-1", "--user", "a", "x"
    )
    assert code == 0
    assert topic.published() == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["send", "--user", "alice", ""], "empty"),
        (["send", "--user", " ", "x"], "non-empty strings"),
        (["send", "--user", "alice", "--type", "", "x"], "type must be a non-empty string"),
        (["send", "--user", "alice", "x" * 140_000], "API Gateway delivers at most"),
        (["send", "--user", "alice", "--data-file", "/nonexistent/payload"], "cannot read"),
        (["send", "--user", "alice", '{"text": hi}'], "not valid JSON"),
        (["broadcast", "[1, 2"], "--text sends it as text"),
        (["send", "--user", "alice", "--state-dir", "/tmp", "x"], "--state-dir needs --local"),
        (["send", "--local", "--topic-arn", "arn:x", "--user", "a", "x"], "--local takes"),
    ],
)
def test_invalid_input_exits_2_with_the_reason(
    topic: Topic, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert fragment in err
    assert topic.published() == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["send", "x"], "--user"),
        (["send", "--user", "alice"], "one of the arguments data --data-file is required"),
        (["send", "--user", "a", "--data-file", "f", "x"], "not allowed with"),
        (["shout", "--user", "a", "x"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert fragment in capsys.readouterr().err


def test_no_topic_exits_2_and_names_the_options(
    moto: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MENTORASSIST_TOPIC_ARN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run(capsys, "send", "--user", "alice", "x")
    assert code == 2
    assert "--topic-arn" in err and "MENTORASSIST_TOPIC_ARN" in err and "--local" in err


def test_local_without_a_running_stack_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "send", "--local", "--state-dir", str(tmp_path), "--user", "a", "x")
    assert code == 2
    assert "local stack is not running" in err


def test_an_aws_error_exits_1(topic: Topic, capsys: pytest.CaptureFixture[str]) -> None:
    missing = topic.arn.rsplit(":", 1)[0] + ":no-such-topic"
    code, out, err = run(capsys, "send", "--topic-arn", missing, "--user", "alice", "x")
    assert (code, out) == (1, "")
    assert "NotFound" in err


def _python_m(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(
        [sys.executable, "-m", "mentorassist", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_python_m_mentorassist_exit_codes() -> None:
    done = _python_m("send", "--help")
    assert done.returncode == 0
    assert "--data-file" in done.stdout and "--local" in done.stdout

    done = _python_m("send", "--user", "alice", "--topic-arn", "arn:aws:sns:us-east-1:1:t", "")
    assert done.returncode == 2
    assert "empty" in done.stderr

    # SNS unreachable (nothing listens on the endpoint): an AWS error, not a crash.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = _python_m(
        "send",
        "--user",
        "alice",
        "--topic-arn",
        "arn:aws:sns:us-east-1:123456789012:t",
        "--endpoint-url",
        f"http://127.0.0.1:{port}",
        json.dumps({"text": "hi"}),
        env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1"},
    )
    assert done.returncode == 1, done.stderr
    assert "error: could not reach SNS" in done.stderr
    assert "Traceback" not in done.stderr


def test_replay_is_handed_to_mentorassist_replay_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mentorassist import replay

    received: list[list[str]] = []
    monkeypatch.setattr(replay, "main", lambda argv: received.append(list(argv)) or 0)
    argv = ["--queue-url", "https://q", "--topic-arn", "arn:t", "--dry-run"]
    assert cli.main(["replay", *argv]) == 0
    assert received == [argv]
