"""`$disconnect`: forget the connection.

Best effort by API Gateway's own account (it may never run); a 410 on a later post and the
table's TTL clean up what it misses. The event has no headers or query string: the connection
id is all there is, and all that is needed.
"""

from __future__ import annotations

import logging
from typing import Any

from functions import sessions

logger = logging.getLogger(__name__)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connection_id = event["requestContext"]["connectionId"]
    sessions.delete_session(connection_id)
    logger.info("disconnected", extra={"connectionId": connection_id})
    return {"statusCode": 200}
