"""The local stack's index for moto's GSI Queries (`local.gsi_query_index`): moto's answers, at
a cost that follows the matches.

Every Query is asked twice, with the index and with moto's own Query code restored for the
second asking, page by page (the same ExclusiveStartKey for both), and the two responses must
be equal: Items, their order, Count, ScannedCount, LastEvaluatedKey. Where a brute-force answer
is easy (the sessions table, no filter) the pages together must also hold exactly the rows a
model of the table says. A counter on moto's `Table.all_items` shows which Queries the index
served (moto never walked the table) and which it left to moto.

Hypothesis drives random writes (put, update, delete, batch and transactional writes, one of
them rolled back; key values of other types; items outside the index) interleaved with
Queries (Limit, ScanIndexForward, Select, filters, range-key conditions, other indexes and the
table itself), on the sessions table and on a table with a range key and three indexes. Each
scenario starts from a new table. The patch is installed for this module's tests only and
removed after each.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.table import Table

from functions import contract
from local import gsi_query_index
from local.resources import create_sessions_table
from tests.unit import events
from tests.unit.conftest import TABLE, add_session

CONNECTION = contract.CONNECTION_ID
USER = contract.USER_ID
INDEX = contract.USER_INDEX

# What the index's installer replaces, restored after each test.
PATCHED_METHODS = [
    (Table, "put_item"),
    (Table, "delete_item"),
    (DynamoDBBackend, "update_item"),
    (Table, "all_items"),
    (Table, "query"),
]


class QueryIndex:
    """The installed index, moto's own Query beside it, and a count of full table walks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for owner, name in PATCHED_METHODS:
            monkeypatch.setattr(owner, name, getattr(owner, name))  # restored at teardown
        self.full_walks = 0
        moto_all_items = Table.all_items

        def counted_all_items(table: Table) -> Any:
            self.full_walks += 1
            return moto_all_items(table)

        monkeypatch.setattr(Table, "all_items", counted_all_items)
        self._moto_query = Table.query
        self._moto_all_items = counted_all_items
        gsi_query_index.install()
        self._monkeypatch = monkeypatch

    @contextmanager
    def moto_alone(self) -> Iterator[None]:
        """moto's Query, unpatched (writes are still counted, which changes no answer)."""
        with self._monkeypatch.context() as patch:
            patch.setattr(Table, "query", self._moto_query)
            patch.setattr(Table, "all_items", self._moto_all_items)
            yield

    def both_answers(self, client: Any, request: dict[str, Any]) -> tuple[Any, Any, int]:
        """(patched answer, moto's answer, full walks of the patched one); an error is an
        answer too: (code, message)."""

        def ask() -> Any:
            try:
                response = client.query(**request)
            except ClientError as error:
                return error.response["Error"]["Code"], error.response["Error"]["Message"]
            response.pop("ResponseMetadata")
            return response

        walks_before = self.full_walks
        patched = ask()
        walks = self.full_walks - walks_before
        with self.moto_alone():
            unpatched = ask()
        return patched, unpatched, walks

    def pages(self, client: Any, request: dict[str, Any], served: bool) -> list[dict[str, Any]]:
        """Every page of a Query, each one checked against moto's; `served`: whether the
        index should have answered (no full walk) or left it to moto."""
        request = dict(request)
        pages = []
        while True:
            patched, unpatched, walks = self.both_answers(client, request)
            assert patched == unpatched
            if isinstance(patched, tuple):  # an error, and the same one
                return pages
            assert (walks == 0) == served, f"full walks: {walks}"
            pages.append(patched)
            if "LastEvaluatedKey" not in patched:
                return pages
            request["ExclusiveStartKey"] = patched["LastEvaluatedKey"]


@pytest.fixture
def query_index(monkeypatch: pytest.MonkeyPatch) -> QueryIndex:
    return QueryIndex(monkeypatch)


def moto_table(name: str) -> Table:
    return dynamodb_backends[events.ACCOUNT][events.REGION].get_table(name)


def user_query(
    user: str, limit: int | None = None, table: str = TABLE, **extra: Any
) -> dict[str, Any]:
    """The Query `functions.sessions.connections_of` sends."""
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": INDEX,
        "KeyConditionExpression": "#user = :user",
        "ProjectionExpression": "#connection, #connectedAt",
        "ExpressionAttributeNames": {
            "#user": USER,
            "#connection": CONNECTION,
            "#connectedAt": contract.CONNECTED_AT,
        },
        "ExpressionAttributeValues": {":user": {"S": user}},
        **extra,
    }
    if limit is not None:
        request["Limit"] = limit
    return request


