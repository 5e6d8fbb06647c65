"""The demo workload: a simulated CRM database writing real-format pgaudit csvlog, live.

`tablewatch demo` needs no database: this module writes what PostgreSQL 15 with pgaudit 1.7 would
write (csvlog, object audit of crm.client_list and crm.orders, `pgaudit.log_parameter = on`,
`pgaudit.log_rows = off` so that the backup's COPY is audited, `log_connections = on`,
`log_min_duration_statement = 1s`) into a folder, and the real log tail and engine take it from
there. First a compact history (`write_history`: days of normal traffic, so the engine is past its
learning period and knows everyone's habits), then live records stamped with the clock (`run`):

- normal readers, all known from the history: three API hosts doing key lookups through the
  extended protocol (command tag BIND, the key in PARAMETER), the hourly reporting aggregate, an
  analyst's small filtered reads from DBeaver, and the backup's COPY (an expected principal);
- an intruder with the API's credentials from a new address in psql, escalating on a timeline
  (`timeline()`): consecutive keys, then LIMIT/OFFSET pages, then the whole table.

Deterministic for a seed and a clock. The history holds one busy hour of the API (1,600 key
lookups by one host) so that the live rate of lookups stays below five times the role's busiest
hour: left running for hours, the demo raises no lookup-volume warning on its normal readers.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import itertools
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from collectors.csvlog_writer import Backend, Log, Pids, Statement, audit_csv, query_id
from core.settings import ExpectedPrincipal
from core.tables import TableName

__all__ = [
    "DEMO_EXPECTED",
    "DEMO_INTRUDER",
    "DEMO_READERS",
    "DEMO_ROWS",
    "DEMO_TABLE",
    "DemoReader",
    "DemoWorkload",
]

DEMO_ROWS = 50_000
DEMO_TABLE = TableName("crm", "client_list", DEMO_ROWS)
DEMO_EXPECTED: tuple[ExpectedPrincipal, ...] = (
    ExpectedPrincipal(user="backup", application_name="pg_dump", note="nightly backup"),
)


@dataclass(frozen=True, slots=True)
class DemoReader:
    """A principal of the demo and what it stands for."""

    user: str
    client_addr: str
    application_name: str
    role: str


_API = tuple(DemoReader("crm_app", f"10.0.1.{n}", "crm-api", "API host") for n in (11, 12, 13))
_REPORTING = DemoReader("reporting", "10.0.3.7", "Metabase", "hourly report")
_ANALYST = DemoReader(
    "mkovacs", "10.0.2.15", "DBeaver 24.1.0 - SQLEditor <Script-3.sql>", "analyst"
)
_BACKUP = DemoReader("backup", "10.0.4.2", "pg_dump", "nightly backup")
DEMO_READERS: tuple[DemoReader, ...] = (*_API, _REPORTING, _ANALYST, _BACKUP)
"""The normal readers (all of them in the history)."""
DEMO_INTRUDER = DemoReader("crm_app", "203.0.113.47", "psql", "intruder")
"""The API's credentials from an address never seen, in psql."""

_WATCHED, _ORDERS = "crm.client_list", "crm.orders"
_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_SSL = " SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"
_REGIONS = ("EMEA", "NA", "LATAM", "APAC")
_NAMES = ("%Müller, J%", "%smith%", "%O''Brien%", "%García, M%", "%Nguyễn%")

