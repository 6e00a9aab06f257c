"""The fault flags not exercised elsewhere, and the run-time fault switch.

- `--management-latency-ms` delays every `@connections` call by at least that much;
- `--drop-disconnect-rate 1.0` loses every `$disconnect` (the row stays until TTL or a 410);
- `GET /local/faults` reports the faults and what was injected; `POST` changes them, and refuses
  unknown or invalid ones.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from tests.e2e.clients import open_client, run
from tests.e2e.conftest import LocalStack


def test_latency_drop_rate_and_the_run_time_switch(
    local_stack: Callable[..., LocalStack], user
) -> None:
    stack = local_stack("--management-latency-ms", "300", "--drop-disconnect-rate", "1.0")
    management = stack.management()

    # An unknown connection still waits for the latency before its 410.
    started = time.monotonic()
    with pytest.raises(ClientError) as gone:
        management.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
    assert time.monotonic() - started >= 0.3
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410

    async def connect_and_leave(user_id: str) -> str:
        async with open_client(stack.url(stack.token(user_id))):
            (connection_id,) = stack.sessions_of(user_id)
        return connection_id

    connection_id = run(connect_and_leave(user("alice")))
    stack.wait_for_log(f"conn={connection_id} $disconnect dropped")
    assert stack.session_exists(connection_id)

    snapshot = stack.faults()
    assert snapshot["faults"]["management_latency_ms"] == 300
    assert snapshot["injected"]["disconnect_dropped"] >= 1

    changed = stack.faults(management_latency_ms=0, drop_disconnect_rate=0.0)
    assert changed["faults"]["management_latency_ms"] == 0
    assert changed["faults"]["drop_disconnect_rate"] == 0.0
    for bad in ({"no_such_fault": 1}, {"management_error_rate": 2}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            stack.faults(**bad)
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["message"]

    # Healed: the next client's $disconnect runs and removes its row.
    connection_id = run(connect_and_leave(user("bob")))
    stack.wait_for_log(f"conn={connection_id} $disconnect -> 200")
    assert not stack.session_exists(connection_id)
