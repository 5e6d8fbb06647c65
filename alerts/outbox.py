"""The durable alert outbox: what must reach each sink, kept in SQLite until it has.

Delivery is at-least-once. Each row is one action (trigger, acknowledge, resolve) of one alert
for one sink, with its payload already built (redacted, within the sink's limits). A delivery
task takes the rows that are due, sends them, and marks each one `sent`, `failed` (a refusal that
retrying cannot fix: a 4xx other than 408 and 429) or due again later: exponential backoff with
jitter, or exactly the server's Retry-After. Every change is committed before the next send, with
`synchronous = FULL`, so a process killed at any point resends at most the row it was sending;
the sinks' stable keys (PagerDuty `dedup_key`, Opsgenie `alias`, Alertmanager labels) make that
resend harmless.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

OUTBOX_FILE: Final = "outbox.sqlite3"
SCHEMA_VERSION: Final = 2
BACKOFF_BASE: Final = 1.0
"""Seconds before the first retry; doubled at each further attempt..."""
BACKOFF_CAP: Final = 300.0
"""...up to this."""
RETRY_AFTER_CAP: Final = 3600.0
"""A Retry-After longer than this is taken as this (a broken header must not park an alert)."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    next_at REAL NOT NULL,
    done_at REAL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key);
CREATE INDEX IF NOT EXISTS outbox_head ON outbox (sink, key, state, id);
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox file cannot be opened, read or written (a full disk, a file that is not
    ours); `str()` is one line."""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _one_line(method: _Method) -> _Method:
    """SQLite's errors (disk full, I/O error, locked) as an OutboxError naming the file."""

    @functools.wraps(method)
    def guarded(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: {exc}") from None

    return guarded  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Item:
    """One delivery to make."""

    id: int
    sink: str
    key: str
    action: str
    payload: bytes
    attempts: int
    """Attempts made so far."""


@dataclass(frozen=True, slots=True)
class Row:
    """A delivery's state, as the dashboard and the metrics show it."""

    sink: str
    key: str
    action: str
    state: str
    attempts: int
    detail: str


def backoff(attempts: int, jitter: float) -> float:
    """Seconds to wait after `attempts` failed attempts; `jitter` in [0, 1) spreads retries of many
    alerts over the second half of the interval ("equal jitter").

    >>> backoff(1, 0.0), backoff(2, 0.0), backoff(3, 0.999)
    (0.5, 1.0, 3.998)
    >>> backoff(30, 0.0)
    150.0
    """
    interval: float = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(attempts - 1, 0))
    return round(interval / 2 + interval / 2 * jitter, 3)