_BY_ID = Statement("SELECT id, name, email, phone FROM crm.client_list WHERE id = $1", (_WATCHED,))
_BY_EMAIL = Statement(
    "SELECT id, name, email, phone FROM crm.client_list WHERE email = $1", (_WATCHED,)
)
_ORDERS_OF = Statement(
    "SELECT id, total, status, created_at FROM crm.orders WHERE client_id = $1 "
    "ORDER BY created_at DESC LIMIT 20",
    (_ORDERS,),
)
_REGION_COUNTS = Statement(
    "SELECT region, count(*) FROM crm.client_list GROUP BY region", (_WATCHED,)
)
_REVENUE = Statement(
    "SELECT c.region, count(DISTINCT o.client_id), sum(o.total)\n  FROM crm.orders o\n"
    "  JOIN crm.client_list c ON c.id = o.client_id\n"
    " WHERE o.created_at >= now() - interval '1 hour'\n GROUP BY c.region",
    (_ORDERS, _WATCHED),
)
_COPIES = (
    Statement(
        "COPY crm.client_list (id, name, email, phone, region, signup_date) TO stdout;",
        (_WATCHED,),
        tag="COPY",
    ),
    Statement(
        "COPY crm.orders (id, client_id, total, status, created_at) TO stdout;",
        (_ORDERS,),
        tag="COPY",
    ),
)
_DUMP = Statement("SELECT * FROM crm.client_list;", (_WATCHED,), tag="SELECT")
# statements with their constants inline (texts for the log: nothing here is ever run)
_TYPED_KEY = "SELECT * FROM crm.client_list WHERE id = {};"
_TYPED_PAGE = "SELECT * FROM crm.client_list ORDER BY id LIMIT {} OFFSET {};"
_FILTERED_PAGE = (
    "SELECT id, name, email, region FROM crm.client_list WHERE region = '{}' "
    "AND signup_date >= '{}' ORDER BY id LIMIT 50 OFFSET {}"
)
_COUNTS_SINCE = (
    "SELECT region, count(*)\n  FROM crm.client_list\n WHERE signup_date >= '{}'\n"
    " GROUP BY region\n ORDER BY 2 DESC"
)
_NAME_SEARCH = "SELECT id, name, email FROM crm.client_list WHERE name ILIKE '{}' LIMIT 100"
_ONE_CLIENT = "SELECT * FROM crm.client_list WHERE id = {}"

# the live timeline, in seconds after run() starts at speed 1
_REPORT_AT = 4.0
_CONNECT_AT = 8.0
_KEYS_AT, _KEYS, _KEY_EVERY, _FIRST_KEY = 8.6, 60, 0.17, 10_001
_PAGES_AT, _PAGES, _PAGE_EVERY, _PAGE = 19.5, 8, 1.2, 1000
_DUMP_AT = 30.0
_BACKUP_AT = 45.0
_IDLE_AT = 60.0

_API_RATE = 6.5
"""Statements per second of each API host, live; 28% of them read crm.client_list."""
_API_CLIENTS = 0.28
_HISTORY_API_RATE = 6 / 3600
"""Key lookups per second of each API host in the history."""
_BUSY_HOUR_LOOKUPS = 1600
"""Key lookups of the API's busiest hour: five times more than its live rate in an hour."""

Actor = Iterator[int]
"""Writes its records at the current event time when woken; yields its next wake-up (ms)."""


