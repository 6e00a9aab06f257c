from __future__ import annotations

import base64
import json

import pytest

from functions import default
from tests.unit import events


def reply(body: str | None, **kwargs: bool) -> tuple[int, dict[str, str]]:
    result = default.handler(events.message_event(body, **kwargs), None)
    return result["statusCode"], json.loads(result["body"])


def test_ping_answers_pong() -> None:
    assert reply('{"action": "ping"}') == (200, {"type": "pong"})


def test_ping_with_extra_fields_answers_pong() -> None:
    assert reply('{"action": "ping", "nonce": 3}') == (200, {"type": "pong"})


def test_binary_frame_holding_a_ping_answers_pong() -> None:
    body = base64.b64encode(b'{"action":"ping"}').decode()
    assert reply(body, base64_encoded=True) == (200, {"type": "pong"})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        (None, "invalid_json"),
        ('{"action": "ping"', "invalid_json"),
        ('["ping"]', "invalid_message"),
        ('"ping"', "invalid_message"),
        ("null", "invalid_message"),
        ("{}", "missing_action"),
        ('{"action": "subscribe"}', "unknown_action"),
        ('{"action": 1}', "unknown_action"),
        ('{"action": "PING"}', "unknown_action"),
    ],
)
def test_anything_else_answers_an_error_frame(body: str | None, code: str) -> None:
    status, frame = reply(body)
    assert status == 400
    assert frame["type"] == "error"
    assert frame["code"] == code
    assert isinstance(frame["message"], str) and frame["message"]


def test_binary_frame_that_is_not_utf8_json_answers_an_error_frame() -> None:
    body = base64.b64encode(b"\xff\xfe\x00").decode()
    assert reply(body, base64_encoded=True)[1]["code"] == "invalid_json"
