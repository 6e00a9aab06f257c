"""moto's DynamoDB Query on a global secondary index, at a cost that follows the answer.

moto (5.2.5) answers a Query on a GSI by sorting every item of the table and testing each one
against the key condition, so finding one user's connections costs time in proportion to the
whole sessions table. Here each table keeps, per attribute some GSI is keyed on, a map from the
attribute's value to the items holding it. A GSI Query with an equality on the index's hash key
hands moto's own Query only the items under that value, in the order moto would have walked
them; moto's code then does everything else as before (the hash-key test itself, range
conditions, filters, sorting, ScanIndexForward, Limit, paging, projection, counts). The answer
is moto's, computed over fewer items:

- The items under a value are every item moto's Query could keep: it keeps an item only if the
  item's attribute equals the value, and two DynamoTypes are equal exactly when their types
  and cast values are, which is how the map files them.
- A map is trusted only while no write to its table has started since the map was built. Every
  path that changes the items of a table is counted: `Table.put_item` (PutItem, BatchWriteItem,
  TransactWriteItems, PartiQL, imports, and UpdateItem creating an item), `Table.delete_item`,
  and `DynamoDBBackend.update_item`, which changes an item in place. A deleted and recreated
  table, a restored one, or one a failed transaction rolled back is a new `Table` object, with
  no map yet. moto has no TTL sweeper: expired items stay until deleted.

Threads: moto's server answers requests on threads and moto itself takes no lock. A write
counts itself as in progress for its whole duration (no lock is held while it runs, so a write
that invokes a Lambda from a table stream cannot deadlock). A map is built without a lock and
kept only if no write was in progress at any moment of the build; a Query that meets a write in
progress, or a build a write overlapped, is answered by moto's own code over every item.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.dynamodb.exceptions import ResourceNotFoundException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import GlobalSecondaryIndex, Table

# Set on the installed Table.query: installing twice would count every write twice.
_INSTALLED_MARK = "_local_stack_gsi_query_index"

# DynamoDB type -> cast value -> items: two DynamoTypes are equal exactly when their types and
# cast values are. One dict per type rather than (type, value) keys: a tuple per item of a
# large table would be enough new objects to set off a full garbage collection.
ItemsByValue = dict[str, dict[Any, list[Item]]]


@dataclass
class _TableWrites:
    """The writes to one table, and the maps built from its items between writes."""

    # Bumped when a write starts and again when it ends: a map built at one count describes
    # the table for as long as the count stays the same.
    count: int = 0
    in_progress: int = 0
    # attribute name -> (write count the map was built at, its items by value)
    maps: dict[str, tuple[int, ItemsByValue]] = field(default_factory=dict)


# Guards `_writes_by_table` and every `_TableWrites`; held only for a few assignments.
_lock = threading.Lock()
# Beside the tables rather than on them: a transaction deep-copies its tables, and a copy of a
# map would be a second copy of the items (and a lock cannot be copied at all).
_writes_by_table: weakref.WeakKeyDictionary[Table, _TableWrites] = weakref.WeakKeyDictionary()
# The candidate items one Query of this thread hands to its own `all_items` call.
_handed_over = threading.local()


def install() -> None:
    """Serve GSI Queries from the maps; applied once, without changing answers."""
    if getattr(Table.query, _INSTALLED_MARK, False):
        return
    Table.put_item = _counted_as_write(Table.put_item)  # type: ignore[method-assign]
    Table.delete_item = _counted_as_write(Table.delete_item)  # type: ignore[method-assign]
    DynamoDBBackend.update_item = _update_counted_as_write(  # type: ignore[method-assign]
        DynamoDBBackend.update_item
    )
    Table.all_items = _taking_handed_over_items(Table.all_items)  # type: ignore[method-assign]
    Table.query = _handing_over_candidates(Table.query)  # type: ignore[method-assign]
    setattr(Table.query, _INSTALLED_MARK, True)


def _writes_of(table: Table) -> _TableWrites:
    """The table's write record (call with `_lock` held)."""
    writes = _writes_by_table.get(table)
    if writes is None:
        writes = _writes_by_table[table] = _TableWrites()
    return writes


@contextmanager
def _writing(table: Table) -> Iterator[None]:
    # The record is created even for a table nobody queries yet: a build starting while this
    # write runs must see it in progress.
    with _lock:
        writes = _writes_of(table)
        writes.count += 1
        writes.in_progress += 1
    try:
        yield
    finally:
        with _lock:
            writes.count += 1
            writes.in_progress -= 1


