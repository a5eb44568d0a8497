"""Filters to SQL. The SQL text comes only from this module; every key, value, pattern and time
from the request is a bound parameter, and JSON property keys travel as a bound path (`$."key"`).

A compiled filter is a boolean expression over one row of the query it is put in:

    persons   FROM persons p                                       person = p.id
    sessions  FROM sessions s LEFT JOIN distinct_ids sp ON ...      person = sp.person_id
    events    FROM events e LEFT JOIN distinct_ids d ON ...         person = d.person_id

Comparisons read JSON (a person attribute's stored value, or an event's properties) through the
store's dialect (store/dialects.py: `json_type` and `json_extract` on SQLite, jsonb on
PostgreSQL), so types never mix: "1" does not equal 1, and a boolean is not a number. Times
compare as SQLite's `julianday()` reads them: ISO-8601 texts in any UTC offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from idstitch.clock import format_time
from idstitch.query.filters import (
    MAX_DEPTH,
    MAX_NODES,
    NEGATIVE_OPS,
    AllOf,
    AnyOf,
    AttributeCondition,
    DidCondition,
    FilterError,
    FilterNode,
    NoneOf,
    PropertyCondition,
    SegmentCondition,
    dump_filter,
    parse_filter,
)
from idstitch.query.moments import julian_day, parse_moment
from idstitch.query.patterns import MAX_SUBJECT_LENGTH, PatternGuard
from idstitch.regexes import pattern_for
from idstitch.store.connection import Connection
from idstitch.store.dialects import PatternRefused, Sql, StatementTimeout

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode

# TRUE and FALSE are SQL both stores read (SQLite's are 1 and 0), so a condition can be one.
TRUE = Sql("TRUE")


def join(parts: list[Sql], glue: str) -> Sql:
    if not parts:
        return TRUE
    if len(parts) == 1:
        return parts[0]
    return Sql("(" + f" {glue} ".join(p.text for p in parts) + ")", tuple(v for p in parts for v in p.params))


def negate(part: Sql) -> Sql:
    return Sql(f"(NOT coalesce({part.text}, FALSE))", part.params)


class Scope(StrEnum):
    PERSONS = "persons"
    SESSIONS = "sessions"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class Target:
    """What a filter is about: the scope, the SQL of the row's person id, and the row's alias."""

    scope: Scope
    person: str
    row: str


PERSONS = Target(Scope.PERSONS, "p.id", "p")
SESSIONS = Target(Scope.SESSIONS, "sp.person_id", "s")
EVENTS = Target(Scope.EVENTS, "d.person_id", "e")

_ORDER = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "after": ">", "before": "<"}


class Compiler:
    """Compiles filters for one project at one moment (relative times resolve against `now`)."""

    def __init__(self, conn: Connection, project_id: int, now: datetime, *, catalog: Connection | None = None) -> None:
        self.conn = conn
        # Where saved segments are read: the store, when the query runs on the analytics copy.
        self.catalog = catalog or conn
        self.dialect = conn.dialect
        self.project_id = project_id
        self.now = now
        self._nodes = 0
        self._aliases = 0
        # Whether what it compiled reads events (a `did`): the analytics copy answers those best.
        self.reads_events = False
        # Inside `sharing_person_sets`: the temporary tables of the `did` sets computed so far.
        self._kept_sets: dict[tuple[bytes, tuple[Any, ...]], str] | None = None

    def compile(self, node: FilterNode | None, target: Target, path: str = "filter") -> Sql:
        if node is None:
            return TRUE
        return self._node(node, target, path, 0, ())

    def segment(self, segment_id: int, target: Target, path: str = "segment_id") -> Sql:
        return self._node(SegmentCondition(segment=segment_id), target, path, 0, ())

    def new_query(self) -> None:
        """What it compiles next is for another query: the limit on conditions starts over."""
        self._nodes = 0

    @contextmanager
    def sharing_person_sets(self) -> Iterator[None]:
        """Within, each `did` condition's set of persons is computed once however many queries
        compile it (a page's chart and its persons list), where the dialect keeps such sets."""
        self._kept_sets = {}
        try:
            yield
        finally:
            kept, self._kept_sets = self._kept_sets, None
            for name in kept.values():
                self.conn.execute(f"DROP TABLE IF EXISTS {name}")

    def _person_set(self, node: DidCondition, select: str, params: tuple[Any, ...]) -> Sql:
        """`select` (the persons of `node`, one `person_id` column) as the source of an `IN`:
        kept or inline. Kept by the condition and its bound values (its SQL's aliases differ)."""
        if self._kept_sets is None:
            return Sql(select, params)
        key = (_encode(dump_filter(node)), params)
        name = self._kept_sets.get(key)
        if name is None:
            name = f"person_set_{len(self._kept_sets) + 1}"
            statement = self.dialect.keep_person_set(name, select)
            if statement is None:
                return Sql(select, params)
            self._kept_sets[key] = name
            self.conn.execute(statement, params)
        return Sql(f"SELECT person_id FROM {name}")

    def moment(self, text: str, path: str) -> datetime:
        try:
            return parse_moment(text, self.now)
        except ValueError as error:
            raise FilterError([(path, str(error))]) from None

    # -- nodes -------------------------------------------------------------------------------

    def _node(self, node: FilterNode, target: Target, path: str, depth: int, seen: tuple[int, ...]) -> Sql:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise FilterError([(path, f"a filter has at most {MAX_NODES} conditions (segments included)")])
        if depth > MAX_DEPTH:
            raise FilterError([(path, f"a filter nests at most {MAX_DEPTH} levels (segments included)")])
        if isinstance(node, AllOf):
            return join([self._node(c, target, f"{path}.and[{i}]", depth + 1, seen) for i, c in enumerate(node.all_of)], "AND")
        if isinstance(node, AnyOf):
            return join([self._node(c, target, f"{path}.or[{i}]", depth + 1, seen) for i, c in enumerate(node.any_of)], "OR")
        if isinstance(node, NoneOf):
            return negate(self._node(node.negated, target, f"{path}.not", depth + 1, seen))
        if isinstance(node, AttributeCondition):
            return self._attribute(node, target, path)
        if isinstance(node, PropertyCondition):
            return self._property(node, target, path)
        if isinstance(node, DidCondition):
            return self._did(node, target, path, depth, seen)
        if isinstance(node, SegmentCondition):
            return self._segment(node, target, path, depth, seen)
        raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover

    def _alias(self, prefix: str) -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def _attribute(self, node: AttributeCondition, target: Target, path: str) -> Sql:
        a = self._alias("pa")
        positive = NEGATIVE_OPS.get(node.op, node.op)
        values = node.value if positive == "in" else [node.value]
        if positive in ("equals", "in") and all(isinstance(v, str) for v in values):
            # Strings are stored as their JSON text, so equality reads person_attributes_by_key:
            # the set of persons is computed once, however many rows the query walks.
            texts = [_encode(v).decode() for v in values]
            found = Sql(
                f"coalesce({target.person} IN (SELECT {a}.person_id FROM person_attributes {a} WHERE {a}.key = ?"
                f" AND {a}.value IN ({_marks(texts)}) AND {a}.kind != 'unset'), FALSE)",
                (node.attribute, *texts),
            )
            return negate(found) if node.op in NEGATIVE_OPS else found
        test = self._compare(self.dialect.json_document(f"{a}.value"), None, node.op, node.value, path)
        found = Sql(
            f"EXISTS (SELECT 1 FROM person_attributes {a} WHERE {a}.person_id = {target.person}"
            f" AND {a}.key = ? AND {a}.kind != 'unset' AND {test.text})",
            (node.attribute, *test.params),
        )
        return negate(found) if node.op in NEGATIVE_OPS else found

    def _property(self, node: PropertyCondition, target: Target, path: str) -> Sql:
        key = node.property
        if target.scope is Scope.PERSONS:
            raise FilterError([(
                f"{path}.property",
                "persons have attributes, not event properties: use {\"attribute\": ...}, or"
                " {\"did\": <event>, \"where\": {\"property\": ...}} for the properties of their events",
            )])
        if target.scope is Scope.EVENTS:
            test = self._compare(f"{target.row}.properties", key, node.op, node.value, path)
            found = Sql(f"coalesce({test.text}, FALSE)", test.params)
        else:
            se = self._alias("se")
            s = target.row
            test = self._compare(f"{se}.properties", key, node.op, node.value, path)
            found = Sql(
                self.dialect.exists_per_row(
                    f"SELECT 1 FROM events {se} WHERE {se}.project_id = {s}.project_id"
                    f" AND {se}.distinct_id IN (SELECT value FROM {self.dialect.json_array_values(f'{s}.distinct_ids')})"
                    f" AND {se}.timestamp BETWEEN {s}.first_at AND {s}.last_at AND {se}.session_id = {s}.session_id"
                    f" AND {test.text}"
                ),
                test.params,
            )
        return negate(found) if node.op in NEGATIVE_OPS else found

    def _did(self, node: DidCondition, target: Target, path: str, depth: int, seen: tuple[int, ...]) -> Sql:
        self.reads_events = True
        ev, dd = self._alias("ev"), self._alias("dd")
        conditions = [Sql(f"{ev}.project_id = ? AND {ev}.event = ?", (self.project_id, node.did))]
        if node.after is not None:
            conditions.append(Sql(f"{ev}.timestamp >= ?", (format_time(self.moment(node.after, f"{path}.after")),)))
        if node.before is not None:
            conditions.append(Sql(f"{ev}.timestamp < ?", (format_time(self.moment(node.before, f"{path}.before")),)))
        if node.where is not None:
            inner = Target(Scope.EVENTS, f"{dd}.person_id", ev)
            conditions.append(self._node(node.where, inner, f"{path}.where", depth + 1, seen))
        where = join(conditions, "AND")
        # Uncorrelated: the set of persons is computed once, then each row is tested against it.
        # Without a `where` (which may test the person: `{dd}.person_id`), the events are counted
        # per distinct id before the join: a column store then joins one row per id, not per
        # event (DuckDB: 1.3 to 1.5 times faster; SQLite: the same).
        on, key = self.dialect.same_distinct_id(ev, dd), self.dialect.distinct_id_key(ev)
        if node.where is None:
            persons = (
                f"SELECT {dd}.person_id FROM (SELECT {key}, count(*) AS n FROM events {ev}"
                f" WHERE {where.text} GROUP BY {key}) {ev} JOIN distinct_ids {dd} ON {on}"
                f" GROUP BY {dd}.person_id HAVING sum({ev}.n) >= ?"
            )
        else:
            persons = (
                f"SELECT {dd}.person_id FROM events {ev} JOIN distinct_ids {dd} ON {on}"
                f" WHERE {where.text} GROUP BY {dd}.person_id HAVING count(*) >= ?"
            )
        found = self._person_set(node, persons, (*where.params, node.min_count))
        return Sql(f"coalesce({target.person} IN ({found.text}), FALSE)", found.params)

    def _segment(self, node: SegmentCondition, target: Target, path: str, depth: int, seen: tuple[int, ...]) -> Sql:
        if node.segment in seen:
            raise FilterError([(path, f"segment {node.segment} refers to itself through {list(seen)}")])
        row = self.catalog.execute(
            "SELECT filter FROM segments WHERE project_id = ? AND id = ?", (self.project_id, node.segment)
        ).fetchone()
        if row is None:
            where = path if path == "segment_id" else f"{path}.segment"
            raise FilterError([(where, f"no saved segment has id {node.segment}")])
        inner = parse_filter(msgspec.json.decode(row[0]), root=f"segment {node.segment}")
        return self._node(inner, target, f"segment {node.segment}", depth + 1, (*seen, node.segment))

    # -- comparisons ---------------------------------------------------------------------------

    def _compare(self, doc: str, key: str | None, op: str, value: Any, path: str) -> Sql:
        """The positive form of `op` on the JSON value at `key` of `doc` (None: `doc` itself);
        negation is the caller's."""
        op = NEGATIVE_OPS.get(op, op)
        dialect = self.dialect
        if op == "is_set":
            return dialect.json_is_set(doc, key)
        if op in ("equals", "in"):
            return dialect.json_in(doc, key, value if op == "in" else [value])
        if op == "contains":
            return dialect.json_contains(doc, key, value, self._alias("je"))
        if op == "regex":
            try:
                pattern = pattern_for(dialect.regex_syntax, value)
            except ValueError as error:
                raise FilterError([(f"{path}.value", str(error))]) from None
            return dialect.json_matches(doc, key, pattern, longest=MAX_SUBJECT_LENGTH)
        sign = _ORDER[op]
        if op in ("gt", "gte", "lt", "lte") and isinstance(value, (int, float)) and not isinstance(value, bool):
            return dialect.json_compare_number(doc, key, sign, value)
        moment = self.moment(value, f"{path}.value")
        return dialect.json_compare_time(doc, key, sign, julian_day(moment))


def _marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


def where_clause(compiler: Compiler, target: Target, node: FilterNode | None, segment_id: int | None) -> Sql:
    """A query's filter and saved segment, both applied (the limit on conditions counts the
    conditions of this query: a page may compile one filter for several)."""
    compiler.new_query()
    parts = [compiler.compile(node, target)] if node is not None else []
    if segment_id is not None:
        parts.append(compiler.segment(segment_id, target))
    return join(parts, "AND")


def run_guarded(
    conn: Connection, project_id: int, now: datetime, fn: Callable[[Connection, Compiler], T], *,
    catalog: Connection | None = None,
) -> T:
    """Run a query function with a compiler for the project, under the query time budget
    (`catalog`: where saved segments are, if not on `conn`).

    A regex that spends its budget (SQLite), or a statement that outlasts it (PostgreSQL), aborts
    the query; that is the filter's fault, said as such.
    """
    guard = PatternGuard()
    guard.install(conn)
    try:
        with conn.dialect.time_limit(conn, guard.budget):
            return fn(conn, Compiler(conn, project_id, now, catalog=catalog))
    except StatementTimeout:
        raise FilterError([(
            "filter",
            f"this query spent more than {guard.budget:g} s on one statement; use a simpler filter (a regex,"
            " say) or narrow the query first",
        )]) from None
    except PatternRefused as error:
        raise FilterError([("filter", f"the database refused a regex of this filter: {error}")]) from None
    except Exception:
        # The registered function's error reaches here as the driver's (sqlite3.OperationalError).
        if guard.exhausted_by is not None:
            raise FilterError([(
                "filter",
                f"regex {guard.exhausted_by!r} spent more than {guard.budget:g} s of this query;"
                " use a simpler pattern or narrow the query first",
            )]) from None
        raise
