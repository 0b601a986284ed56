"""Recognising a sqlite limiter file before anything is written to it.

`limiter_url` may name any sqlite file, an application's own database included. Only a
file that is empty or exactly one of this store's layouts is initialised or upgraded;
anything else is refused untouched (no table created or dropped, its journal mode
kept), because upgrading layout 1 drops a table named `budget`.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from .._errors import LimiterUnavailableError
from .._lane_store import LANE_SCHEMA
from ._sqlite_rows import LAYOUT_1_COLUMNS, LAYOUT_VERSION, SCHEMA

__all__ = ["EMPTY", "LAYOUT_1", "check_layout"]

EMPTY: Final = 0  # no tables: initialise
LAYOUT_1: Final = 1  # this store's layout 1: upgrade (drops its budget and lease)


def _columns_of(script: str) -> dict[str, tuple[str, ...]]:
    """Each table's column names, as `script` creates them (in a throwaway database)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(script)
        return _tables(conn)
    finally:
        conn.close()


def _tables(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        name: tuple(row[1] for row in conn.execute(f'PRAGMA table_info("{name}")'))
        for name in names
    }


# The current layout's tables; layout 1 had these too, but its own budget and lease.
CURRENT: Final = _columns_of(SCHEMA + LANE_SCHEMA)
_OLD: Final = {**{k: v for k, v in CURRENT.items() if k != "budget"}, **LAYOUT_1_COLUMNS}


def _read_layout(conn: sqlite3.Connection) -> tuple[int, dict[str, tuple[str, ...]]]:
    return conn.execute("PRAGMA user_version").fetchone()[0], _tables(conn)


def check_layout(conn: sqlite3.Connection, path: str) -> int:
    """EMPTY, LAYOUT_1 or LAYOUT_VERSION (the current one) for the file open on `conn`.
    Raises LimiterUnavailableError, having changed nothing, for a file written by a
    newer okx_async or for any other database (its tables named in the message)."""
    if conn.in_transaction:
        version, tables = _read_layout(conn)
    else:
        # One read transaction: as two statements, another process initialising the
        # file could commit between them (user_version 0, then all its tables).
        conn.execute("BEGIN")
        try:
            version, tables = _read_layout(conn)
        finally:
            conn.execute("COMMIT")
    if version > LAYOUT_VERSION:
        raise LimiterUnavailableError(
            f"the sqlite limiter file {path} has layout {version}, written by a newer "
            f"okx_async (this one knows up to {LAYOUT_VERSION}): upgrade okx_async or "
            "point limiter_url at another file"
        )
    if not tables and version == 0:
        return EMPTY
    # Our marker: the `meta` table (with its epoch); every table one of ours, exactly.
    known = CURRENT if version == LAYOUT_VERSION else _OLD if version == 0 else {}
    if "meta" in tables and all(known.get(name) == cols for name, cols in tables.items()):
        return LAYOUT_1 if version == 0 else LAYOUT_VERSION
    found = ", ".join(sorted(tables)) or "no tables"
    raise LimiterUnavailableError(
        f"the file {path} is not an okx_async limiter file (user_version {version}; "
        f"tables: {found}); it was left untouched: point limiter_url at a file of its "
        "own, e.g. sqlite:///var/lib/okx-async/limits.db"
    )
