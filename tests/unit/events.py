"""AWS-shaped events for the handlers, as API Gateway (WebSocket) and SNS send them."""

from __future__ import annotations

import json
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "abc123defg"
STAGE = "dev"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
MANAGEMENT_ENDPOINT = f"https://{DOMAIN}/{STAGE}"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:mentorassist-notifications"


def _request_context(
    route_key: str, event_type: str, connection_id: str, authorizer: dict[str, Any] | None
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": "Ab1CdEfGhIjKlMn=",
        "requestTime": "03/Dec/2026:18:20:40 +0000",
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": 1796322040000,
        "requestTimeEpoch": 1796322040123,
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "test-client/1.0"},
        "requestId": "Ab1CdEfGhIjKlMn=",
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": API_ID,
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    return context


def authorizer_event(
    *,
    token: str | None = None,
    connection_id: str = "conn-A=",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The REQUEST authorizer event of a `$connect`."""
    query = dict(query or {})
    if token is not None:
        query["token"] = token
    headers = {
        "Host": DOMAIN,
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        **(headers or {}),
    }
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/$connect",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "stageVariables": {},
        "requestContext": _request_context("$connect", "CONNECT", connection_id, None),
    }


def connect_event(
    connection_id: str,
    user_id: str | None,
    *,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`$connect` after the authorizer allowed it (its context is flat and string-valued)."""
    authorizer = None if user_id is None else {"principalId": user_id, "userId": user_id}
    headers = {"Host": DOMAIN, "Sec-WebSocket-Version": "13", **(headers or {})}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {"token": "eyJ.redacted.sig"},
        "requestContext": _request_context("$connect", "CONNECT", connection_id, authorizer),
        "isBase64Encoded": False,
    }


def disconnect_event(connection_id: str, user_id: str = "user-1") -> dict[str, Any]:
    """`$disconnect`: no headers, no query string."""
    authorizer = {"principalId": user_id, "userId": user_id}
    context = _request_context("$disconnect", "DISCONNECT", connection_id, authorizer)
    context["disconnectStatusCode"] = 1000
    context["disconnectReason"] = "Client-side close frame status code '1000'"
    return {"requestContext": context, "isBase64Encoded": False}


def message_event(
    body: str | None, connection_id: str = "conn-A=", *, base64_encoded: bool = False
) -> dict[str, Any]:
    """A client frame routed to `$default`."""
    authorizer = {"principalId": "user-1", "userId": "user-1"}
    context = _request_context("$default", "MESSAGE", connection_id, authorizer)
    context["messageId"] = "Ab1CdMsgId="
    return {"requestContext": context, "body": body, "isBase64Encoded": base64_encoded}


def string(value: str) -> dict[str, str]:
    return {"Type": "String", "Value": value}


def string_array(values: list[Any]) -> dict[str, str]:
    return {"Type": "String.Array", "Value": json.dumps(values)}


def sns_record(
    message: str,
    attributes: dict[str, dict[str, str]],
    *,
    message_id: str = "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
    timestamp: str = "2026-12-03T18:20:40.123Z",
) -> dict[str, Any]:
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{TOPIC_ARN}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": TOPIC_ARN,
            "Subject": None,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": attributes,
        },
    }


def sns_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}
