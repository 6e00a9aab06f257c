"""Small helpers for end-to-end tests: WebSocket clients and SNS attributes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

from functions import contract

T = TypeVar("T")
FRAME_TIMEOUT_SECONDS = 10


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one scenario on a loop of its own (the suite has no asyncio plugin).

    Not `asyncio.run`: that leaves the thread with no current event loop, which breaks later
    tests in the same process that call `asyncio.get_event_loop()` (Pulumi's mocks do).
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def open_client(
    url: str,
    *,
    user_agent: str = "e2e",
    subprotocols: Sequence[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    # proxy=None: a shell's proxy settings must not capture localhost traffic.
    return connect(
        url,
        user_agent_header=user_agent,
        subprotocols=list(subprotocols) if subprotocols else None,  # type: ignore[arg-type]
        additional_headers=headers,
        proxy=None,
        open_timeout=FRAME_TIMEOUT_SECONDS,
    )


async def next_frame(ws: ClientConnection, timeout: float = FRAME_TIMEOUT_SECONDS) -> Any:
    """The next text frame, parsed as JSON."""
    frame = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(frame)


def to_user(user_id: str) -> dict[str, Any]:
    return {contract.TARGET_USER_ATTRIBUTE: {"DataType": "String", "StringValue": user_id}}


def to_users(*user_ids: str) -> dict[str, Any]:
    return {
        contract.TARGET_USER_ATTRIBUTE: {
            "DataType": "String.Array",
            "StringValue": json.dumps(list(user_ids)),
        }
    }


def of_type(kind: str) -> dict[str, Any]:
    return {contract.TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": kind}}


def assert_envelope(frame: Any, *, id: str, type: str, data: Any) -> None:
    """The frame is exactly the delivery envelope of the contract, with these values."""
    assert set(frame) == {"id", "type", "data", "sentAt"}
    assert frame["id"] == id
    assert frame["type"] == type
    assert frame["data"] == data
    datetime.fromisoformat(frame["sentAt"])