def found(pages: list[dict[str, Any]]) -> list[str]:
    return [item[CONNECTION]["S"] for page in pages for item in page.get("Items", [])]


# --- the sessions table, the publish path's Query -------------------------------------------


def test_a_query_sees_the_write_made_just_before_it(dynamodb: Any, query_index: QueryIndex) -> None:
    def connections(user: str) -> list[str]:
        return found(query_index.pages(dynamodb, user_query(user), served=True))

    add_session(dynamodb, "a=", "user-1")
    assert connections("user-1") == ["a="]
    add_session(dynamodb, "b=", "user-1")
    assert connections("user-1") == ["a=", "b="]

    dynamodb.update_item(
        TableName=TABLE,
        Key={CONNECTION: {"S": "a="}},
        UpdateExpression="SET #user = :other",
        ExpressionAttributeNames={"#user": USER},
        ExpressionAttributeValues={":other": {"S": "user-2"}},
    )
    assert (connections("user-1"), connections("user-2")) == (["b="], ["a="])

    dynamodb.delete_item(TableName=TABLE, Key={CONNECTION: {"S": "b="}})
    assert connections("user-1") == []

    dynamodb.batch_write_item(
        RequestItems={
            TABLE: [
                {"PutRequest": {"Item": {CONNECTION: {"S": "c="}, USER: {"S": "user-1"}}}},
                {"DeleteRequest": {"Key": {CONNECTION: {"S": "a="}}}},
            ]
        }
    )
    assert (connections("user-1"), connections("user-2")) == (["c="], [])

    dynamodb.put_item(TableName=TABLE, Item={CONNECTION: {"S": "c="}, USER: {"S": "user-3"}})
    assert (connections("user-1"), connections("user-3")) == ([], ["c="])


def test_a_user_with_no_connections_gets_an_empty_answer(
    dynamodb: Any, query_index: QueryIndex
) -> None:
    add_session(dynamodb, "a=", "user-1")
    for user in ["nobody", "user-1 ", "User-1"]:
        [page] = query_index.pages(dynamodb, user_query(user, limit=2), served=True)
        assert (page["Items"], page["Count"], page["ScannedCount"]) == ([], 0, 0)
        assert "LastEvaluatedKey" not in page


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
def test_pages_of_a_limited_query_are_moto_s(
    dynamodb: Any, query_index: QueryIndex, limit: int
) -> None:
    mine = [f"m{i}=" for i in range(7)]
    for index, connection_id in enumerate(mine):
        add_session(dynamodb, connection_id, "user-1")
        add_session(dynamodb, f"o{index}=", f"user-{index % 3 + 2}")
    pages = query_index.pages(dynamodb, user_query("user-1", limit=limit), served=True)
    assert found(pages) == mine
    assert len(pages) == -(-len(mine) // limit)  # a key only when more items follow


def test_a_query_during_a_write_is_left_to_moto(dynamodb: Any, query_index: QueryIndex) -> None:
    add_session(dynamodb, "a=", "user-1")
    query_index.pages(dynamodb, user_query("user-1"), served=True)  # the map is built
    with gsi_query_index._writing(moto_table(TABLE)):  # another thread is writing
        pages = query_index.pages(dynamodb, user_query("user-1"), served=False)
    assert found(pages) == ["a="]
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=True)) == ["a="]


def test_a_map_a_write_overlapped_is_not_kept(
    dynamodb: Any, query_index: QueryIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_session(dynamodb, "a=", "user-1")
    table = moto_table(TABLE)
    build = gsi_query_index._items_by_value
    writes_during_builds = iter([{CONNECTION: {"S": "b="}, USER: {"S": "user-1"}}])

    def build_while_writing(table: Table, attribute: str) -> Any:
        items_by_value = build(table, attribute)
        for item in itertools.islice(writes_during_builds, 1):
            table.put_item(item)  # a request on another thread, just after the walk
        return items_by_value

    monkeypatch.setattr(gsi_query_index, "_items_by_value", build_while_writing)
    # The map the write overlapped is not used, and not kept for the next Query.
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=False)) == ["a=", "b="]
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=True)) == ["a=", "b="]
    assert table is moto_table(TABLE)


def test_a_deleted_and_recreated_table_has_none_of_the_old_rows(
    dynamodb: Any, query_index: QueryIndex
) -> None:
    add_session(dynamodb, "a=", "user-1")
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=True)) == ["a="]
    dynamodb.delete_table(TableName=TABLE)
    create_sessions_table(dynamodb, TABLE)
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=True)) == []
    add_session(dynamodb, "b=", "user-1")
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=True)) == ["b="]


