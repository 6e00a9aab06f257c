"""API Gateway WebSocket event shapes, as AWS delivers them to Lambda.

Builders only: the gateway decides when each event is sent. Shapes follow the events API Gateway
sends for a WebSocket API with Lambda proxy integrations and a REQUEST authorizer, trimmed of
fields nobody can observe locally (e.g. X-Amzn-Trace-Id) but keeping every field handlers read.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API_ID = "local000ws"  # 10 characters, like a real API id


def new_connection_id() -> str:
    """An id shaped like API Gateway's: base64 of 11 random bytes, e.g. "d0Ym1dBEoAMCLjg=".

    Ids containing "/" are skipped: it would have to travel percent-encoded in the
    @connections path, which routers decode differently; AWS's ids are path-safe too.
    """
    while True:
        candidate = base64.b64encode(secrets.token_bytes(11)).decode()
        if "/" not in candidate:
            return candidate


def is_valid_connection_id(value: str) -> bool:
    try:
        return len(value) == 16 and len(base64.b64decode(value, validate=True)) == 11
    except ValueError:
        return False


def _request_id() -> str:
    # API Gateway request ids are base64-ish 16 characters, like connection ids.
    return new_connection_id()


def _request_time(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ConnectionInfo:
    """What API Gateway knows about a connection, from the handshake on."""

    connection_id: str
    stage: str
    domain_name: str
    source_ip: str
    user_agent: str
    connected_at_ms: int = field(default_factory=now_ms)
    authorizer: dict[str, Any] = field(default_factory=dict)


def method_arn(region: str, account: str, stage: str, route_key: str) -> str:
    return f"arn:aws:execute-api:{region}:{account}:{API_ID}/{stage}/{route_key}"


def _request_context(
    info: ConnectionInfo, route_key: str, event_type: str, *, with_authorizer: bool = True
) -> dict[str, Any]:
    epoch_ms = now_ms()
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": _request_id(),
        "requestTime": _request_time(epoch_ms),
        "messageDirection": "IN",
        "stage": info.stage,
        "connectedAt": info.connected_at_ms,
        "requestTimeEpoch": epoch_ms,
        "identity": {"sourceIp": info.source_ip, "userAgent": info.user_agent},
        "requestId": _request_id(),
        "domainName": info.domain_name,
        "connectionId": info.connection_id,
        "apiId": API_ID,
    }
    if with_authorizer and info.authorizer:
        context["authorizer"] = dict(info.authorizer)
    return context


def _single_and_multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    # API Gateway's single-value map keeps the last value of a repeated name.
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def authorizer_event(
    info: ConnectionInfo,
    *,
    region: str,
    account: str,
    headers: list[tuple[str, str]],
    query: list[tuple[str, str]],
) -> dict[str, Any]:
    """REQUEST authorizer event for $connect (methodArn ends in /{stage}/$connect)."""
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(query)
    return {
        "type": "REQUEST",
        "methodArn": method_arn(region, account, info.stage, "$connect"),
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "stageVariables": {},
        "requestContext": _request_context(info, "$connect", "CONNECT", with_authorizer=False),
    }


def connect_event(
    info: ConnectionInfo, *, headers: list[tuple[str, str]], query: list[tuple[str, str]]
) -> dict[str, Any]:
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(query)
    return {
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": _request_context(info, "$connect", "CONNECT"),
        "isBase64Encoded": False,
    }


def message_event(info: ConnectionInfo, route_key: str, body: str | bytes) -> dict[str, Any]:
    """A frame from the client; API Gateway sends no headers or query string after $connect."""
    context = _request_context(info, route_key, "MESSAGE")
    context["messageId"] = _request_id()
    if isinstance(body, bytes):
        return {
            "requestContext": context,
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(info: ConnectionInfo, status_code: int, reason: str) -> dict[str, Any]:
    context = _request_context(info, "$disconnect", "DISCONNECT")
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {"requestContext": context, "isBase64Encoded": False}


def sns_event(subscription_arn: str, notification: Mapping[str, Any]) -> dict[str, Any]:
    """The Lambda event SNS sends for one notification (as delivered to SQS, not raw).

    SQS receives the HTTP/SQS notification document; Lambda's record spells two keys
    differently (SigningCertUrl, UnsubscribeUrl), always carries Subject (null when absent)
    and MessageAttributes (empty when none).
    """
    renamed = {"SigningCertURL": "SigningCertUrl", "UnsubscribeURL": "UnsubscribeUrl"}
    sns: dict[str, Any] = {"Subject": None, "MessageAttributes": {}}
    for key, value in notification.items():
        sns[renamed.get(key, key)] = value
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": sns,
            }
        ]
    }


def new_invocation_id() -> str:
    return str(uuid.uuid4())
