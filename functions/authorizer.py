"""`$connect` REQUEST authorizer: who is this client?

The token comes from the `token` query parameter only (browsers cannot set headers on a
WebSocket, and a header or subprotocol must never be able to name a user). A valid token
allows the connection and passes its user id on as the flat, string-valued authorizer context
that API Gateway hands to every route of the connection.

A missing or invalid token raises `Exception("Unauthorized")`, API Gateway's convention for
answering 401 (a Deny policy would answer 403, which tells a client its identity was accepted
but not permitted). Any other error (SSM unreachable, secret not configured) propagates and
ends as a 500: it is an operations problem, it shows in the function's error metric, and the
connection is refused either way.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from functions import aws, contract, environment, tokens

logger = logging.getLogger(__name__)

_secrets: dict[str, str] = {}
_secrets_lock = threading.Lock()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get(contract.TOKEN_QUERY_PARAMETER)
    route_context = event.get("requestContext") or {}
    log_fields = {"connectionId": route_context.get("connectionId")}
    if not token:
        logger.warning("refused connection: no token", extra={**log_fields, "reason": "missing"})
        raise Exception("Unauthorized")
    try:
        user_id = tokens.verify_token(
            token,
            signing_secret(),
            issuer=environment.optional(contract.ENV_JWT_ISSUER),
            audience=environment.optional(contract.ENV_JWT_AUDIENCE),
        )
    except tokens.InvalidToken as invalid:
        # The reason is a fixed code; the token itself is a credential and is never logged.
        logger.warning(
            "refused connection: invalid token", extra={**log_fields, "reason": invalid.reason}
        )
        raise Exception("Unauthorized") from None
    logger.info("allowed connection", extra={**log_fields, "userId": user_id})
    return allow(user_id, event["methodArn"])


def allow(user_id: str, method_arn: str) -> dict[str, Any]:
    return {
        "principalId": user_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}
            ],
        },
        "context": {contract.AUTHORIZER_CONTEXT_USER_ID: user_id},
    }


def signing_secret() -> str:
    """The HS256 key, read from SSM once per container (per parameter name)."""
    name = environment.required(contract.ENV_JWT_SECRET_PARAMETER)
    secret = _secrets.get(name)
    if secret is None:
        with _secrets_lock:
            secret = _secrets.get(name)
            if secret is None:
                response = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
                secret = response["Parameter"]["Value"]
                _secrets[name] = secret
    return secret


def reset_secret_cache() -> None:
    """Forget the cached key, e.g. after a test or a local stack rotated it."""
    with _secrets_lock:
        _secrets.clear()
