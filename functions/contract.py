"""What the handlers, the Pulumi program (`infra/`) and the local stack (`local/`) must agree on.

Declared once, here, because `functions/` is the only package all three can import: the Lambda
package may not import Pulumi, and `infra/` and `local/` both read these names instead of
keeping copies of their own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# --- Handlers -------------------------------------------------------------------------------
# One module per handler in this package, each exposing `handler(event, context)`.
AUTHORIZER = "authorizer"
CONNECT = "connect"
DISCONNECT = "disconnect"
DEFAULT = "default"
PUBLISH = "publish"
HANDLERS = (AUTHORIZER, CONNECT, DISCONNECT, DEFAULT, PUBLISH)


def handler_path(handler: str) -> str:
    """The Lambda `handler` setting for one of HANDLERS (the archive holds `functions/`)."""
    if handler not in HANDLERS:
        raise ValueError(f"unknown handler {handler!r}; expected one of {HANDLERS}")
    return f"functions.{handler}.handler"


# --- WebSocket API --------------------------------------------------------------------------
ROUTE_SELECTION_EXPRESSION = "$request.body.action"


class Route(NamedTuple):
    key: str
    handler: str
    # A route that answers the client with the integration's return value needs a route
    # response; `$default` answers pings this way, so it needs no management API permission.
    two_way: bool = False


ROUTES = (
    Route("$connect", CONNECT),
    Route("$disconnect", DISCONNECT),
    Route("$default", DEFAULT, two_way=True),
)
CONNECT_ROUTE = "$connect"

# The authorizer runs on $connect only. Browsers cannot set headers on a WebSocket, so the
# token travels as a query parameter; it is the identity source, which means API Gateway
# refuses a handshake without it (401) before the authorizer is invoked.
TOKEN_QUERY_PARAMETER = "token"
AUTHORIZER_IDENTITY_SOURCE = f"route.request.querystring.{TOKEN_QUERY_PARAMETER}"
# Key of the user id in the authorizer's (flat, string-valued) context.
AUTHORIZER_CONTEXT_USER_ID = "userId"

PING_ACTION = "ping"

# --- Sessions table -------------------------------------------------------------------------
CONNECTION_ID = "connectionId"  # partition key (S)
USER_ID = "userId"  # GSI partition key (S)
USER_INDEX = "userId-index"
CONNECTED_AT = "connectedAt"  # ISO-8601
# The index carries the keys (connectionId to post to, userId to prove whose it is) and
# connectedAt: a 410 may delete a row only once it is older than the connecting grace, and
# knowing that from the lookup lets the deletes go in batches instead of one conditional
# delete each. Index items stay small (about 90 bytes).
USER_INDEX_PROJECTION = "INCLUDE"
USER_INDEX_NON_KEY_ATTRIBUTES = (CONNECTED_AT,)
EXPIRES_AT = "expiresAt"  # TTL attribute, epoch seconds (N)

# --- SNS message attributes (the publishing contract) --------------------------------------
TARGET_USER_ATTRIBUTE = "userId"  # String (one user) or String.Array (JSON array of users)
BROADCAST_ATTRIBUTE = "broadcast"  # String "all"
BROADCAST_ALL = "all"
TYPE_ATTRIBUTE = "type"  # String, optional
DEFAULT_TYPE = "notification"
# Most users one message may name (a String.Array `userId`); more is refused with a clear
# error, so one publish cannot turn into an unbounded fan-out of index queries.
MAX_TARGET_USERS = 100
FILTER_POLICY_SCOPE = "MessageAttributes"


def subscription_filter_policy(broadcast_enabled: bool) -> dict[str, Any]:
    """The publish Lambda's SNS filter policy: a message naming no target never invokes it."""
    names_users = {TARGET_USER_ATTRIBUTE: [{"exists": True}]}
    if not broadcast_enabled:
        return names_users
    return {"$or": [names_users, {BROADCAST_ATTRIBUTE: [BROADCAST_ALL]}]}


# --- Environment variables the handlers read ------------------------------------------------
ENV_SESSIONS_TABLE = "SESSIONS_TABLE"
ENV_CONNECTION_TTL_SECONDS = "CONNECTION_TTL_SECONDS"
# https://{apiId}.execute-api.{region}.amazonaws.com/{stage}
ENV_MANAGEMENT_ENDPOINT = "MANAGEMENT_ENDPOINT"
ENV_PUBLISH_CONCURRENCY = "PUBLISH_CONCURRENCY"
# Optional: seconds a session row is protected from a 410-triggered delete after connect
ENV_CONNECTING_GRACE_SECONDS = "CONNECTING_GRACE_SECONDS"
ENV_BROADCAST_ENABLED = "BROADCAST_ENABLED"  # "true" / "false"
ENV_JWT_SECRET_PARAMETER = "JWT_SECRET_PARAMETER"  # SSM SecureString name, never the secret
ENV_JWT_ISSUER = "JWT_ISSUER"  # optional; checked when set
ENV_JWT_AUDIENCE = "JWT_AUDIENCE"  # optional; checked when set

# --- Limits (API Gateway WebSocket quotas and SNS) ------------------------------------------
MAX_MESSAGE_BYTES = 128 * 1024  # largest message API Gateway delivers
MAX_FRAME_BYTES = 32 * 1024  # largest single WebSocket frame
SNS_MAX_MESSAGE_BYTES = 256 * 1024
CONNECTION_MAX_SECONDS = 2 * 60 * 60  # API Gateway closes every connection after 2 hours
IDLE_TIMEOUT_SECONDS = 10 * 60  # ... and an idle one after 10 minutes


def jwt_secret_parameter_name(project: str, stack: str) -> str:
    """SSM SecureString holding a stack's JWT key (the authorizer gets the name, not the key)."""
    return f"/{project}/{stack}/jwt-secret"


# --- Failure handling (issue 3) -------------------------------------------------------------
# Optional SNS attribute: the notification's stable id. A backend may set it; the replay tool
# sets it to the original id, so a replayed notification keeps the `id` clients dedupe by.
# Without it the envelope id is the SNS MessageId.
NOTIFICATION_ID_ATTRIBUTE = "notificationId"
MAX_NOTIFICATION_ID_LENGTH = 256  # characters; a longer id is refused (invalid_attributes)
# Dead-letter queue: notifications that could not be delivered, with the reason.
ENV_DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
# Pending deliveries: written only when a notification reached some but not all of its
# connections, so the retried invocation posts to the remainder instead of fanning out again.
ENV_PENDING_DELIVERIES_TABLE = "PENDING_DELIVERIES_TABLE"
PENDING_NOTIFICATION_ID = "notificationId"  # partition key (S)
PENDING_REMAINING = "remaining"  # string set: connection ids still owed the notification
# Optional: how soon after its SNS publish a failed event can come back at the earliest. Lambda
# waits a minute before retrying a failed asynchronous invocation, so a record younger than this
# is a first attempt with nothing owed from before, and the pending read is skipped. 0: always
# read.
ENV_FIRST_RETRY_AFTER_SECONDS = "FIRST_RETRY_AFTER_SECONDS"
# Pending rows expire through TTL on contract.EXPIRES_AT (epoch seconds) as well.
