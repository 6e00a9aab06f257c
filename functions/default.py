"""`$default`: frames from the client.

`{"action": "ping"}` answers `{"type": "pong"}` (keeps a connection past API Gateway's idle
timeout). Everything else answers an error frame naming what was wrong; a client can never make
this function raise. The route has a route response, so the returned body is the reply.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from functions import contract

logger = logging.getLogger(__name__)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connection_id = (event.get("requestContext") or {}).get("connectionId")
    try:
        text = _body_text(event)
        message = json.loads(text)
    except (ValueError, binascii.Error):
        return _error("invalid_json", "the message must be a JSON object", connection_id)
    if not isinstance(message, dict):
        return _error("invalid_message", "the message must be a JSON object", connection_id)
    action = message.get("action")
    if action is None:
        return _error("missing_action", 'the message needs an "action"', connection_id)
    if action == contract.PING_ACTION:
        return {"statusCode": 200, "body": json.dumps({"type": "pong"})}
    return _error(
        "unknown_action",
        f'unknown action; supported: "{contract.PING_ACTION}"',
        connection_id,
    )


def _body_text(event: dict[str, Any]) -> str:
    body = event.get("body")
    if body is None:
        raise ValueError("no body")
    if event.get("isBase64Encoded"):
        # A binary frame: accepted only if it decodes to UTF-8 JSON like a text frame.
        return base64.b64decode(body, validate=True).decode("utf-8")
    return body


def _error(code: str, message: str, connection_id: str | None) -> dict[str, Any]:
    logger.info("rejected client frame", extra={"connectionId": connection_id, "code": code})
    return {
        "statusCode": 400,
        "body": json.dumps({"type": "error", "code": code, "message": message}),
    }