def _counted_as_write(moto_method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(moto_method)
    def write(self: Table, *args: Any, **kwargs: Any) -> Any:
        with _writing(self):
            return moto_method(self, *args, **kwargs)

    return write


def _update_counted_as_write(moto_update_item: Callable[..., Any]) -> Callable[..., Any]:
    """UpdateItem changes the stored item in place, past `Table.put_item`."""

    @functools.wraps(moto_update_item)
    def update_item(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            table = self.get_table(table_name)
        except ResourceNotFoundException:
            return moto_update_item(self, table_name, *args, **kwargs)  # moto's own error
        with _writing(table):
            return moto_update_item(self, table_name, *args, **kwargs)

    return update_item


def _taking_handed_over_items(moto_all_items: Callable[[Table], list[Item]]) -> Any:
    @functools.wraps(moto_all_items)
    def all_items(self: Table) -> list[Item]:
        handed_over = getattr(_handed_over, "candidates", None)
        if handed_over is not None and handed_over[0] is self:
            # Once: only the Query's own walk over the items gets them.
            _handed_over.candidates = None
            return handed_over[1]
        return moto_all_items(self)

    return all_items


def _handing_over_candidates(moto_query: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(moto_query)
    def query(
        self: Table,
        hash_key: DynamoType | None,
        range_comparison: str | None,
        range_objs: list[DynamoType],
        limit: int,
        exclusive_start_key: dict[str, Any],
        scan_index_forward: bool,
        projection_expressions: list[list[str]] | None,
        index_name: str | None = None,
        consistent_read: bool = False,
        filter_expression: Any = None,
        hash_key_conditions: list[tuple[str, DynamoType]] | None = None,
        range_key_conditions: list[tuple[str, str, list[DynamoType]]] | None = None,
        **filter_kwargs: Any,
    ) -> Any:
        candidates = _candidates(self, index_name, consistent_read, hash_key_conditions)
        if candidates is not None:
            _handed_over.candidates = (self, candidates)
        try:
            return moto_query(
                self,
                hash_key,
                range_comparison,
                range_objs,
                limit,
                exclusive_start_key,
                scan_index_forward,
                projection_expressions,
                index_name,
                consistent_read,
                filter_expression,
                hash_key_conditions=hash_key_conditions,
                range_key_conditions=range_key_conditions,
                **filter_kwargs,
            )
        finally:
            _handed_over.candidates = None

    return query


def _candidates(
    table: Table,
    index_name: str | None,
    consistent_read: bool,
    hash_key_conditions: list[tuple[str, DynamoType]] | None,
) -> list[Item] | None:
    """The items a GSI Query could match, in `all_items` order; None: let moto walk them all."""
    if not index_name or consistent_read or not hash_key_conditions:
        return None  # a table Query, a rejected ConsistentRead, or no key condition to use
    # The index moto's Query will use: it looks names up the same way.
    index = {i.name: i for i in table.all_indexes()}.get(index_name)
    if not isinstance(index, GlobalSecondaryIndex):
        return None
    # moto tests the last condition given for an attribute; so does this.
    conditions = dict(hash_key_conditions)
    hash_attributes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    attribute = next((name for name in hash_attributes if name in conditions), None)
    if attribute is None:
        return None
    value = conditions[attribute]
    try:
        cast_value = _cast(value)
        hash(cast_value)
    except TypeError:
        return None  # a set, list or map value: no map key can equal it
    except ArithmeticError:
        return None  # not a number after all: moto's Query says what happens then
    items = _items_under(table, attribute, value.type, cast_value)
    if items is None:
        return None
    # The order of Table.all_items (moto re-sorts its matches by the index keys anyway).
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _cast(value: DynamoType) -> Any:
    """DynamoType.cast_value, without its chain of type tests for a string (the string)."""
    return value.value if value.type == "S" else value.cast_value


def _items_under(
    table: Table, attribute: str, value_type: str, cast_value: Any
) -> list[Item] | None:
    """The table's items whose `attribute` has this type and cast value; None while the table
    is written."""
    with _lock:
        writes = _writes_of(table)
        if writes.in_progress:
            # The map's count is already stale, and a build now would be refused below.
            return None
        count = writes.count
        built = writes.maps.get(attribute)
    if built is not None and built[0] == count:
        items_by_value = built[1]
    else:
        items_by_value = _items_by_value(table, attribute)
        with _lock:
            if items_by_value is None or writes.in_progress or writes.count != count:
                return None  # a write overlapped the build: the map may be torn
            writes.maps[attribute] = (count, items_by_value)
    return items_by_value.get(value_type, {}).get(cast_value, [])


def _items_by_value(table: Table, attribute: str) -> ItemsByValue | None:
    """Every item of the table that has `attribute`, by its value; None if the table's dicts
    changed under the walk (a request on another thread)."""
    items_by_value: ItemsByValue = {}
    try:
        # list() copies a dict's values in one step, with no Python code running between.
        stored = list(table.items.values())
        if table.range_key_attr:
            stored = [item for items in stored for item in list(items.values())]
    except RuntimeError:  # "dictionary changed size during iteration"
        return None
    for item in stored:
        if not isinstance(item, Item):
            continue  # as moto's Query skips it
        value = item.attrs.get(attribute)
        if value is None:
            continue
        of_type = items_by_value.get(value.type)
        if of_type is None:
            of_type = items_by_value[value.type] = {}
        try:
            cast_value = _cast(value)
            holding = of_type.get(cast_value)
        except TypeError:
            # An unhashable value (a set, list or map) never equals a hashable one, and
            # only Queries on hashable values use the map.
            continue
        except ArithmeticError:
            # A number moto cannot read: its Query reads one only against a number, and
            # fails then; no map, so that it still does.
            return None
        if holding is None:
            of_type[cast_value] = [item]
        else:
            holding.append(item)
    return items_by_value
