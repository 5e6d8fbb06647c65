"""Live statistics sources over asyncpg: what the database itself counts, to cross-check the audit
log (which can be blind: COPY TO and cursors with `pgaudit.log_rows = on`, SECURITY DEFINER
functions, a REVOKE from the audit role).

`DatabaseLink` is one connection of the monitoring role, with a statement_timeout, reconnected
with backoff (RETRY_SECONDS doubling to RETRY_MAX_SECONDS) whenever it breaks; its state is the
source's health. `TableStatsSource` polls `pg_stat_all_tables` for the watched tables every
interval and hands out the scans and tuples each table gave out since the previous poll
(`core.dbside.TableReads`): a counter that went down (statistics reset, a crash) starts a new
baseline, never a negative read, and a server restart is noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]

from core.dbside import Observations, TableReads
from core.events import us_from_utc
from core.safetext import safe
from core.sources import SourceHealth
from core.tables import TableName

SQL: Final = (Path(__file__).parent / "sql" / "table_stats.sql").read_text()
CONNECT_SECONDS: Final = 5.0
RETRY_SECONDS: Final = 1.0
RETRY_MAX_SECONDS: Final = 30.0

_T = TypeVar("_T")


class DatabaseLink:
    """The monitoring role's connection: opened on demand, dropped on any failure and opened
    again after a pause that grows while the database stays away."""

    def __init__(
        self,
        dsn: str,
        password: str | None = None,
        *,
        statement_timeout: float = 5.0,
        application_name: str = "tablewatch",
    ) -> None:
        self.dsn = dsn
        self.password = password
        self.statement_timeout = statement_timeout
        self.application_name = application_name
        self.problem = ""
        """Why the link is down ("" : it is up, or was never tried)."""
        self.down_since: float | None = None
        self._conn: asyncpg.Connection | None = None
        self._pause = RETRY_SECONDS
        self._next_try = 0.0

    async def fetch(self, sql: str, *args: object) -> list[Any]:
        """Run `sql`; raises ConnectionError (with the reason, one line) when the database cannot
        answer now: the caller tries again at its next turn."""
        now = time.monotonic()
        if self._conn is None:
            if now < self._next_try:
                raise ConnectionError(self.problem or "waiting to reconnect")
            try:
                self._conn = await self.connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self._failed(exc, now)
                raise ConnectionError(self.problem) from None
        try:
            rows: list[Any] = await self._conn.fetch(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            await self.close()
            self._failed(exc, now)
            raise ConnectionError(self.problem) from None
        self.problem, self.down_since, self._pause = "", None, RETRY_SECONDS
        return rows

    async def connect(self) -> asyncpg.Connection:
        """A new connection with the link's settings (the caller owns it); asyncpg's errors
        as they come."""
        return await asyncpg.connect(
            self.dsn,
            password=self.password,
            timeout=CONNECT_SECONDS,
            server_settings={
                "application_name": self.application_name,
                "statement_timeout": str(int(self.statement_timeout * 1000)),
            },
        )

    def _failed(self, exc: BaseException, now: float) -> None:
        if isinstance(exc, OSError) and exc.errno and exc.errno > 0:  # the OS's own words
            said = f"cannot connect: {os.strerror(exc.errno).lower()}"
        else:
            said = f"{type(exc).__name__}: {exc}"
        self.problem = safe(said, 300)
        if self.down_since is None:
            self.down_since = now
        self._next_try = now + self._pause
        self._pause = min(self._pause * 2, RETRY_MAX_SECONDS)

    async def close(self) -> None:
        """Drop the connection (it is opened again when needed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()


async def polling(
    poll: Callable[[], Awaitable[_T]], interval: float, link: DatabaseLink
) -> AsyncGenerator[_T, None]:
    """`poll()`'s results every `interval` seconds until cancelled (then the link is closed); a
    poll the database cannot answer (ConnectionError) yields nothing: the source's health says
    why, and the next turn tries again."""
    try:
        while True:
            started = time.monotonic()
            try:
                found = await poll()
            except ConnectionError:
                pass
            else:
                yield found
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        await link.close()


def table_args(tables: Sequence[TableName]) -> tuple[list[str], list[str], list[str]]:
    """The watched tables as the queries in collectors/sql take them: as shown, their schemas
    ('' : any), their names."""
    return [str(t) for t in tables], [t.schema or "" for t in tables], [t.name for t in tables]


@dataclass(frozen=True, slots=True)
class _Count:
    seq_scans: int
    seq_tuples: int
    idx_tuples: int
    at_us: int
    started_us: int


class TableStatsSource:
    """Polls the watched tables' statistics every `interval` seconds."""

    name = "pg_stat_user_tables"

    def __init__(
        self, link: DatabaseLink, tables: Sequence[TableName], interval: float = 10.0
    ) -> None:
        self.link = link
        self.tables = list(tables)
        self.interval = interval
        self.polls = 0
        self.last_poll_seconds = 0.0
        self.notes: list[str] = []
        self.missing: tuple[str, ...] = ()
        self._last: dict[str, _Count] = {}
        self._last_ok: datetime | None = None
        self._taken_us = 0

    async def poll(self) -> list[TableReads]:
        """One poll: the reads since the previous one (none the first time: a baseline).

        Raises:
            ConnectionError: the database cannot answer now (see `health`).
        """
        t0 = time.monotonic()
        rows = await self.link.fetch(SQL, *table_args(self.tables))
        self.last_poll_seconds = time.monotonic() - t0
        self.polls += 1
        out: list[TableReads] = []
        missing = []
        for row in rows:
            table = row["shown"]
            if not row["found"]:
                missing.append(table)
                continue
            at = self._taken_us = us_from_utc(row["taken_at"])
            started = us_from_utc(row["server_started"])
            count = _Count(
                int(row["seq_scans"]), int(row["seq_tuples"]), int(row["idx_tuples"]), at, started
            )
            before = self._last.get(table)
            self._last[table] = count
            self._last_ok = row["taken_at"]
            size = row["reltuples"] if row["reltuples"] >= 0 else row["live_tuples"]
            rows_now = int(size) if size and size > 0 else None
            if before is None:
                continue
            if started != before.started_us:
                self._note(f"the server restarted at {row['server_started']:%H:%M:%S} UTC")
            if (
                count.seq_scans < before.seq_scans
                or count.seq_tuples < before.seq_tuples
                or count.idx_tuples < before.idx_tuples
            ):  # statistics reset (or a crash): a new baseline
                self._note(f"{table}: statistics reset; counting again from now")
                continue
            out.append(
                TableReads(
                    table,
                    before.at_us,
                    at,
                    count.seq_scans - before.seq_scans,
                    count.seq_tuples - before.seq_tuples,
                    count.idx_tuples - before.idx_tuples,
                    rows_now,
                )
            )
        self.missing = tuple(missing)
        return out

    def _note(self, text: str) -> None:
        self.notes = [*self.notes[-9:], text]

    async def observations(self) -> AsyncIterator[Observations]:
        """Each poll's reads, every `interval` seconds, until cancelled; a failed poll is shown
        (`health`) and the next one tries again."""
        async with contextlib.aclosing(polling(self.poll, self.interval, self.link)) as polls:
            async for found in polls:
                yield Observations(table_reads=tuple(found), taken_us=self._taken_us)

    def health(self) -> SourceHealth:
        """Down with the reason while the database does not answer; the tables it cannot find."""
        link = self.link
        if link.problem:
            return SourceHealth(self.name, "error", link.problem, notes=tuple(self.notes))
        if self.polls == 0:
            return SourceHealth(self.name, "waiting", "connecting", notes=tuple(self.notes))
        detail = f"polled every {self.interval:g} s, last in {self.last_poll_seconds * 1000:.0f} ms"
        if self.missing:
            detail += "; not found: " + ", ".join(self.missing)
        return SourceHealth(
            self.name, "ok", detail, last_event_time=self._last_ok, notes=tuple(self.notes)
        )
