"""Isolation, as a property: every notification reaches exactly the live connections of the
users it names (everyone's, for a broadcast), once each, and never another user's.

Hypothesis plays random users on several devices through the real handlers: `$connect` and
`$disconnect` events, clients that vanish without a `$disconnect` (their rows stay, and API
Gateway answers 410 for them), and SNS records naming one user, several (some with no
connection, some spelled almost like a real user), or everyone. The sessions table is moto's;
the management API is `GatewayManagementApi`, which delivers to open connections and answers
410 for any other id, so the publish path that deletes gone rows runs as it does on AWS.

A model kept alongside says which connections API Gateway has open and which rows the table
should hold; after every publish the posts, the frames, the handler's counts and the table are
checked against it. A thousand scenarios of up to twelve steps each (after the first devices
connect) run with a fixed seed. moto and the table are set up once per test; each scenario
starts from an empty table, with new connection ids and new message ids.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from functions import connect, contract, disconnect, publish
from tests.unit import events
from tests.unit.conftest import TABLE, session_rows
from tests.unit.events import sns_event, sns_record, string, string_array
from tests.unit.management_api import GatewayManagementApi

SCENARIOS = 1000
SENT_AT = "2026-12-03T18:20:40.123Z"

# User ids: plain ones, near-misses of each other (prefix, case, whitespace, combining mark),
# and arbitrary text. A user id the publishing contract accepts is a non-empty string that is
# not only whitespace; the surrogate category cannot be encoded to UTF-8 at all.
USER_IDS = st.one_of(
    st.sampled_from(
        [
            "user-1",
            "user-10",
            "User-1",
            "user-1 ",
            " user-1",
            "user-1\u0301",
            "ユーザー",
            "*",
            "a,b",
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).map(
        lambda text: text if text.strip() else text + "x"
    ),
)

# A name a publisher might send that is close to, but maybe not, a connected user's.
NEAR_MISSES = (
    lambda user: user + " ",
    lambda user: user.upper(),
    lambda user: user.lower(),
    lambda user: user[:-1] if user[:-1].strip() else user + "1",
    lambda user: user + "0",
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)

_ids = itertools.count(1)


def new_connection_id() -> str:
    """Unique across scenarios and shaped like API Gateway's (16 base64 characters)."""
    return base64.b64encode(next(_ids).to_bytes(11, "big")).decode()


def new_message_id() -> str:
    return str(uuid.UUID(int=next(_ids)))


