"""The durable alert outbox: what must reach each sink, kept in SQLite until it has.

Delivery is at-least-once. Each row is one action (trigger, acknowledge, resolve) of one alert
for one sink, with its payload already built (redacted, within the sink's limits). A delivery
task takes the rows that are due, sends them, and marks each one `sent`, `failed` (a refusal that
retrying cannot fix: a 4xx other than 408 and 429) or due again later: exponential backoff with
jitter, and never sooner than the server's Retry-After. Every change is committed before the next
send, with `synchronous = FULL`, so a process killed at any point resends at most the rows it was
sending; the sinks' stable keys (PagerDuty `dedup_key`, Opsgenie `alias`, Alertmanager labels)
make that resend harmless. Rows held back by a rate limit are `folded` into one aggregate row
and share its fate; rows made moot (a trigger never sent, then resolved) are `cancelled`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alerts.store import OutboxError, Store, one_line

__all__ = ["OUTBOX_FILE", "Item", "Outbox", "OutboxError", "Row", "backoff"]

OUTBOX_FILE: Final = "outbox.sqlite3"
BACKOFF_BASE: Final = 1.0
"""Seconds before the first retry; doubled at each further attempt..."""
BACKOFF_CAP: Final = 300.0
"""...up to this."""
RETRY_AFTER_CAP: Final = 3600.0
"""A Retry-After longer than this is taken as this (a broken header must not park an alert)."""


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
    """The outbox in `path` (created with its folder, owner-only, locked to this process)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = Store(path, clock)
        self.path = path
        self.clock = clock
        self.jitter = jitter
        self._db = self.store.db

    def close(self) -> None:
        """Close the file (everything is already committed)."""
        self.store.close()

    # writing ------------------------------------------------------------------------------------

    @one_line
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

    @one_line
    def sent(self, item: Item, detail: str = "") -> None:
        """The sink took it."""
        self._finish(item, "sent", detail)

    @one_line
    def failed(self, item: Item, detail: str) -> None:
        """The sink refused it for good (retrying cannot help); `detail` says why."""
        self._finish(item, "failed", detail)

    @one_line
    def retry(self, item: Item, detail: str, retry_after: float | None = None) -> float:
        """Try again later: after the backoff of this attempt, and not before the `retry_after`
        seconds the sink asked for (a Retry-After of 0 must not make a hot loop). Returns the
        delay chosen."""
        attempts = item.attempts + 1
        delay = backoff(attempts, self.jitter())
        if retry_after is not None and retry_after >= 0:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        self._db.execute(
            "UPDATE outbox SET attempts = ?, next_at = ?, detail = ? WHERE id = ?",
            (attempts, self.clock() + delay, detail, item.id),
        )
        return delay

    @one_line
    def defer(self, items: Sequence[Item], when: float) -> None:
        """Not yet (a rate limit): due again at `when`, no attempt counted."""
        with self.store.atomic():
            self._db.executemany(
                "UPDATE outbox SET next_at = ? WHERE id = ?", [(when, i.id) for i in items]
            )

    @one_line
    def fold(self, sink: str, key: str, payload: bytes, items: Sequence[Item]) -> int:
        """Queue one aggregate delivery standing for `items` (held back by a rate limit), which
        are `folded` into it, in one transaction; the aggregate's id."""
        with self.store.atomic():
            aggregate = self.enqueue(sink, key, "trigger", payload)
            self._db.executemany(
                "UPDATE outbox SET state = 'folded', folded_into = ?, detail = ? WHERE id = ?",
                [(aggregate, f"held by the rate limit: sent within {key}", i.id) for i in items],
            )
        return aggregate

    @one_line
    def settle_folded(self, aggregate: int, state: str, detail: str) -> list[Item]:
        """The aggregate was `sent` or `failed`: its folded rows too. Those rows."""
        with self.store.atomic():
            members = self.members(aggregate)
            self._db.execute(
                "UPDATE outbox SET state = ?, done_at = ?, detail = ?"
                " WHERE folded_into = ? AND state = 'folded'",
                (state, self.clock(), detail, aggregate),
            )
        return members

    @one_line
    def cancel(
        self, sink: str, key: str, keep: Collection[int] = (), actions: Collection[str] = ()
    ) -> int:
        """Cancel what is still queued of `key` for `sink` (only these `actions` when given;
        never the rows in `keep`, being sent now); how many."""
        ids = [
            id_
            for id_, action in self._db.execute(
                "SELECT id, action FROM outbox WHERE sink = ? AND key = ? AND state = 'queued'",
                (sink, key),
            )
            if id_ not in keep and (not actions or action in actions)
        ]
        now = self.clock()
        self._db.executemany(
            "UPDATE outbox SET state = 'cancelled', done_at = ?, detail = 'made moot' WHERE id = ?",
            [(now, id_) for id_ in ids],
        )
        return len(ids)

    def _finish(self, item: Item, state: str, detail: str) -> None:
        self._db.execute(
            "UPDATE outbox SET state = ?, attempts = ?, done_at = ?, detail = ? WHERE id = ?",
            (state, item.attempts + 1, self.clock(), detail, item.id),
        )

    @one_line
    def prune(self, before: float, open_keys: Collection[str]) -> int:
        """Forget deliveries done before `before` (unix time), but the latest trigger of each
        alert still open in each sink (an acknowledge must go where it went); how many."""
        with self.store.atomic():
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS open_keys (key TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM open_keys")
            self._db.executemany(
                "INSERT OR IGNORE INTO open_keys VALUES (?)", [(k,) for k in open_keys]
            )
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE state NOT IN ('queued', 'folded') AND done_at < ?"
                " AND NOT (key IN (SELECT key FROM open_keys) AND id IN (SELECT max(id)"
                " FROM outbox WHERE action = 'trigger' AND state != 'cancelled'"
                " GROUP BY sink, key))",
                (before,),
            )
        return cursor.rowcount

    # reading ------------------------------------------------------------------------------------

    @one_line
    def due(self, limit: int = 100, sink: str | None = None) -> list[Item]:
        """Queued deliveries whose time has come, oldest first (of one sink when given), only
        the head of each alert's queue."""
        rows = self._db.execute(
            "SELECT id, sink, key, action, payload, attempts FROM outbox AS o"
            " WHERE state = 'queued' AND next_at <= ? AND (? IS NULL OR sink = ?)"
            " AND id = (SELECT min(id) FROM outbox WHERE sink = o.sink AND key = o.key"
            " AND state = 'queued') ORDER BY next_at, id LIMIT ?",
            (self.clock(), sink, sink, limit),
        ).fetchall()
        return [Item(*row) for row in rows]

    @one_line
    def next_due(self, sink: str | None = None) -> float | None:
        """When the next delivery `due` would hand out is due (None when nothing is queued)."""
        row = self._db.execute(
            "SELECT min(next_at) FROM outbox AS o WHERE state = 'queued'"
            " AND (? IS NULL OR sink = ?) AND id = (SELECT min(id) FROM outbox"
            " WHERE sink = o.sink AND key = o.key AND state = 'queued')",
            (sink, sink),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    @one_line
    def depth(self, sink: str | None = None) -> int:
        """Deliveries still queued (for one sink when given), folded ones included."""
        return int(
            self._db.execute(
                "SELECT count(*) FROM outbox WHERE state IN ('queued', 'folded')"
                " AND (? IS NULL OR sink = ?)",
                (sink, sink),
            ).fetchone()[0]
        )

    @one_line
    def trigger(self, sink: str, key: str) -> tuple[bytes, int | None] | None:
        """The latest trigger of `key` queued for `sink`: its payload, and the aggregate it was
        folded into (None if it was not); None if there is none. An acknowledge or resolve goes
        where that trigger went."""
        row = self._db.execute(
            "SELECT payload, folded_into FROM outbox WHERE sink = ? AND key = ?"
            " AND action = 'trigger' AND state != 'cancelled' ORDER BY id DESC LIMIT 1",
            (sink, key),
        ).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def trigger_payload(self, sink: str, key: str) -> bytes | None:
        """The payload of `trigger`."""
        found = self.trigger(sink, key)
        return None if found is None else found[0]

    @one_line
    def reached(self, sink: str, key: str) -> bool:
        """Whether anything of `key` was ever delivered to `sink` (or is on its way within an
        aggregate)."""
        row = self._db.execute(
            "SELECT 1 FROM outbox WHERE sink = ? AND key = ? AND state IN ('sent', 'folded')"
            " LIMIT 1",
            (sink, key),
        ).fetchone()
        return row is not None

    @one_line
    def queued_ids(self, sink: str, key: str) -> list[int]:
        """The rows of `key` still queued for `sink`."""
        return [
            int(id_)
            for (id_,) in self._db.execute(
                "SELECT id FROM outbox WHERE sink = ? AND key = ? AND state = 'queued'",
                (sink, key),
            )
        ]

    @one_line
    def sent_since(self, sink: str, since: float) -> list[tuple[float, bytes]]:
        """When each delivery to `sink` done after `since` was done, and its payload, oldest
        first (a rate limit's window, rebuilt after a restart)."""
        return [
            (float(at), bytes(payload))
            for at, payload in self._db.execute(
                "SELECT done_at, payload FROM outbox WHERE sink = ? AND state = 'sent'"
                " AND folded_into IS NULL AND done_at > ? ORDER BY done_at",
                (sink, since),
            )
        ]

    @one_line
    def pending(self, sink: str, key: str) -> bool:
        """Whether a delivery of `key` to `sink` is still queued."""
        row = self._db.execute(
            "SELECT 1 FROM outbox WHERE sink = ? AND key = ? AND state = 'queued' LIMIT 1",
            (sink, key),
        ).fetchone()
        return row is not None

    @one_line
    def members(self, aggregate: int) -> list[Item]:
        """The rows folded into an aggregate."""
        rows = self._db.execute(
            "SELECT id, sink, key, action, payload, attempts FROM outbox WHERE folded_into = ?",
            (aggregate,),
        ).fetchall()
        return [Item(*row) for row in rows]

    @one_line
    def item(self, id_: int) -> Item | None:
        """One row by id."""
        row = self._db.execute(
            "SELECT id, sink, key, action, payload, attempts FROM outbox WHERE id = ?", (id_,)
        ).fetchone()
        return None if row is None else Item(*row)

    @one_line
    def states(self, ids: Collection[int]) -> dict[int, tuple[str, str, str]]:
        """(action, state, detail) of the given rows (those that still exist)."""
        found: dict[int, tuple[str, str, str]] = {}
        for id_ in ids:
            row = self._db.execute(
                "SELECT action, state, detail FROM outbox WHERE id = ?", (id_,)
            ).fetchone()
            if row is not None:
                found[id_] = (str(row[0]), str(row[1]), str(row[2]))
        return found

    @one_line
    def totals(self) -> dict[tuple[str, str], int]:
        """Deliveries per (sink, state): what the metrics export."""
        return {
            (sink, state): int(n)
            for sink, state, n in self._db.execute(
                "SELECT sink, state, count(*) FROM outbox GROUP BY sink, state"
            )
        }

    @one_line
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