class Outbox:
    """The outbox in `path` (created with its folder, owner-only)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.path = path
        self.clock = clock
        self.jitter = jitter
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.touch(mode=0o600, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA busy_timeout = 5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"{path}: outbox schema {version}, this tablewatch knows {SCHEMA_VERSION}"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{path}: not a tablewatch outbox ({exc})") from None
        except OSError as exc:
            raise OutboxError(f"{path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the file (everything is already committed)."""
        self._db.close()

    # writing ------------------------------------------------------------------------------------

    @_one_line
    def enqueue(
        self, sink: str, key: str, action: str, payload: bytes, *, due_at: float | None = None
    ) -> int:
        """Queue one delivery, due now (or at `due_at`); its id."""
        now = self.clock()
        cursor = self._db.execute(
            "INSERT INTO outbox (sink, key, action, payload, created, next_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (sink, key, action, payload, now, now if due_at is None else max(now, due_at)),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @_one_line
    def sent(self, item: Item, detail: str = "") -> None:
        """The sink took it."""
        self._finish(item, "sent", detail)

    @_one_line
    def failed(self, item: Item, detail: str) -> None:
        """The sink refused it for good (retrying cannot help); `detail` says why."""
        self._finish(item, "failed", detail)

    @_one_line
    def retry(self, item: Item, detail: str, retry_after: float | None = None) -> float:
        """Try again later: after `retry_after` seconds when the sink said so, else after the
        backoff of this attempt. Returns the delay chosen."""
        attempts = item.attempts + 1
        if retry_after is not None and retry_after >= 0:
            delay = min(retry_after, RETRY_AFTER_CAP)
        else:
            delay = backoff(attempts, self.jitter())
        self._db.execute(
            "UPDATE outbox SET attempts = ?, next_at = ?, detail = ? WHERE id = ?",
            (attempts, self.clock() + delay, detail, item.id),
        )
        return delay

    @_one_line
    def defer(self, item: Item, when: float) -> None:
        """Not yet (a rate limit): due again at `when`, no attempt counted."""
        self._db.execute("UPDATE outbox SET next_at = ? WHERE id = ?", (when, item.id))

    def _finish(self, item: Item, state: str, detail: str) -> None:
        self._db.execute(
            "UPDATE outbox SET state = ?, attempts = ?, done_at = ?, detail = ? WHERE id = ?",
            (state, item.attempts + 1, self.clock(), detail, item.id),
        )

    # reading ------------------------------------------------------------------------------------

    @_one_line
    def due(self, limit: int = 100, sink: str | None = None) -> list[Item]:
        """Queued deliveries whose time has come, oldest first (of one sink when given).

        Only the oldest queued delivery of each (sink, key) is ever due: an alert's resolve
        never overtakes its trigger that is still being retried.
        """
        rows = self._db.execute(
            "SELECT id, sink, key, action, payload, attempts FROM outbox AS o"
            " WHERE state = 'queued' AND next_at <= ? AND (? IS NULL OR sink = ?)"
            " AND id = (SELECT min(id) FROM outbox WHERE sink = o.sink AND key = o.key"
            " AND state = 'queued') ORDER BY next_at, id LIMIT ?",
            (self.clock(), sink, sink, limit),
        ).fetchall()
        return [Item(*row) for row in rows]

    @_one_line
    def next_due(self, sink: str | None = None) -> float | None:
        """When the next queued delivery is due (None when nothing is queued)."""
        row = self._db.execute(
            "SELECT min(next_at) FROM outbox WHERE state = 'queued' AND (? IS NULL OR sink = ?)",
            (sink, sink),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    @_one_line
    def depth(self, sink: str | None = None) -> int:
        """Deliveries still queued (for one sink when given)."""
        return int(
            self._db.execute(
                "SELECT count(*) FROM outbox WHERE state = 'queued' AND (? IS NULL OR sink = ?)",
                (sink, sink),
            ).fetchone()[0]
        )

    @_one_line
    def trigger_payload(self, sink: str, key: str) -> bytes | None:
        """The payload of the latest trigger of `key` queued for `sink` (None if none): an
        acknowledge or resolve goes where that trigger went."""
        row = self._db.execute(
            "SELECT payload FROM outbox WHERE sink = ? AND key = ? AND action = 'trigger'"
            " ORDER BY id DESC LIMIT 1",
            (sink, key),
        ).fetchone()
        return None if row is None else bytes(row[0])

    @_one_line
    def pending(self, sink: str, key: str) -> bool:
        """Whether a delivery of `key` to `sink` is still queued."""
        row = self._db.execute(
            "SELECT 1 FROM outbox WHERE sink = ? AND key = ? AND state = 'queued' LIMIT 1",
            (sink, key),
        ).fetchone()
        return row is not None

    @_one_line
    def totals(self) -> dict[tuple[str, str], int]:
        """Deliveries per (sink, state): what the metrics export."""
        return {
            (sink, state): int(n)
            for sink, state, n in self._db.execute(
                "SELECT sink, state, count(*) FROM outbox GROUP BY sink, state"
            )
        }

    # alerts and counters: the state of each alert, kept with its deliveries ------------------

    @_one_line
    def save_alert(self, key: str, record: str) -> None:
        """Keep an alert's record (JSON text), replacing the previous one."""
        self._db.execute(
            "INSERT INTO alerts (key, record, updated) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET record = excluded.record, updated = excluded.updated",
            (key, record, self.clock()),
        )

    @_one_line
    def save_alerts(self, records: dict[str, str], counters: dict[str, int]) -> None:
        """Several alert records and counters in one transaction."""
        now = self.clock()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO alerts (key, record, updated) VALUES (?, ?, ?) ON CONFLICT (key)"
                " DO UPDATE SET record = excluded.record, updated = excluded.updated",
                [(key, record, now) for key, record in records.items()],
            )
            self._db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                list(counters.items()),
            )

    @_one_line
    def alert_records(self, limit: int) -> list[str]:
        """The most recently updated alert records, oldest first."""
        rows = self._db.execute(
            "SELECT record FROM (SELECT record, updated, rowid FROM alerts"
            " ORDER BY updated DESC, rowid DESC LIMIT ?) ORDER BY updated, rowid",
            (limit,),
        ).fetchall()
        return [str(row[0]) for row in rows]

    @_one_line
    def counters(self) -> dict[str, int]:
        """Every counter kept."""
        return {str(n): int(v) for n, v in self._db.execute("SELECT name, value FROM counters")}

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @_one_line
    def rows(self, key: str) -> list[Row]:
        """Every delivery of one alert, in the order queued."""
        return [
            Row(*row)
            for row in self._db.execute(
                "SELECT sink, key, action, state, attempts, detail FROM outbox"
                " WHERE key = ? ORDER BY id",
                (key,),
            )
        ]
