"""Hot statements: built once, compiled once per database, run straight on the transaction's DBAPI connection.

A rotation's step writer sends about nine statements per account (the `pushing` mark, the settle, the account's
new secret, its history row, the key-generation check). Through SQLAlchemy's execution layer each one costs
about 0.1 ms of CPU besides the database's own work (execution context, events, result set-up), taken from the
GIL the drivers' threads need while they wait for hosts. A HotStatement compiles its statement once per dialect
with named parameters and runs it on the DBAPI connection of the SQLAlchemy Connection it is given: the same
connection and the same transaction, so it commits or rolls back with everything else written there. Values
go through the column types' own bind and result processors, so they are stored and read exactly as through
SQLAlchemy (a SQLite datetime is the same text either way; tests/unit/test_hotsql.py compares both).

Only SQLite (pysqlite, which takes :name parameters) and PostgreSQL (psycopg, %(name)s) run this way; any other
dialect runs the statement through SQLAlchemy, unchanged.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_DIRECT = ("sqlite", "postgresql")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]  # values the statement carries itself (a literal None in SET, say)
    binds: Mapping[str, Callable[[Any], Any]]  # parameter name -> bind processor (only those that have one)
    columns: tuple[str, ...]  # names of the result columns (a SELECT or RETURNING)
    results: tuple[Callable[[Any], Any] | None, ...]  # their result processors


class HotResult:
    """What a HotStatement gives back: the row count and the rows, processed like SQLAlchemy's."""

    def __init__(self, rowcount: int, columns: tuple[str, ...], rows: Sequence[Sequence[Any]],
                 results: tuple[Callable[[Any], Any] | None, ...]) -> None:
        self.rowcount = rowcount
        self._columns = columns
        self._rows = rows
        self._results = results

    def first(self) -> dict[str, Any] | None:
        """The first row as {column: value}, or None."""
        if not self._rows:
            return None
        return {name: (proc(value) if proc is not None else value)
                for name, proc, value in zip(self._columns, self._results, self._rows[0])}

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        row = self.first()
        return None if row is None else row[self._columns[0]]


class HotStatement:
    """One prebuilt statement, executed with plain parameter dicts on whichever database the connection is."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt: Any = stmt  # an Executable ClauseElement (a select, insert, update or text)
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> HotResult:
        """Run on conn's transaction; the result is read in full before this returns."""
        dialect = conn.dialect
        if dialect.name not in _DIRECT:
            result = conn.execute(self.stmt, dict(params))
            rows = result.fetchall() if result.returns_rows else []
            names = tuple(result.keys()) if result.returns_rows else ()
            return HotResult(result.rowcount, names, rows, (None,) * len(names))
        compiled = self._compiled(dialect)
        if compiled.defaults:
            params = {**compiled.defaults, **params}
        if compiled.binds:
            params = {k: (compiled.binds[k](v) if k in compiled.binds else v) for k, v in params.items()}
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall() if compiled.columns else []
            return HotResult(cursor.rowcount, compiled.columns, rows, compiled.results)
        finally:
            cursor.close()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        hit = self._by_dialect.get(dialect.name)
        if hit is not None:
            return hit
        with self._lock:
            named = dialect
            if dialect.positional:  # pysqlite: compile with :name parameters, which it takes as a dict
                named = copy.copy(dialect)
                named.paramstyle, named.positional = "named", False
            compiled = cast(SQLCompiler, self.stmt.compile(dialect=named))
            binds, defaults = {}, {}
            for name, param in compiled.binds.items():
                proc = param.type.dialect_impl(named).bind_processor(named)
                if proc is not None:
                    binds[name] = proc
                if not param.required:
                    defaults[name] = param.effective_value
            columns = tuple(getattr(self.stmt, "exported_columns", ()))
            hit = _Compiled(
                compiled.string, defaults, binds, tuple(c.key for c in columns),
                tuple(c.type.dialect_impl(named).result_processor(named, None) for c in columns),
            )
            self._by_dialect[dialect.name] = hit
            return hit