def test_a_rolled_back_transaction_leaves_moto_s_answer(
    dynamodb: Any, query_index: QueryIndex
) -> None:
    add_session(dynamodb, "a=", "user-1")
    query_index.pages(dynamodb, user_query("user-1"), served=True)
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {CONNECTION: {"S": "b="}, USER: {"S": "user-1"}},
                    }
                },
                {
                    "Delete": {
                        "TableName": TABLE,
                        "Key": {CONNECTION: {"S": "missing="}},
                        "ConditionExpression": "attribute_exists(#c)",
                        "ExpressionAttributeNames": {"#c": CONNECTION},
                    }
                },
            ]
        )
    assert found(query_index.pages(dynamodb, user_query("user-1"), served=True)) == ["a="]


def test_queries_the_index_cannot_serve_are_moto_s(dynamodb: Any, query_index: QueryIndex) -> None:
    add_session(dynamodb, "a=", "user-1")
    dynamodb.put_item(TableName=TABLE, Item={CONNECTION: {"S": "l="}, USER: {"L": [{"S": "x"}]}})
    by_list = user_query("x", ExpressionAttributeValues={":user": {"L": [{"S": "x"}]}})
    assert found(query_index.pages(dynamodb, by_list, served=False)) == ["l="]
    table_query = {
        "TableName": TABLE,
        "KeyConditionExpression": "#c = :c",
        "ExpressionAttributeNames": {"#c": CONNECTION},
        "ExpressionAttributeValues": {":c": {"S": "a="}},
    }
    assert found(query_index.pages(dynamodb, table_query, served=False)) == ["a="]
    # Errors are moto's too (checked against moto's by `pages`).
    assert query_index.pages(dynamodb, user_query("user-1", ConsistentRead=True), False) == []
    assert query_index.pages(dynamodb, user_query("user-1", IndexName="nope"), False) == []
    assert query_index.pages(dynamodb, user_query("user-1", table="nope"), False) == []


def test_installing_twice_counts_each_write_once(dynamodb: Any, query_index: QueryIndex) -> None:
    installed = Table.query
    gsi_query_index.install()
    assert Table.query is installed
    table = moto_table(TABLE)
    add_session(dynamodb, "a=", "user-1")
    with gsi_query_index._lock:
        writes = gsi_query_index._writes_of(table)
        assert (writes.count, writes.in_progress) == (2, 0)