class _Clockwork:
    """Actors on a heap of wake-up times, woken in event-time order up to a limit."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._heap: list[tuple[int, int, Actor]] = []
        self._order = itertools.count()

    def spawn(self, at: int, actor: Actor) -> None:
        heapq.heappush(self._heap, (at, next(self._order), actor))

    def advance(self, until: int) -> None:
        heap, log = self._heap, self.log
        while heap and heap[0][0] <= until:
            at, order, actor = heapq.heappop(heap)
            log.t = max(log.t, at)
            wake = next(actor, None)
            if wake is not None:
                heapq.heappush(heap, (wake, order, actor))


class DemoWorkload:
    """Writes the demo's csvlog: `write_history` first, then `run` (or `write_until`)."""

    def __init__(
        self,
        directory: Path,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        speed: float = 1.0,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.log_path = directory / "postgresql.csv"
        self.seed = seed
        self.speed = speed
        self.live_start: float | None = None
        """Clock time the live timeline started at (the first `write_until`)."""
        self._clock = clock
        self._pending = io.StringIO()
        self._log = Log(self._pending, log_rows=False)
        self._pids = Pids(self._rng("pids"), 20_000)
        self._backends: dict[tuple[DemoReader, int], Backend] = {}
        self._live: _Clockwork | None = None
        self._history_end = 0

    # the public side ------------------------------------------------------------------------------

    def write_history(self, days: int = 3) -> int:
        """Write `days` of normal traffic (from the hour before now - days to now) to a new file;
        returns the records written.

        A compact history: every normal reader, a few statements an hour, the API's busiest hour
        (at its start) and the daily backup; enough for habits and to end a learning period of up
        to `days - 1` days.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, not {days}")
        now = int(self._clock() * 1000)
        start = now - days * _DAY
        start -= start % _HOUR
        self._log.t = start
        work = _Clockwork(self._log)
        for n, who in enumerate(_API):  # client lookups only: crm.orders teaches nothing
            rng = self._rng(f"api{n}")
            first = start + rng.randint(0, 5 * _MINUTE)
            work.spawn(first, self._api_host(who, rng, _HISTORY_API_RATE, 1000, now, 0.0))
        # The API's busiest hour, in the first hour: a first day has no habit to be compared with
        # (and the first hour is learned), and later days then know the role's busiest hour.
        rate = _BUSY_HOUR_LOOKUPS / 3600
        busy = self._api_host(_API[0], self._rng("busy"), rate, 1000, start + _HOUR, 0.0)
        work.spawn(start + 61_234, busy)
        work.spawn(start + 123_456, self._reporting(self._rng("report"), 1000, now))
        work.spawn(start + 187_654, self._analyst(self._rng("analyst"), 20 * 60, 1000, now))
        for day in range(days):
            at = now - 12 * _HOUR - day * _DAY
            if at > start:
                work.spawn(at, self._backup(self._rng(f"backup{day}"), 1000))
        work.advance(now)
        self._history_end = now
        return self._append("w")

    def write_until(self, t: float) -> int:
        """Append the live records due by clock time `t` (the live timeline starts at the first
        call); returns how many were written."""
        now = max(int(t * 1000), self._history_end)
        if self._live is None:
            self._live = self._start_live(now)
            self.live_start = now / 1000
        self._live.advance(now)
        return self._append("a")

    async def run(self) -> None:
        """Write live records stamped with the clock until cancelled, a small batch at a time."""
        while True:
            self.write_until(self._clock())
            await asyncio.sleep(0.1)

    def timeline(self) -> list[tuple[float, str]]:
        """What happens when: (seconds after `run` starts, what), for a legend or help text."""
        apis = ", ".join(a.client_addr for a in _API)
        who = DEMO_INTRUDER
        intruder = f"{who.user} from {who.client_addr} ({who.application_name})"
        events = [
            (
                0.0,
                f"normal traffic: crm-api hosts {apis} look clients up by id; the analyst "
                f"{_ANALYST.user} reads small filtered pages in DBeaver",
            ),
            (
                _REPORT_AT,
                "the hourly report (Metabase) counts clients per region: it scans the "
                "table but returns a few rows, no bulk read",
            ),
            (
                _KEYS_AT,
                f"{intruder}: a known user from a new address (new_address, info); it looks "
                f"up consecutive ids from {_FIRST_KEY:,} (sequential_keys: warning 5 s later)",
            ),
            (
                _PAGES_AT,
                f"it pages through the table, LIMIT {_PAGE:,} OFFSET 0, {_PAGE:,}, ... "
                f"({_PAGES} pages: new principal volume, offset walk, table fraction; warning)",
            ),
            (
                _DUMP_AT,
                f"it reads the whole table: {_DUMP.text} ({DEMO_ROWS:,} rows; "
                "bulk_read, critical: page now)",
            ),
            (
                _BACKUP_AT,
                "the backup (pg_dump) copies the table: an expected principal, noted, never paged",
            ),
            (
                _IDLE_AT,
                "the intruder goes quiet, a stray lookup now and then; normal traffic goes on",
            ),
        ]
        return [(at / self.speed, what) for at, what in events]

    # writing ----------------------------------------------------------------------------------

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    def _append(self, mode: str) -> int:
        log = self._log
        count = log.records
        log.flush()
        text = self._pending.getvalue()
        if text or mode == "w":
            self._pending.seek(0)
            self._pending.truncate()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open(mode, encoding="utf-8", newline="") as out:
                out.write(text)
                out.flush()
        log.records = 0
        return count

    def _backend(self, who: DemoReader, rng: random.Random, index: int = 0) -> Backend:
        """A long-lived connection of a pool or a tool, opened a while before it is first used:
        the same one in the history and live."""
        s = self._backends.get((who, index))
        if s is None:
            opened = self._log.t - rng.randint(_MINUTE, 40 * _MINUTE)
            s = self._backends[(who, index)] = Backend(
                who.user, who.client_addr, who.application_name, opened, self._pids(), rng
            )
        return s

    def _audit(self, s: Backend, st: Statement, params: str = "<none>") -> None:
        """pgaudit's OBJECT records of one statement, one per relation it reads."""
        s.lxid += 1
        s.stmt_id += 1
        for obj in st.objects:
            self._log.emit(
                s,
                st.tag,
                f"AUDIT: OBJECT,{s.stmt_id},1,{st.cls},{st.command},TABLE,{obj},{st.quoted},"
                f"{params}",
                vxid=s.vxid(),
                qid=st.qid,
            )

    def _took(self, s: Backend, st: Statement, ms: float) -> None:
        """log_min_duration_statement's record of a statement that took `ms`."""
        self._log.emit(
            s, st.tag, f"duration: {ms:.3f} ms  statement: {st.text}", vxid=s.vxid(), qid=st.qid
        )

    def _connect(self, who: DemoReader, rng: random.Random) -> Generator[int, None, Backend]:
        """A new connection (log_connections): received, then authorized a few ms later."""
        log = self._log
        s = Backend(who.user, who.client_addr, who.application_name, log.t, self._pids(), rng)
        known_head, known_tail = s.head, s.tail
        s.head = f",,,{s.pid},{s.conn},{s.sid},"  # before the startup packet: nobody yet
        s.tail = ',"","not initialized",,'
        log.emit(s, '""', f"connection received: host={s.host} port={s.port}")
        yield log.t + rng.randint(2, 9)
        s.head, s.tail = known_head, ',"","client backend",,'
        s.lxid += 1
        who_line = f"user={s.user} database={s.db} application_name={s.app}"
        log.emit(s, '"authentication"', f"connection authorized: {who_line}{_SSL}", vxid=s.vxid())
        s.tail = known_tail
        return s

    # the readers ----------------------------------------------------------------------------------

    def _api_host(
        self,
        who: DemoReader,
        rng: random.Random,
        rate: float,
        pace: float,
        until: int | None,
        orders: float = 1 - _API_CLIENTS,
    ) -> Actor:
        """An API host's pool: `rate` statements a second (`pace` ms a second): a client's orders,
        else the client by id or now and then by email."""
        pool = [self._backend(who, rng, i) for i in range(3)]
        t = self._log.t
        while until is None or t < until:
            s = rng.choice(pool)
            key = str(rng.randint(1, DEMO_ROWS))
            r = rng.random()
            if r < orders:
                self._audit(s, _ORDERS_OF, key)
            elif r < orders + 0.1:
                self._audit(s, _BY_EMAIL, audit_csv(f"client{key}@example.com"))
            else:
                self._audit(s, _BY_ID, key)
            t += max(1, int(rng.expovariate(rate) * pace))
            yield t

    def _reporting(self, rng: random.Random, pace: float, until: int | None) -> Actor:
        """The reporting job: per-region counts and revenue, hourly."""
        s = self._backend(_REPORTING, rng)
        t = self._log.t
        while until is None or t < until:
            self._audit(s, _REGION_COUNTS)
            yield self._log.t + rng.randint(200, 1500)
            self._audit(s, _REVENUE)
            t += int(rng.uniform(3580, 3660) * pace)
            yield t

    def _analyst(self, rng: random.Random, gap: float, pace: float, until: int | None) -> Actor:
        """The analyst: a small task every `gap` seconds or so, a few statements a few seconds
        apart, each reading a filtered page, counts or one client."""
        s = self._backend(_ANALYST, rng)
        t = self._log.t
        while until is None or t < until:
            region = rng.choice(_REGIONS)
            since = f"20{rng.randint(22, 26)}-{rng.randint(1, 12):02d}-01"
            k = rng.random()
            texts: list[tuple[str, tuple[object, ...]]]
            if k < 0.5:
                pages = range(0, 50 * rng.randint(1, 3), 50)
                texts = [(_FILTERED_PAGE, (region, since, offset)) for offset in pages]
            elif k < 0.7:
                texts = [(_COUNTS_SINCE, (since,))]
            elif k < 0.85:
                texts = [(_NAME_SEARCH, (rng.choice(_NAMES),))]
            else:
                texts = [(_ONE_CLIENT, (rng.randint(1, DEMO_ROWS),))]
            for template, values in texts:
                self._audit(s, _inline(template, "BIND", *values))
                yield self._log.t + int(rng.uniform(2, 12) * pace)
            t = self._log.t + int(rng.expovariate(1 / gap) * pace)
            yield t

    def _backup(self, rng: random.Random, pace: float) -> Actor:
        """pg_dump: connects, copies the client list and the orders, disconnects."""
        s = yield from self._connect(_BACKUP, rng)
        for st in _COPIES:
            yield self._log.t + int(rng.uniform(0.05, 0.4) * pace)
            self._audit(s, st)
            ms = rng.uniform(1500, 4000)
            yield self._log.t + int(ms * pace / 1000)
            self._took(s, st, ms)
        yield self._log.t + rng.randint(20, 200)
        lasted = self._log.t - s.start_ms
        minutes, ms = divmod(lasted, _MINUTE)
        self._log.emit(
            s,
            '"idle"',
            f"disconnection: session time: {minutes // 60}:{minutes % 60:02d}:{ms / 1000:06.3f} "
            f"user={s.user} database={s.db} host={s.host} port={s.port}",
        )

    def _intruder(self, rng: random.Random, start: int, pace: float) -> Actor:
        """The exfiltration, on the timeline from `start` (`pace` ms a second)."""
        s = yield from self._connect(DEMO_INTRUDER, rng)

        def at(seconds: float) -> int:  # a script's pace, give or take a few ms
            return max(self._log.t, start + int(seconds * pace) + rng.randint(0, 30))

        for i in range(_KEYS):
            yield at(_KEYS_AT + i * _KEY_EVERY)
            self._audit(s, _inline(_TYPED_KEY, "SELECT", _FIRST_KEY + i))
        for page in range(_PAGES):
            yield at(_PAGES_AT + page * _PAGE_EVERY)
            self._audit(s, _inline(_TYPED_PAGE, "SELECT", _PAGE, page * _PAGE))
        yield at(_DUMP_AT)
        self._audit(s, _DUMP)
        ms = rng.uniform(1800, 3200)
        yield self._log.t + int(ms * pace / 1000)
        self._took(s, _DUMP, ms)
        t = start + int(_IDLE_AT * pace)
        while True:
            yield t
            self._audit(s, _inline(_TYPED_KEY, "SELECT", rng.randint(1, DEMO_ROWS)))
            t += int(rng.uniform(15, 45) * pace)

    def _start_live(self, now: int) -> _Clockwork:
        pace = 1000 / self.speed
        self._log.t = now

        def at(seconds: float) -> int:
            return now + int(seconds * pace)

        work = _Clockwork(self._log)
        for n, who in enumerate(_API):
            work.spawn(now, self._api_host(who, self._rng(f"live-api{n}"), _API_RATE, pace, None))
        work.spawn(at(_REPORT_AT), self._reporting(self._rng("live-report"), pace, None))
        work.spawn(at(1.5), self._analyst(self._rng("live-analyst"), 12.0, pace, None))
        work.spawn(at(_CONNECT_AT), self._intruder(self._rng("intruder"), now, pace))
        work.spawn(at(_BACKUP_AT), self._backup(self._rng("live-backup"), pace))
        return work


def _inline(template: str, tag: str, *values: object) -> Statement:
    """A statement of the client list with its constants inline; its query id, like the
    server's, is the same whatever the constants."""
    st = Statement(template.format(*values), (_WATCHED,), tag)
    st.qid = query_id(template)
    return st
