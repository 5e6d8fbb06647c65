"""The alerts' own state (one JSON record per alert) and the alert counters, kept in the outbox's
file so that an action and the deliveries it queues commit together."""

from __future__ import annotations

from collections.abc import Mapping

from alerts.store import Store, one_line


class Records:
    """Alert records and counters in `store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.path
        self._db = store.db

    @one_line
    def save(self, records: Mapping[str, tuple[str, bool]], counters: Mapping[str, int]) -> None:
        """Keep records (`key -> (JSON text, resolved)`) and counters, in one transaction."""
        now = self.store.clock()
        with self.store.atomic():
            self._db.executemany(
                "INSERT INTO alerts (key, record, updated, resolved) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET record = excluded.record,"
                " updated = excluded.updated, resolved = excluded.resolved",
                [(key, text, now, int(done)) for key, (text, done) in records.items()],
            )
            self._db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                list(counters.items()),
            )

    @one_line
    def load(self, resolved: int) -> list[str]:
        """Every open alert's record and the `resolved` most recent resolved ones, least
        recently updated first."""
        rows = self._db.execute(
            "SELECT record FROM (SELECT record, updated, rowid FROM alerts WHERE resolved = 0"
            " UNION ALL SELECT * FROM (SELECT record, updated, rowid FROM alerts"
            " WHERE resolved = 1 ORDER BY updated DESC, rowid DESC LIMIT ?))"
            " ORDER BY updated, rowid",
            (resolved,),
        ).fetchall()
        return [str(row[0]) for row in rows]

    @one_line
    def counters(self) -> dict[str, int]:
        """Every counter kept."""
        return {str(n): int(v) for n, v in self._db.execute("SELECT name, value FROM counters")}

    @one_line
    def prune(self, before: float) -> int:
        """Forget alerts resolved before `before` (unix time); how many."""
        cursor = self._db.execute(
            "DELETE FROM alerts WHERE resolved = 1 AND updated < ?", (before,)
        )
        return cursor.rowcount