def test_concurrent_writers_each_read_their_own_writes(
    dynamodb: Any, query_index: QueryIndex
) -> None:
    """Threads move their own connections between their own users on one table, each
    checking after every write that the index answers with exactly its rows, while the
    others' writes keep invalidating the maps and overlapping the builds."""
    writers, steps = 4, 60
    start = threading.Barrier(writers)
    failures: list[str] = []

    def work(writer: int) -> None:
        users = [f"w{writer}-u{n}" for n in range(2)]
        rows: dict[str, str] = {}  # this writer's connectionId -> userId
        start.wait()
        for step in range(steps):
            connection_id = f"w{writer}-c{step % 4}="
            if step % 5 == 4:
                dynamodb.delete_item(TableName=TABLE, Key={CONNECTION: {"S": connection_id}})
                rows.pop(connection_id, None)
            else:
                rows[connection_id] = users[step % 3 % 2]
                add_session(dynamodb, connection_id, rows[connection_id])
            for user in users:
                answer = dynamodb.query(**user_query(user, limit=3))
                got = [item[CONNECTION]["S"] for item in answer["Items"]]
                while "LastEvaluatedKey" in answer:
                    answer = dynamodb.query(
                        **user_query(user, limit=3, ExclusiveStartKey=answer["LastEvaluatedKey"])
                    )
                    got += [item[CONNECTION]["S"] for item in answer["Items"]]
                expected = sorted(cid for cid, owner in rows.items() if owner == user)
                if got != expected:
                    failures.append(f"writer {writer} step {step} {user}: {got} != {expected}")

    threads = [threading.Thread(target=work, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert query_index.full_walks < writers * steps * 2  # the index did answer most of them


# --- random scenarios -----------------------------------------------------------------------

SCENARIO_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CONNECTION_IDS = st.sampled_from([f"c{i}=" for i in range(10)])
USERS = st.sampled_from(["user-1", "user-2", "user-3", "User-1", "user-1 "])
QUERIED_USERS = st.one_of(USERS, st.just("nobody"))
# Values of the index key attribute that no S Query equals (moto stores them anyway).
ODD_KEY_VALUES = st.sampled_from([{"N": "1"}, {"S": "1"}, {"L": [{"S": "user-1"}]}, {"SS": ["a"]}])
LIMITS = st.one_of(st.none(), st.integers(1, 4))


class Scenario(RuleBasedStateMachine):
    """Writes and Queries on one new table; every Query page checked against moto's.

    `owners` models the index's hash-key attribute of every row (None: the row is outside
    the index); after each step the users whose rows a write changed are asked for again,
    so a map a write left stale is met before the next write hides it.
    """

    client: ClassVar[Any]
    index: ClassVar[QueryIndex]
    tables: ClassVar[Iterator[int]]
    table: str

    @initialize()
    def start(self) -> None:
        self.table = f"scenario-{next(self.tables)}"
        self.create_table()
        self.owners: dict[Any, str | None] = {}  # row key -> user (None: outside the index)
        self.touched: set[str] = set()

    def create_table(self) -> None:
        raise NotImplementedError

    def failing_condition(self) -> dict[str, Any]:
        raise NotImplementedError

    def check_user(self, user: str) -> None:
        raise NotImplementedError

    def own(self, key: Any, user: str | None) -> None:
        self.disown(key)
        self.owners[key] = user
        if user is not None:
            self.touched.add(user)

    def disown(self, key: Any) -> None:
        previous = self.owners.pop(key, None)
        if previous is not None:
            self.touched.add(previous)

    def put_item(self, key: Any, item: dict[str, Any], user: str | None) -> None:
        self.client.put_item(TableName=self.table, Item=item)
        self.own(key, user)

    def transact(self, operations: list[dict[str, Any]], fail: bool) -> bool:
        """A transaction of `operations`; with `fail`, a failing condition cancels it and
        moto restores the table from a copy. True if it was applied."""
        if fail:
            operations = [*operations, self.failing_condition()]
        try:
            self.client.transact_write_items(TransactItems=operations)
        except ClientError as error:
            assert fail, error
            assert error.response["Error"]["Code"] == "TransactionCanceledException"
            return False
        assert not fail
        return True

    @invariant()
    def touched_users_get_the_right_answer(self) -> None:
        for user in sorted(self.touched):
            self.check_user(user)
        self.touched.clear()

    def teardown(self) -> None:
        self.client.delete_table(TableName=self.table)


class SessionsScenario(Scenario):
    """The sessions table and the publish path's Query, also checked against the model."""

    def create_table(self) -> None:
        create_sessions_table(self.client, self.table)

    def failing_condition(self) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": {CONNECTION: {"S": "never="}},
                "ConditionExpression": "attribute_exists(#c)",
                "ExpressionAttributeNames": {"#c": CONNECTION},
            }
        }

    def check_user(self, user: str, limit: int | None = None) -> None:
        pages = self.index.pages(self.client, user_query(user, limit, self.table), served=True)
        assert found(pages) == sorted(cid for cid, owner in self.owners.items() if owner == user)

    @rule(connection_id=CONNECTION_IDS, user=USERS, expires=st.booleans())
    def connect(self, connection_id: str, user: str, expires: bool) -> None:
        item = {CONNECTION: {"S": connection_id}, USER: {"S": user}}
        if expires:
            item[contract.EXPIRES_AT] = {"N": "1796329240"}
        self.put_item(connection_id, item, user)

    @rule(connection_id=CONNECTION_IDS, value=st.one_of(st.none(), ODD_KEY_VALUES))
    def put_outside_the_index(self, connection_id: str, value: dict[str, Any] | None) -> None:
        item: dict[str, Any] = {CONNECTION: {"S": connection_id}}
        if value is not None:
            item[USER] = value
        self.put_item(connection_id, item, None)

    @rule(connection_id=CONNECTION_IDS)
    def disconnect(self, connection_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={CONNECTION: {"S": connection_id}})
        self.disown(connection_id)

    @rule(connection_id=CONNECTION_IDS, user=st.one_of(st.none(), USERS))
    def update_user(self, connection_id: str, user: str | None) -> None:
        """Moves a row to another user, removes its user, or creates it (UpdateItem)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": {CONNECTION: {"S": connection_id}},
            "ExpressionAttributeNames": {"#user": USER},
        }
        if user is None:
            request["UpdateExpression"] = "REMOVE #user"
        else:
            request["UpdateExpression"] = "SET #user = :user"
            request["ExpressionAttributeValues"] = {":user": {"S": user}}
        self.client.update_item(**request)
        self.own(connection_id, user)

    @rule(
        writes=st.dictionaries(CONNECTION_IDS, st.one_of(st.none(), USERS), min_size=1, max_size=6)
    )
    def batch_write(self, writes: dict[str, str | None]) -> None:
        requests = [
            {"DeleteRequest": {"Key": {CONNECTION: {"S": cid}}}}
            if user is None
            else {"PutRequest": {"Item": {CONNECTION: {"S": cid}, USER: {"S": user}}}}
            for cid, user in writes.items()
        ]
        self.client.batch_write_item(RequestItems={self.table: requests})
        for cid, user in writes.items():
            if user is None:
                self.disown(cid)
            else:
                self.own(cid, user)

    @rule(
        writes=st.dictionaries(CONNECTION_IDS, st.one_of(st.none(), USERS), min_size=1, max_size=3),
        fail=st.booleans(),
    )
    def transaction(self, writes: dict[str, str | None], fail: bool) -> None:
        operations = [
            {"Delete": {"TableName": self.table, "Key": {CONNECTION: {"S": cid}}}}
            if user is None
            else {
                "Update": {
                    "TableName": self.table,
                    "Key": {CONNECTION: {"S": cid}},
                    "UpdateExpression": "SET #user = :user",
                    "ExpressionAttributeNames": {"#user": USER},
                    "ExpressionAttributeValues": {":user": {"S": user}},
                }
            }
            for cid, user in writes.items()
        ]
        if self.transact(operations, fail):
            for cid, user in writes.items():
                if user is None:
                    self.disown(cid)
                else:
                    self.own(cid, user)
        else:  # rolled back: the same rows, in a copy of the table
            self.touched.update(user for user in writes.values() if user is not None)

    @rule(user=QUERIED_USERS, limit=LIMITS)
    def connections_of(self, user: str, limit: int | None) -> None:
        self.check_user(user, limit)

    @rule(
        user=QUERIED_USERS,
        limit=LIMITS,
        forward=st.booleans(),
        select=st.sampled_from(["ALL_PROJECTED_ATTRIBUTES", "COUNT", None]),
        filtered=st.booleans(),
    )
    def other_query_shapes(
        self, user: str, limit: int | None, forward: bool, select: str | None, filtered: bool
    ) -> None:
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": INDEX,
            "KeyConditionExpression": "#user = :user",
            "ExpressionAttributeNames": {"#user": USER},
            "ExpressionAttributeValues": {":user": {"S": user}},
            "ScanIndexForward": forward,
        }
        if limit is not None:
            request["Limit"] = limit
        if select is not None:
            request["Select"] = select
        if filtered:
            request["FilterExpression"] = "#c > :c"
            request["ExpressionAttributeNames"]["#c"] = CONNECTION
            request["ExpressionAttributeValues"][":c"] = {"S": "c4="}
        self.index.pages(self.client, request, served=True)

    @rule(value=ODD_KEY_VALUES)
    def query_by_another_type(self, value: dict[str, Any]) -> None:
        request = user_query("-", table=self.table, ExpressionAttributeValues={":user": value})
        hashable = not ({"L", "SS"} & set(value))
        self.index.pages(self.client, request, served=hashable)


ROW_KEYS = st.tuples(st.sampled_from("abc"), st.integers(0, 4))


class RangeKeyScenario(Scenario):
    """A table with a range key, a hash-only GSI, a GSI with a range key and an LSI."""

    def create_table(self) -> None:
        self.client.create_table(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
                {"AttributeName": "owner", "AttributeType": "S"},
                {"AttributeName": "rank", "AttributeType": "N"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "byOwner",
                    "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {
                    "IndexName": "byOwnerRank",
                    "KeySchema": [
                        {"AttributeName": "owner", "KeyType": "HASH"},
                        {"AttributeName": "rank", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["note"]},
                },
            ],
            LocalSecondaryIndexes=[
                {
                    "IndexName": "byRank",
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "rank", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )

    def failing_condition(self) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": self.key(("never", 0)),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    def check_user(self, user: str) -> None:
        request = {
            "TableName": self.table,
            "IndexName": "byOwner",
            "KeyConditionExpression": "#o = :o",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":o": {"S": user}},
        }
        [page] = self.index.pages(self.client, request, served=True)
        # The order is moto's (table range key before table hash key), checked by `pages`.
        expected = {key for key, owner in self.owners.items() if owner == user}
        assert {(item["pk"]["S"], int(item["sk"]["N"])) for item in page["Items"]} == expected

    @staticmethod
    def key(row: tuple[str, int]) -> dict[str, Any]:
        return {"pk": {"S": row[0]}, "sk": {"N": str(row[1])}}

    @rule(
        row=ROW_KEYS,
        owner=st.one_of(st.none(), USERS),
        rank=st.one_of(st.none(), st.integers(0, 3)),
        note=st.one_of(st.none(), st.text("xyz", max_size=3)),
        n=st.integers(0, 9),
    )
    def put(
        self,
        row: tuple[str, int],
        owner: str | None,
        rank: int | None,
        note: str | None,
        n: int,
    ) -> None:
        item: dict[str, Any] = {**self.key(row), "n": {"N": str(n)}}
        if owner is not None:
            item["owner"] = {"S": owner}
        if rank is not None:
            item["rank"] = {"N": str(rank)}
        if note is not None:
            item["note"] = {"S": note}
        self.put_item(row, item, owner)

    @rule(row=ROW_KEYS)
    def delete(self, row: tuple[str, int]) -> None:
        self.client.delete_item(TableName=self.table, Key=self.key(row))
        self.disown(row)

    @rule(row=ROW_KEYS, owner=USERS, rank=st.integers(0, 3))
    def update(self, row: tuple[str, int], owner: str, rank: int) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=self.key(row),
            UpdateExpression="SET #o = :o, #r = :r",
            ExpressionAttributeNames={"#o": "owner", "#r": "rank"},
            ExpressionAttributeValues={":o": {"S": owner}, ":r": {"N": str(rank)}},
        )
        self.own(row, owner)

    @rule(row=ROW_KEYS, owner=USERS, fail=st.booleans())
    def transaction(self, row: tuple[str, int], owner: str, fail: bool) -> None:
        item = {**self.key(row), "owner": {"S": owner}}
        if self.transact([{"Put": {"TableName": self.table, "Item": item}}], fail):
            self.own(row, owner)
        else:
            self.touched.add(owner)

    @rule(
        owner=QUERIED_USERS,
        limit=LIMITS,
        forward=st.booleans(),
        ranged=st.sampled_from([None, "BETWEEN", ">=", "<"]),
        filtered=st.booleans(),
        select=st.sampled_from(["ALL_PROJECTED_ATTRIBUTES", "COUNT", None]),
    )
    def query_by_owner(
        self,
        owner: str,
        limit: int | None,
        forward: bool,
        ranged: str | None,
        filtered: bool,
        select: str | None,
    ) -> None:
        names = {"#o": "owner"}
        values: dict[str, Any] = {":o": {"S": owner}}
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "byOwner",
            "KeyConditionExpression": "#o = :o",
            "ScanIndexForward": forward,
        }
        if ranged is not None:
            request["IndexName"] = "byOwnerRank"
            names["#r"] = "rank"
            values[":lo"] = {"N": "1"}
            if ranged == "BETWEEN":
                values[":hi"] = {"N": "2"}
                request["KeyConditionExpression"] += " AND #r BETWEEN :lo AND :hi"
            else:
                request["KeyConditionExpression"] += f" AND #r {ranged} :lo"
        if filtered:
            names["#sk"] = "sk"
            values[":sk"] = {"N": "2"}
            request["FilterExpression"] = "#sk <> :sk"
        if limit is not None:
            request["Limit"] = limit
        if select is not None:
            request["Select"] = select
        request.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        self.index.pages(self.client, request, served=True)

    @rule(pk=st.sampled_from("abcd"), limit=LIMITS, forward=st.booleans(), lsi=st.booleans())
    def query_by_table_key(self, pk: str, limit: int | None, forward: bool, lsi: bool) -> None:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": "pk"},
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ScanIndexForward": forward,
        }
        if lsi:
            request["IndexName"] = "byRank"
        if limit is not None:
            request["Limit"] = limit
        self.index.pages(self.client, request, served=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", [SessionsScenario, RangeKeyScenario])
def test_random_writes_and_queries_get_moto_s_answers(
    dynamodb: Any, query_index: QueryIndex, scenario: Callable[[], Scenario]
) -> None:
    class Run(scenario):  # type: ignore[valid-type, misc]
        pass

    Run.client, Run.index, Run.tables = dynamodb, query_index, itertools.count()
    run_state_machine_as_test(Run, settings=SCENARIO_SETTINGS)
