"""`$connect`: remember the connection and whose it is.

Runs after the authorizer, so the user id comes from the authorizer's context (the verified
token), never from the request itself.
"""

from __future__ import annotations

import logging
from typing import Any

from functions import contract, sessions

logger = logging.getLogger(__name__)

SUBPROTOCOL_HEADER = "Sec-WebSocket-Protocol"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_context = event["requestContext"]
    connection_id = request_context["connectionId"]
    authorizer = request_context.get("authorizer") or {}
    user_id = authorizer.get(contract.AUTHORIZER_CONTEXT_USER_ID)
    if not isinstance(user_id, str) or not user_id:
        # Only reachable if the route was deployed without the authorizer: refuse, store nothing.
        logger.error("connect without an authorized user id", extra={"connectionId": connection_id})
        return {"statusCode": 403}

    sessions.put_session(connection_id, user_id)
    logger.info("connected", extra={"connectionId": connection_id, "userId": user_id})

    # API Gateway does not answer the subprotocol handshake itself; a client that offered
    # subprotocols (e.g. browsers smuggling a value there) fails unless one is echoed back.
    offered = _offered_subprotocols(event.get("headers") or {})
    if offered:
        return {"statusCode": 200, "headers": {SUBPROTOCOL_HEADER: offered[0]}}
    return {"statusCode": 200}


def _offered_subprotocols(headers: dict[str, str]) -> list[str]:
    wanted = SUBPROTOCOL_HEADER.lower()
    for name, value in headers.items():
        if name.lower() == wanted and value:
            return [item.strip() for item in value.split(",") if item.strip()]
    return []