class Isolation(RuleBasedStateMachine):
    # Set per test: the moto DynamoDB client and the gateway fake.
    dynamodb: ClassVar[Any]
    api: ClassVar[GatewayManagementApi]
    # Every connection id the scenario running now has used: all the rows it can have left.
    created: ClassVar[list[str]]

    def __init__(self) -> None:
        super().__init__()
        self._forget_last_scenario()
        self.users: list[str] = []
        # The model: connections API Gateway has open, rows the table should hold (both
        # connectionId -> userId), and connections that closed without a `$disconnect`.
        self.open: dict[str, str] = {}
        self.rows: dict[str, str] = {}
        self.vanished: dict[str, str] = {}

    @initialize(
        users=st.lists(USER_IDS, min_size=1, max_size=6, unique=True),
        devices=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    )
    def setup(self, users: list[str], devices: list[int]) -> None:
        """Some users, each online on up to two devices (or none) to begin with."""
        self.users = users
        for user, count in zip(users, devices, strict=False):
            for _ in range(count):
                self._connect(user)

    # --- Clients ---------------------------------------------------------------------------

    @rule(data=st.data())
    def connect(self, data: st.DataObject) -> None:
        """One more device of a user opens a connection."""
        self._connect(data.draw(st.sampled_from(self.users), label="user"))

    def _connect(self, user: str) -> None:
        """`$connect` runs (after the authorizer), then API Gateway opens the socket."""
        connection_id = new_connection_id()
        self.created.append(connection_id)
        response = connect.handler(events.connect_event(connection_id, user), None)
        assert response == {"statusCode": 200}
        self.api.open.add(connection_id)
        self.open[connection_id] = user
        self.rows[connection_id] = user

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        """A client closes; API Gateway runs `$disconnect`."""
        connection_id = data.draw(st.sampled_from(list(self.open)), label="connection")
        user = self.open.pop(connection_id)
        self.api.open.discard(connection_id)
        assert disconnect.handler(events.disconnect_event(connection_id, user), None) == {
            "statusCode": 200
        }
        del self.rows[connection_id]

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def vanish(self, data: st.DataObject) -> None:
        """A client is gone but `$disconnect` never runs: its row stays, posts to it get 410."""
        connection_id = data.draw(st.sampled_from(list(self.open)), label="connection")
        self.vanished[connection_id] = self.open.pop(connection_id)
        self.api.open.discard(connection_id)

    @precondition(lambda self: self.vanished)
    @rule(data=st.data())
    def late_disconnect(self, data: st.DataObject) -> None:
        """`$disconnect` of a vanished client arrives after all, maybe after a 410 removed it."""
        connection_id = data.draw(st.sampled_from(list(self.vanished)), label="connection")
        user = self.vanished.pop(connection_id)
        assert disconnect.handler(events.disconnect_event(connection_id, user), None) == {
            "statusCode": 200
        }
        self.rows.pop(connection_id, None)

    # --- Publishers -------------------------------------------------------------------------

    def _names(self) -> st.SearchStrategy[str]:
        """Mostly the scenario's users; sometimes a near miss that may be nobody's."""
        near_miss = st.builds(
            lambda user, change: change(user),
            st.sampled_from(self.users),
            st.sampled_from(NEAR_MISSES),
        )
        users = st.sampled_from(self.users)
        return st.one_of(users, users, users, near_miss)

    @rule(data=st.data(), kind=st.sampled_from(["one", "one", "several", "several", "all"]))
    def publish(self, data: st.DataObject, kind: str) -> None:
        """A backend publishes one notification to one user, several, or everyone; exactly
        the open connections of those users get it."""
        attributes: dict[str, Any]
        targets: set[str] | None
        if kind == "one":
            user = data.draw(self._names(), label="userId")
            attributes, targets = {contract.TARGET_USER_ATTRIBUTE: string(user)}, {user}
        elif kind == "several":
            users = data.draw(st.lists(self._names(), min_size=1, max_size=4), label="userIds")
            attributes, targets = {contract.TARGET_USER_ATTRIBUTE: string_array(users)}, set(users)
        else:
            attributes, targets = (
                {contract.BROADCAST_ATTRIBUTE: string(contract.BROADCAST_ALL)},
                None,
            )
        payload = data.draw(
            JSON_VALUES.map(lambda value: (json.dumps(value), value))
            | st.text(max_size=20).map(lambda text: ("text: " + text,) * 2),
            label="message",
        )
        event_type = data.draw(st.none() | st.sampled_from(["chat.message", "x"]), label="type")
        if event_type is not None:
            attributes = {**attributes, contract.TYPE_ATTRIBUTE: string(event_type)}
        message_id = new_message_id()
        message, expected_data = payload

        self.api.posts.clear()
        self.api.delivered.clear()
        summary = publish.handler(
            sns_event(sns_record(message, attributes, message_id=message_id, timestamp=SENT_AT)),
            None,
        )

        def aimed_at(user: str) -> bool:
            return targets is None or user in targets

        reached = {cid for cid, user in self.open.items() if aimed_at(user)}
        gone = {cid for cid, user in self.rows.items() if cid not in self.open and aimed_at(user)}
        # Only the targets' rows are even tried; their open connections get it, nobody else.
        assert set(self.api.posts) == reached | gone
        assert set(self.api.delivered) == reached
        assert all(aimed_at(self.open[cid]) for cid in self.api.delivered)
        expected_frame = {
            "id": message_id,
            "type": event_type or contract.DEFAULT_TYPE,
            "data": expected_data,
            "sentAt": SENT_AT,
        }
        for frames in self.api.delivered.values():
            assert [json.loads(frame) for frame in frames] == [expected_frame]  # exactly once
        counts = {
            "messages": 1,
            "connections": len(reached | gone),
            "delivered": len(reached),
            "gone": len(gone),
        }
        # Every other count (rejected, failed, ...) is zero, whatever counts the handler keeps.
        assert summary == {**dict.fromkeys(summary, 0), **counts}
        # A 410 removed the rows of the targets' vanished clients, and nothing else.
        for cid in gone:
            del self.rows[cid]
        self.check_table()

    def _forget_last_scenario(self) -> None:
        """Empty the table (cheaper than a scan: the rows can only be `created` ones) and the
        gateway, so each scenario starts from nobody connected."""
        while self.created:
            batch, self.created[:] = self.created[:25], self.created[25:]
            requests = [
                {"DeleteRequest": {"Key": {contract.CONNECTION_ID: {"S": cid}}}} for cid in batch
            ]
            unprocessed = self.dynamodb.batch_write_item(RequestItems={TABLE: requests})
            self.created.extend(
                request["DeleteRequest"]["Key"][contract.CONNECTION_ID]["S"]
                for request in unprocessed["UnprocessedItems"].get(TABLE, [])
            )
        self.api.open.clear()

    def check_table(self) -> None:
        """The table holds exactly the model's rows. Checked after each publish rather than
        after every step (a scan per step would double the run time); a row `$connect` did not
        write or `$disconnect` did not delete shows up at the next publish."""
        rows = session_rows(self.dynamodb)
        assert {cid: row[contract.USER_ID]["S"] for cid, row in rows.items()} == self.rows


ISOLATION_SETTINGS = settings(
    max_examples=SCENARIOS,
    stateful_step_count=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# About a minute on an idle 2-core machine; the default 120 s timeout is too tight when the
# machine is shared.
@pytest.mark.timeout(600)
def test_every_notification_reaches_exactly_the_live_connections_of_its_targets(
    dynamodb: Any, gateway: GatewayManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Scenario(Isolation):
        pass

    Scenario.dynamodb, Scenario.api = dynamodb, gateway
    monkeypatch.setenv(contract.ENV_BROADCAST_ENABLED, "true")
    # Scenarios run in milliseconds; with no connecting grace a vanished client's row goes at
    # the first 410, which is what the model expects (the grace has its own test below).
    monkeypatch.setenv(contract.ENV_CONNECTING_GRACE_SECONDS, "0")
    Scenario.created = []
    run_state_machine_as_test(Scenario, settings=ISOLATION_SETTINGS)


def test_a_publish_during_connect_does_not_orphan_the_connection(
    dynamodb: Any, gateway: GatewayManagementApi
) -> None:
    def notify(message_id: str) -> None:
        attributes = {contract.TARGET_USER_ATTRIBUTE: string("user-1")}
        publish.handler(sns_event(sns_record("{}", attributes, message_id=message_id)), None)

    # `$connect` has written the row but not returned yet, so the socket is not open.
    connect.handler(events.connect_event("opening=", "user-1"), None)
    notify("during-connect")  # 410 for "opening=": missed, which is tolerable
    gateway.open.add("opening=")  # `$connect` returns; the client is connected

    notify("after-connect")
    assert [json.loads(frame)["id"] for frame in gateway.delivered.get("opening=", [])] == [
        "after-connect"
    ]
