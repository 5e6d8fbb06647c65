"""The alert path's SQLite file in the state dir: opened once, owner-only, by one process.

The outbox (`alerts.outbox`) and the alerts' records (`alerts.records`) live in the same file so
that one action (the deliveries it queues and the alert's new state) commits as one transaction.
Two tablewatch processes on one state dir would both deliver every alert: the file is locked
(`flock`) for as long as it is open, and a second opener is refused in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

SCHEMA_VERSION: Final = 2

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sent', 'failed', 'folded', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    next_at REAL NOT NULL,
    done_at REAL,
    detail TEXT NOT NULL DEFAULT '',
    folded_into INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key);
CREATE INDEX IF NOT EXISTS outbox_head ON outbox (sink, key, state, id);
CREATE INDEX IF NOT EXISTS outbox_folded ON outbox (folded_into) WHERE folded_into IS NOT NULL;
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    updated REAL NOT NULL,
    resolved INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(Exception):
    """The alert file cannot be opened, read or written (a full disk, a file that is not ours,
    another tablewatch using it); `str()` is one line."""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def one_line(method: _Method) -> _Method:
    """SQLite's errors (disk full, I/O error) as an OutboxError naming the file."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: {exc}") from None

    return guarded  # type: ignore[return-value]


class Store:
    """The open, locked SQLite file at `path` (created with its folder, owner-only)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._depth = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.touch(mode=0o600, exist_ok=True)
            self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutboxError(f"{path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise OutboxError(
                f"{path}: in use by another tablewatch on this state dir (a dashboard or an "
                "agent): one process delivers the alerts"
            ) from None
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"{path}: outbox schema {version}, this tablewatch knows {SCHEMA_VERSION}"
                )
            if version == 1:
                self._from_v1()
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise OutboxError(f"{path}: not a tablewatch outbox ({exc})") from None
        except OutboxError:
            self.close()
            raise

    def _from_v1(self) -> None:
        """Schema 1 (the queue alone, three states) to 2: the table is rebuilt."""
        with self.atomic():
            self.db.execute("ALTER TABLE outbox RENAME TO outbox_v1")
            self.db.execute("DROP INDEX IF EXISTS outbox_due")
            self.db.execute("DROP INDEX IF EXISTS outbox_key")
            self.db.execute("DROP INDEX IF EXISTS outbox_head")
            self.db.execute(_SCHEMA.split("CREATE INDEX", 1)[0])  # the table alone
            self.db.execute(
                "INSERT INTO outbox (id, sink, key, action, payload, state, attempts, created,"
                " next_at, done_at, detail) SELECT id, sink, key, action, payload, state,"
                " attempts, created, next_at, done_at, detail FROM outbox_v1"
            )
            self.db.execute("DROP TABLE outbox_v1")

    def close(self) -> None:
        """Close the file (everything is already committed) and let another process have it."""
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self.db.close()
        with contextlib.suppress(OSError):
            os.close(self._lock)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction around everything inside (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._execute("COMMIT")

    @one_line
    def _execute(self, statement: str) -> None:
        self.db.execute(statement)
