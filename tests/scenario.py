"""Scenario generator: days of realistic pgaudit csvlog traffic, benign habits and labelled attacks.

`generate()` writes one PostgreSQL 15 csvlog file (26 columns, quoted the way ``csvlog.c`` and
pgaudit 1.7 quote them, as ``bench/gen_csvlog.py`` does) and a JSON manifest beside it that says
who the benign principals are and when each attack happened, so detection tests can assert "these
principals page, those never do" over several days of event time.

The server it stands for::

    log_destination = 'csvlog'   log_connections = on   log_disconnections = on
    log_min_duration_statement = 250   log_checkpoints = on   log_autovacuum_min_duration = 0
    shared_preload_libraries = 'pgaudit,pg_stat_statements'   compute_query_id = auto
    pgaudit.role = 'auditor'   pgaudit.log_relation = on   pgaudit.log_parameter = on
    pgaudit.log_rows = off | on (log_rows)
    GRANT SELECT ON crm.client_list, crm.orders TO auditor;    -- object audit, every role
    ALTER ROLE <each analyst> SET pgaudit.log = 'read';        -- SESSION records too
    ALTER ROLE reporting SET pgaudit.log_statement_once = on;  -- <previously logged>
    ALTER ROLE <dba> SET pgaudit.log = 'role, ddl, misc';

Facts of pgaudit 1.7 it follows (checked against the pgaudit source and the shared corpus):

- per relation, the OBJECT record comes first, then (log_relation) the SESSION record, both with
  the same statement id; statement ids count the audited statements of a backend;
- the statement is the query string as the client sent it (pgaudit 1.7 does not trim it: psql's
  trailing ``;`` stays; driver statements have none);
- COPY ... TO is logged as ``READ,SELECT`` (command tag ``COPY``), and with log_rows = on it is
  not logged at all, so the nightly pg_dump leaves no audit record then;
- ``SET pgaudit.log = 'none'`` is itself never logged (the class bitmap is already empty when
  the record would be written), so the in-session tamper here is ``SET pgaudit.role = ''``;
- ``ALTER SYSTEM`` is class DDL; ``DROP EXTENSION pgaudit`` only drops its event triggers (the
  hooks stay loaded from shared_preload_libraries), so reads are still audited after it; a
  server-wide ``pgaudit.log`` is overridden by per-role settings, so ``ALTER SYSTEM SET
  pgaudit.log = 'none'`` changes nothing visible here, while ``ALTER SYSTEM SET pgaudit.role =
  ''`` (after the reload) ends all object audit.

Benign traffic for a seed never depends on which attacks are included (separate random streams),
except for what a tamper switches off after it happened.

Run ``python -m tests.scenario OUT.csv [--seed N] [--log-rows] [--days D] [--scale S]``.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO

WATCHED = "crm.client_list"
ORDERS = "crm.orders"
ATTACKS = (
    "whole_table_select",
    "stolen_credentials_paging",
    "sequential_enumeration",
    "unusual_hour_slice",
    "audit_tamper",
    "new_principal_batches",
)
SECOND = 1000  # times are integer milliseconds inside (csvlog has millisecond precision)
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LEARNING = 30 * HOUR  # no attack before: a 24 h learning period has passed with room to spare


# ---------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who reads: (database user, client address without port, application_name)."""

    user: str
    client_addr: str
    application_name: str


@dataclass(frozen=True, slots=True)
class Attack:
    """One labelled attack and the principal whose findings it must produce."""

    name: str
    """One of ATTACKS."""
    principal: Principal
    start_us: int
    """Event time (µs since the epoch, UTC) of the attack's first audit record, as written."""
    end_us: int
    """Event time of its last audit record."""
    half_us: int | None
    """Paging attack only: time of the first record at which the rows read reach half the table."""
    detail: str
    """What happened, for humans."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What `generate()` wrote: the file, the world it stands for and the attacks in time order."""

    path: str
    seed: int
    log_rows: bool
    table: str
    table_rows: int
    start_us: int
    """Start of the scenario (a Monday 00:00 UTC); every record is at or after it."""
    end_us: int
    """End of the scenario (start + days); every record is before it."""
    records: int
    """csvlog records written (audit or not)."""
    audit_records: int
    """Records with an `AUDIT:` message (any relation)."""
    expected: list[dict[str, str]]
    """`[[expected]]` entries a sensible operator would configure (the nightly backup)."""
    benign: list[Principal]
    """Every principal that wrote benign audit records, in order of first appearance (an
    attack may also use one of them: the analysts' and the DBA's usual principals)."""
    attacks: list[Attack]
    """In time order."""

    def to_json(self) -> str:
        """The manifest as indented JSON."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Read a manifest written by `to_json`."""
        data: dict[str, Any] = json.loads(text)
        data["benign"] = [Principal(**p) for p in data["benign"]]
        data["attacks"] = [
            Attack(**{**a, "principal": Principal(**a["principal"])}) for a in data["attacks"]
        ]
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# Quoting, exactly as the server writes it
# ---------------------------------------------------------------------------------------------


def lit(s: str) -> str:
    """csvlog.c appendCSVLiteral: always quoted, inner quotes doubled."""
    return '"' + s.replace('"', '""') + '"'


def audit_csv(s: str) -> str:
    """pgaudit append_valid_csv: quoted only when it holds a comma, quote, CR or LF.

    >>> audit_csv("a"), audit_csv("1,2"), audit_csv("a'b")
    ('a', '"1,2"', "a'b")
    """
    if "," in s or '"' in s or "\n" in s or "\r" in s:
        return '"' + s.replace('"', '""') + '"'
    return s


def audit_params(values: Sequence[str]) -> str:
    """pgaudit's PARAMETER field of a bound statement (log_parameter = on).

    >>> audit_params([]), audit_params(["7"]), audit_params(["1000", "5000"])
    ('<none>', '7', '"1000,5000"')
    """
    if not values:
        return "<none>"
    return audit_csv(",".join(audit_csv(v) for v in values))


def query_id(text: str) -> str:
    """A stable signed 64-bit stand-in for the query jumble hash."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big", signed=True))


class Statement:
    """A statement with its pgaudit-quoted text and query id, computed once."""

    __slots__ = ("text", "quoted", "qid", "tag", "cls", "command", "objects")

    def __init__(
        self,
        text: str,
        objects: tuple[str, ...] = (WATCHED,),
        tag: str = "BIND",
        cls: str = "READ",
        command: str = "SELECT",
    ) -> None:
        self.text = text
        self.quoted = audit_csv(text)
        self.qid = query_id(text)
        self.tag = lit(tag)
        self.cls = cls
        self.command = command
        self.objects = objects


# ---------------------------------------------------------------------------------------------
# Backends and the log
# ---------------------------------------------------------------------------------------------


class Session:
    """One backend: the constant parts of its csvlog rows and its counters."""

    __slots__ = (
        "principal",
        "user",
        "db",
        "host",
        "port",
        "app",
        "pid",
        "start_ms",
        "start_str",
        "head",
        "tail",
        "conn",
        "sid",
        "line",
        "backend_id",
        "lxid",
        "stmt_id",
        "session_read",
        "object_audit",
        "once",
        "misc",
    )

    def __init__(
        self,
        user: str,
        host: str,
        app: str,
        start_ms: int,
        pid: int,
        rng: random.Random,
        *,
        btype: str = "client backend",
        db: str = "crm",
    ) -> None:
        self.principal = Principal(user, host, app)
        self.user, self.db, self.host, self.app, self.pid = user, db, host, app, pid
        self.port = rng.randint(32768, 60999)
        self.start_ms = start_ms
        self.start_str = datetime.fromtimestamp(start_ms // 1000, UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        sid = f"{start_ms // 1000:x}.{pid:x}"
        if not host:
            conn = ""
        elif host == "[local]":
            conn = lit(host)
        else:
            conn = f'"{host}:{self.port}"'
        self.conn, self.sid = conn, sid
        self.head = f",{lit(user) if user else ''},{lit(db) if db else ''},{pid},{conn},{sid},"
        self.tail = f",{lit(app)},{lit(btype)},,"
        self.line = 0
        self.backend_id = rng.randint(3, 180)
        self.lxid = rng.randint(1, 9000)
        self.stmt_id = 0
        self.session_read = False
        """Session audit of reads (pgaudit.log includes read)."""
        self.object_audit = True
        """Object audit in this backend (false after `SET pgaudit.role = ''`)."""
        self.once = False
        """pgaudit.log_statement_once."""
        self.misc = False
        """Session audit of role, ddl and misc statements (the DBA)."""

    def vxid(self) -> str:
        return f"{self.backend_id}/{self.lxid}"


class Pids:
    """Process ids as the postmaster hands them out: increasing, with gaps."""

    def __init__(self, rng: random.Random, first: int) -> None:
        self.rng = rng
        self.pid = first

    def __call__(self) -> int:
        self.pid += self.rng.randint(1, 29)
        if self.pid > 4_000_000:
            self.pid = 300
        return self.pid


class Log:
    """The csvlog writer: one row per record, buffered; counts what it wrote."""

    def __init__(self, out: TextIO, log_rows: bool) -> None:
        self.out = out
        self.log_rows = log_rows
        self.buf: list[str] = []
        self.records = 0
        self.audits = 0
        self.t = 0
        """The current event time (ms); the scheduler sets it."""
        self._sec = -1
        self._sec_str = ""

    def stamp(self) -> str:
        sec, ms = divmod(self.t, 1000)
        if sec != self._sec:
            self._sec = sec
            self._sec_str = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{self._sec_str}.{ms:03d} UTC"

    def emit(
        self,
        s: Session,
        tag: str,
        msg: str,
        *,
        sev: str = "LOG",
        state: str = "00000",
        detail: str | None = None,
        context: str | None = None,
        query: str | None = None,
        vxid: str = "",
        qid: str = "0",
    ) -> None:
        s.line += 1
        d = "" if detail is None else lit(detail)
        c = "" if context is None else lit(context)
        q = "" if query is None else lit(query)
        self.buf.append(
            f"{self.stamp()}{s.head}{s.line},{tag},{s.start_str},{vxid},0,{sev},{state},"
            f"{lit(msg)},{d},,,,{c},{q},,{s.tail}{qid}\n"
        )
        self.records += 1
        if len(self.buf) >= 8192:
            self.flush()

    def flush(self) -> None:
        self.out.write("".join(self.buf))
        self.buf.clear()


# ---------------------------------------------------------------------------------------------
# The world (everything a seed decides before the first record)
# ---------------------------------------------------------------------------------------------

APP_USERS = ("crm_app", "app_rw", "webapp", "crm_svc", "api_user")
APP_NAMES = ("crm-web", "crm-api", "webapp", "PostgreSQL JDBC Driver", "crm-backend")
ANALYST_NAMES = ("alice", "bob.martin", "chen_wei", "dkowalski", "zoë", "farah.n", "mgarcia")
NEW_USERS = ("etl_tmp", "svc_export", "data_sync", "tmp_migration", "bi_extract")
NEW_APPS = ("", "psql", "pg_export", "python3", "Metabase")
DBA_USERS = ("postgres", "dba_mkoch", "dba_jlee", "dba_admin")
REGION_CODES = (
    "EU", "NA", "APAC", "LATAM", "MEA", "UK", "DACH", "NORDICS", "IBERIA", "BENELUX", "FR",
    "IT", "JP", "ANZ", "IN", "CN", "BR", "MX", "CA", "US-E", "US-W",
)  # fmt: skip
FIRST = ("anna", "jean", "li", "omar", "zoë", "søren", "maría", "john", "aiko", "o'brien")
LAST = ("smith", "müller", "nguyen", "garcía", "kowalski", "dubois", "rossi", "tanaka")
DOMAINS = ("example.com", "example.org", "mail.example.net", "example.de")

APP_BY_ID = "SELECT id, name, email, phone FROM crm.client_list WHERE id = $1"
APP_BY_EMAIL = "SELECT id, name, email, phone FROM crm.client_list WHERE email = $1"
APP_ORDERS = (
    "SELECT id, total, status, created_at FROM crm.orders WHERE client_id = $1 "
    "ORDER BY created_at DESC LIMIT 20"
)
COPY_CLIENTS = "COPY crm.client_list (id, name, email, phone, region) TO stdout;"
COPY_ORDERS = "COPY crm.orders (id, client_id, total, status, created_at) TO stdout;"


@dataclass
class Analyst:
    """A human reading filtered pages on weekdays in office hours, with session audit."""

    user: str
    host: str
    app: str
    start_h: float
    end_h: float
    daily: int
    """Mean statements per working day."""
    crlf: bool
    """Windows client: multi-line statements end lines with CR LF."""
    semi: float
    """Chance that a statement keeps a trailing `;` (psql always, DBeaver never)."""
    session: Session | None = None
    """Her open backend, if any (an attack in her usual hours uses it)."""

    @property
    def principal(self) -> Principal:
        return Principal(self.user, self.host, self.app)


@dataclass
class AppHost:
    """An application server with its pool of long-lived connections."""

    addr: str
    join_ms: int
    pool: list[Session] = field(default_factory=list)


@dataclass
class Step:
    """One audited statement of an attack, `at` ms after the attack's first record."""

    at: int
    statement: Statement
    params: str
    rows: int
    run: Callable[[Run, Session], None] | None = None
    """Instead of `statement`: a callable that writes the records (tampering)."""


@dataclass
class Plan:
    """An attack before it is placed in time."""

    name: str
    principal: Principal
    steps: list[Step]
    detail: str
    window: Callable[[random.Random], int | None] | None = None
    """Chooses the start (ms) in a constrained window; None: anywhere free."""
    uses_analyst: Analyst | None = None
    """Her usual principal: the attack runs in her open session when she has one."""
    after: Callable[[Run, Session, int], int] | None = None
    """Runs after the last step (gets its time); returns when the session closes."""
    start_ms: int = 0

    @property
    def duration(self) -> int:
        return self.steps[-1].at


class World:
    """A seed's world: who exists, their habits, and the planned attacks."""

    def __init__(self, seed: int, log_rows: bool, days: int, scale: float) -> None:
        rng = random.Random(f"tablewatch-scenario-{seed}")
        self.seed, self.log_rows, self.days, self.scale = seed, log_rows, days, scale
        monday = date(2026, 1, 5) + timedelta(weeks=rng.randrange(48))
        self.start_ms = int(datetime(monday.year, monday.month, monday.day, tzinfo=UTC).timestamp())
        self.start_ms *= 1000
        self.end_ms = self.start_ms + days * DAY
        self.rows = rng.randint(20_000, 200_000)
        self._used: set[str] = set()

        # the table: regions with their shares, ids 1..rows
        regions = rng.sample(REGION_CODES, rng.randint(8, 20))
        weights = [rng.gammavariate(1.5, 1.0) for _ in regions]
        total = sum(weights)
        self.regions = {r: w / total for r, w in zip(regions, weights, strict=True)}
        self.zipf = rng.random() < 0.5
        self.perm_a = next(
            a for a in itertools.count(rng.randint(7919, 99991)) if _coprime(a, self.rows)
        )
        self.perm_b = rng.randrange(self.rows)

        # the app
        self.app_user = rng.choice(APP_USERS)
        self.app_name = rng.choice(APP_NAMES)
        net = f"10.{rng.randint(0, 60)}.{rng.randint(0, 30)}"
        hosts = rng.sample(range(10, 250), 6)
        self.app_hosts = [AppHost(self._addr(f"{net}.{h}"), self.start_ms) for h in hosts[:-1]]
        del self.app_hosts[rng.randint(3, 5) :]
        self.peak = rng.uniform(1.0, 1.4) * scale  # lookups/s over the initial hosts at peak
        self.per_host = self.peak / len(self.app_hosts)
        self.pool_size = rng.randint(3, 8)
        self.lifetime = (rng.randint(20, 40) * MINUTE, rng.randint(50, 90) * MINUTE)
        self.night = rng.uniform(0.08, 0.12)
        self.peak_h = rng.uniform(12.5, 15.5)
        self.width_h = rng.uniform(3.0, 4.0)
        self.email_share = rng.uniform(0.02, 0.06)
        self.orders_share = rng.uniform(0.10, 0.20)
        # a surge day: not the first, and over before the last day (where the tamper is)
        self.surge_day = rng.randint(1, max(1, days - 2))
        self.new_host: AppHost | None = None
        if days >= 3:
            day = rng.randint(2, days - 1)
            join = self.start_ms + day * DAY + rng.randint(5 * HOUR, 10 * HOUR)
            self.new_host = AppHost(self._addr(f"{net}.{hosts[-1]}"), join)

        # reporting, backup, DBA
        self.reporting = Principal(
            "reporting", self._addr(f"10.{rng.randint(61, 90)}.3.7"), "hourly-agg"
        )
        self.report_count = rng.random() < 0.6
        self.backup = Principal("backup", self._addr(f"10.{rng.randint(91, 120)}.9.5"), "pg_dump")
        dba_host = (
            "[local]" if rng.random() < 0.3 else self._addr(f"10.{rng.randint(121, 150)}.0.4")
        )
        self.dba = Principal(rng.choice(DBA_USERS), dba_host, "psql")

        # analysts
        self.analysts: list[Analyst] = []
        for name in rng.sample(ANALYST_NAMES, rng.randint(2, 4)):
            kind = rng.randrange(3)
            if kind == 0:
                app, crlf, semi = "psql", False, 1.0
            elif kind == 1:
                app = (
                    f"DBeaver {rng.choice(['24.1.0', '23.3.5', '24.2.3'])} - SQLEditor "
                    f"<Script{rng.choice(['', '-2', '-3', '-7'])}.sql>"
                )
                crlf, semi = rng.random() < 0.7, 0.0
            else:
                app, crlf, semi = f"pgAdmin 4 - CONN:{rng.randint(100, 9_999_999)}", False, 0.5
            start_h = rng.choice([7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0])
            ws = f"192.168.{rng.randint(20, 90)}.{rng.randint(2, 250)}"
            self.analysts.append(
                Analyst(
                    name,
                    self._addr(ws),
                    app,
                    start_h,
                    min(19.0, start_h + rng.uniform(7.5, 9.5)),
                    rng.randint(30, 180),
                    crlf,
                    semi,
                )
            )

        # the attacks: all six are planned whatever is asked for, so a seed's attacks do not
        # depend on which of them are written
        arng = random.Random(f"tablewatch-attacks-{seed}")
        whole = self._whole_table(arng)
        self.plans = [
            whole,
            self._paging(arng),
            self._enumeration(arng),
            self._slice(arng, whole.principal),
            self._tamper(arng),
            self._batches(arng),
        ]
        self._place(arng)
        self.runtime_seed = rng.getrandbits(64)

    # ---- helpers --------------------------------------------------------------------------

    def _addr(self, addr: str) -> str:
        while addr in self._used:  # unique per principal; bump the last octet
            head, _, last = addr.rpartition(".")
            addr = f"{head}.{(int(last) + 17) % 250 + 2}"
        self._used.add(addr)
        return addr

    def weekday(self, ms: int) -> int:
        return ((ms - self.start_ms) // DAY) % 7

    def customer_id(self, rng: random.Random) -> int:
        if self.zipf:  # a few customers are looked up far more than others
            x = min(self.rows - 1, int(self.rows ** rng.random()))
            return (self.perm_a * x + self.perm_b) % self.rows + 1
        return rng.randint(1, self.rows)

    def email(self, rng: random.Random) -> str:
        return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}"

    def matched(self, region: str, share: float) -> int:
        return int(self.rows * self.regions[region] * share)

    # ---- attack plans ---------------------------------------------------------------------

    def _whole_table(self, rng: random.Random) -> Plan:
        a = rng.choice(self.analysts)
        text = "SELECT * FROM crm.client_list" + (";" if a.semi >= 1.0 else "")
        st = Statement(text, tag="SELECT")

        def window(r: random.Random) -> int | None:
            days = [d for d in range(1, self.days) if d % 7 < 5]
            d = r.choice(days)
            lo = self.start_ms + d * DAY + int((a.start_h + 1.0) * HOUR)
            hi = self.start_ms + d * DAY + int((a.end_h - 1.0) * HOUR)
            return r.randint(max(lo, self.start_ms + LEARNING), hi) if hi > lo else None

        return Plan(
            "whole_table_select",
            a.principal,
            [Step(0, st, "<none>", self.rows)],
            f"{a.user}: {text} ({self.rows:,} rows)",
            window,
            uses_analyst=a,
        )

    def _paging(self, rng: random.Random) -> Plan:
        net = rng.choice(["198.51.100", "203.0.113", "192.0.2"])
        addr = self._addr(f"{net}.{rng.randint(2, 250)}")
        app = rng.choice([self.app_name, "", "python-requests/2.31.0"])
        page = rng.choice([200, 250, 500, 1000, 1000, 2000])
        every = rng.uniform(1.0, 10.0)
        keyset = rng.random() < 0.5
        if keyset:
            st = Statement(f"SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT {page}")
        else:
            st = Statement("SELECT * FROM crm.client_list ORDER BY id LIMIT $1 OFFSET $2")
        steps: list[Step] = []
        at, offset = 0, 0
        while True:
            rows = max(0, min(page, self.rows - offset))
            values = [str(offset)] if keyset else [str(page), str(offset)]
            steps.append(Step(at, st, audit_params(values), rows))
            offset += rows
            if rows < page:  # a short (or empty) page: the end of the table
                break
            at += int(rng.uniform(0.6, 1.4) * every * SECOND)
        how = "keyset" if keyset else "LIMIT/OFFSET"
        return Plan(
            "stolen_credentials_paging",
            Principal(self.app_user, addr, app),
            steps,
            f"{self.app_user} from unknown {addr} ({app or 'no application_name'}): {how} pages "
            f"of {page} rows every ~{every:.1f} s, {len(steps)} pages, the whole table "
            f"({self.rows:,} rows)",
        )

    def _enumeration(self, rng: random.Random) -> Plan:
        host = rng.choice(self.app_hosts).addr
        app = rng.choice(["", self.app_name])
        st = Statement(APP_BY_ID)
        span = rng.randint(1 * HOUR, 3 * HOUR)
        count = int(span / SECOND)
        first = rng.randint(1, max(1, self.rows - count - 1))
        steps: list[Step] = []
        at, key = 0, first
        while at <= span and key <= self.rows:
            steps.append(Step(at, st, str(key), 1))
            key += 1
            at += int(rng.uniform(0.5, 1.5) * SECOND)
        return Plan(
            "sequential_enumeration",
            Principal(self.app_user, host, app),
            steps,
            f"{self.app_user} from app host {host} ({app or 'no application_name'}): key lookups "
            f"of sequential ids {first}..{key - 1} ({len(steps):,} lookups, about one a second)",
        )

    def _slice(self, rng: random.Random, not_her: Principal) -> Plan:
        a = rng.choice([a for a in self.analysts if a.principal != not_her])
        count = rng.randint(5, 15)
        span = rng.randint(2 * MINUTE, 5 * MINUTE)
        goal = rng.uniform(0.15, 0.40) * self.rows
        cuts = sorted(rng.random() for _ in range(count - 1))
        parts = [b - a_ for a_, b in zip([0.0, *cuts], [*cuts, 1.0], strict=True)]
        steps: list[Step] = []
        total = 0
        for i, part in enumerate(parts):
            region = rng.choice(list(self.regions))
            since = f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-01"
            wanted = int(goal * part)
            shape = rng.randrange(3)
            if shape == 0:
                text = f"SELECT * FROM crm.client_list WHERE region = '{region}'"
            elif shape == 1:
                text = (
                    f"SELECT * FROM crm.client_list WHERE region = '{region}' "
                    f"AND signup_date >= '{since}'"
                )
            else:
                text = (
                    "SELECT id, name, email, phone, region FROM crm.client_list "
                    f"WHERE signup_date >= '{since}'"
                )
            if a.semi >= 1.0:
                text += ";"
            at = 0 if i == 0 else int(span * (i / (count - 1)) + rng.randint(-3000, 3000))
            steps.append(Step(max(0, at), Statement(text, tag="SELECT"), "<none>", wanted))
            total += wanted
        steps.sort(key=lambda s: s.at)
        steps[-1].at = max(steps[-1].at, span)

        def window(r: random.Random) -> int | None:
            days = [d for d in range(1, self.days) if d % 7 < 5]
            d = r.choice(days)
            lo = self.start_ms + d * DAY + 2 * HOUR
            lo = max(lo, self.start_ms + LEARNING)
            hi = self.start_ms + d * DAY + 4 * HOUR - span
            return r.randint(lo, hi) if hi > lo else None

        return Plan(
            "unusual_hour_slice",
            a.principal,
            steps,
            f"{a.user} at night: {count} unlimited filtered SELECTs in {span / MINUTE:.1f} min, "
            f"{total:,} rows ({total / self.rows:.0%} of the table)",
            window,
        )

    def _tamper(self, rng: random.Random) -> Plan:
        variant = rng.choice(["revoke", "alter_system", "alter_role", "set", "drop_extension"])
        victim = rng.choice(self.analysts)
        plain = re.fullmatch(r"[a-z_][a-z0-9_$]*", victim.user)
        role = victim.user if plain else '"' + victim.user.replace('"', '""') + '"'
        setting = rng.choice(["log", "role"])
        if variant == "revoke":
            text, cls, command, otype = (
                "REVOKE SELECT ON crm.client_list FROM auditor",
                "ROLE",
                "REVOKE",
                "TABLE",
            )
            effect = "object audit of crm.client_list ends"
        elif variant == "alter_system":
            value = "'none'" if setting == "log" else "''"
            text, cls, command, otype = (
                f"ALTER SYSTEM SET pgaudit.{setting} = {value}",
                "DDL",
                "ALTER SYSTEM",
                "",
            )
            effect = (
                "then a reload: object audit ends everywhere"
                if setting == "role"
                else "then a reload (per-role settings still win: nothing visible changes)"
            )
        elif variant == "alter_role":
            text, cls, command, otype = (
                f"ALTER ROLE {role} SET pgaudit.log = 'none'",
                "ROLE",
                "ALTER ROLE",
                "",
            )
            effect = f"{victim.user}'s new sessions write no SESSION records"
        elif variant == "set":
            text, cls, command, otype = "SET pgaudit.role = ''", "MISC", "SET", ""
            effect = "then reads the whole table unaudited in that session"
        else:
            text, cls, command, otype = "DROP EXTENSION pgaudit", "DDL", "DROP EXTENSION", ""
            effect = "the hooks stay loaded: reads are still audited"
        text += ";"  # typed in psql: pgaudit 1.7 keeps the semicolon
        st = Statement(text, (), tag=command, cls=cls, command=command)

        def tamper(run: Run, s: Session) -> None:
            run.utility(s, st, otype)
            if variant == "revoke":
                run.watched_audit = False
            elif variant == "alter_role":
                run.quiet_roles.add(victim.user)
            elif variant == "set":
                s.object_audit = False

        def after(run: Run, s: Session, t: int) -> int:
            r = run.attack_rng
            if variant == "alter_system":  # then SELECT pg_reload_conf(): not audited for him
                t += r.randint(3000, 20_000)
                run.spawn(t, run.reload(f"pgaudit.{setting}", setting == "role"))
            if variant == "set":
                t += r.randint(5000, 40_000)
                run.spawn(t, run.silent_read(s, self.rows))
                t += 60 * SECOND
            return t + r.randint(5000, 60_000)

        def window(r: random.Random) -> int | None:
            # the last day, late morning or early afternoon: the last attack, with hours of
            # traffic after it to show what it switched off
            return self.end_ms - DAY + r.randint(11 * HOUR, 15 * HOUR)

        return Plan(
            "audit_tamper",
            self.dba,
            [Step(0, st, "<none>", 0, tamper)],
            f"{self.dba.user}: {text} ({effect})",
            window,
            after=after,
        )

    def _batches(self, rng: random.Random) -> Plan:
        user = rng.choice(NEW_USERS)
        addr = self._addr(
            rng.choice([f"10.{rng.randint(151, 200)}.{rng.randint(0, 9)}", "172.16.40"])
            + f".{rng.randint(2, 250)}"
        )
        app = rng.choice(NEW_APPS)
        size = rng.randint(1000, 5000)
        every = rng.uniform(10.0, 60.0)
        span = rng.randint(10 * MINUTE, 30 * MINUTE)
        keyset = rng.random() < 0.5
        ks = Statement(f"SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT {size}")
        steps: list[Step] = []
        at, low = 0, 1
        while low <= self.rows and (at <= span or not steps):
            rows = min(size, self.rows - low + 1)
            if keyset:
                steps.append(Step(at, ks, str(low - 1), rows))
            else:
                text = f"SELECT * FROM crm.client_list WHERE id BETWEEN {low} AND {low + size - 1}"
                steps.append(Step(at, Statement(text, tag="SELECT"), "<none>", rows))
            low += size
            at += int(rng.uniform(0.7, 1.3) * every * SECOND)
        total = sum(s.rows for s in steps)
        return Plan(
            "new_principal_batches",
            Principal(user, addr, app),
            steps,
            f"never-seen {user} from {addr} ({app or 'no application_name'}): {len(steps)} "
            f"batches of {size} rows every ~{every:.0f} s, {total:,} rows",
        )

    def _place(self, rng: random.Random) -> None:
        """Start times: after the learning period, not overlapping, the tamper last."""
        tamper = next(p for p in self.plans if p.name == "audit_tamper")
        assert tamper.window is not None
        start = tamper.window(rng)
        assert start is not None
        tamper.start_ms = start
        latest = tamper.start_ms - 20 * MINUTE
        placed: list[tuple[int, int]] = [(tamper.start_ms, tamper.start_ms + 10 * MINUTE)]
        margin = 30 * MINUTE
        order = sorted(
            (p for p in self.plans if p is not tamper), key=lambda p: (p.window is None, p.name)
        )
        for plan in order:
            for _ in range(5000):
                if plan.window is not None:
                    start = plan.window(rng)
                else:
                    hi = latest - plan.duration
                    lo = self.start_ms + LEARNING
                    start = rng.randint(lo, hi) if hi > lo else None
                if start is None or start + plan.duration > latest:
                    continue
                end = start + plan.duration
                if all(end + margin <= a or start >= b + margin for a, b in placed):
                    plan.start_ms = start
                    placed.append((start, end))
                    break
            else:
                raise ValueError(f"cannot place {plan.name} in {self.days} days")


def _coprime(a: int, b: int) -> bool:
    return math.gcd(a, b) == 1


# ---------------------------------------------------------------------------------------------
# The run: processes on a heap of wake-up times, writing in time order
# ---------------------------------------------------------------------------------------------

Proc = Iterator[int]
"""A process: a generator that writes records at the current time and yields its next wake-up."""


class AttackRun:
    """What an attack really wrote: first and last audit record, rows, the half-table time."""

    def __init__(self, plan: Plan, table_rows: int) -> None:
        self.plan = plan
        self.table_rows = table_rows
        self.first = self.last = -1
        self.rows = 0
        self.half: int | None = None

    def saw(self, t: int, rows: int) -> None:
        if self.first < 0:
            self.first = t
        self.last = t
        self.rows += rows
        if self.half is None and self.rows * 2 >= self.table_rows:
            self.half = t


class Run:
    """Writes a World's traffic to a csvlog file."""

    def __init__(self, world: World, log: Log, attacks: Sequence[str]) -> None:
        self.w = world
        self.log = log
        self.rng = random.Random(world.runtime_seed)
        self.attack_rng = random.Random(world.runtime_seed ^ 0x5EED)
        self.pids = Pids(random.Random(world.runtime_seed + 1), 20_000)
        self.heap: list[tuple[int, int, Proc]] = []
        self.seq = itertools.count()
        self.watched_audit = True
        """Object audit of the watched table (false after REVOKE ... FROM auditor)."""
        self.object_audit = True
        """Object audit at all (false after pgaudit.role = '' and a reload)."""
        self.quiet_roles: set[str] = set()
        """Roles whose new sessions have pgaudit.log = 'none'."""
        self.benign: dict[Principal, None] = {}
        self.readers = {a.user for a in world.analysts}
        """Roles with session audit of reads (`ALTER ROLE ... SET pgaudit.log = 'read'`)."""
        self.runs = [AttackRun(p, world.rows) for p in world.plans if p.name in attacks]
        self._rates = self._rate_table()

    # ---- scheduling ------------------------------------------------------------------------

    def spawn(self, at: int, proc: Proc) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), proc))

    def run(self) -> None:
        w, heap, log = self.w, self.heap, self.log
        self.spawn(w.start_ms + self.rng.randint(0, 5 * MINUTE), self.checkpointer())
        self.spawn(w.start_ms + self.rng.randint(0, 30 * MINUTE), self.autovacuum())
        for host in w.app_hosts:
            self.spawn(host.join_ms, self.app_host(host, random.Random(self.rng.getrandbits(64))))
        if w.new_host is not None:
            rng = random.Random(self.rng.getrandbits(64))
            self.spawn(w.new_host.join_ms, self.app_host(w.new_host, rng))
        self.spawn(w.start_ms, self.reporting(random.Random(self.rng.getrandbits(64))))
        self.spawn(w.start_ms, self.backup(random.Random(self.rng.getrandbits(64))))
        self.spawn(w.start_ms, self.dba_days(random.Random(self.rng.getrandbits(64))))
        for a in w.analysts:
            self.spawn(w.start_ms, self.analyst(a, random.Random(self.rng.getrandbits(64))))
        for run in self.runs:
            self.spawn(run.plan.start_ms - 60 * SECOND, self.attack(run))
        end = w.end_ms
        while heap:
            at, _, proc = heapq.heappop(heap)
            if at >= end:
                break  # everything left is later: the file ends here
            if at > log.t:
                log.t = at
            nxt = next(proc, None)
            if nxt is not None:
                heapq.heappush(heap, (nxt, next(self.seq), proc))
        log.flush()

    # ---- records ---------------------------------------------------------------------------

    def connect(self, user: str, host: str, app: str, *, attack: bool = False) -> Session:
        """A new backend: `connection received` now; call `authorized` a few ms later."""
        # an attacker's backend gets a pid near the current ones without taking one from the
        # benign sequence (so benign traffic stays the same whichever attacks are written)
        pid = self.pids.pid + self.attack_rng.randint(1, 9) if attack else self.pids()
        s = Session(user, host, app, self.log.t, pid, self.attack_rng if attack else self.rng)
        # Before the startup packet: no user, database or application_name yet.
        head, tail = s.head, s.tail
        s.head = f",,,{s.pid},{s.conn},{s.sid},"
        s.tail = ',"","client backend",,'
        port = f" port={s.port}" if host != "[local]" else ""
        self.log.emit(s, '""', f"connection received: host={host}{port}")
        s.head, s.tail = head, tail
        s.session_read = user in self.readers and user not in self.quiet_roles
        s.once = user == "reporting"
        s.misc = user == self.w.dba.user
        return s

    def authorized(self, s: Session) -> None:
        ssl = (
            ""
            if s.host == "[local]"
            else " SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"
        )
        app = f" application_name={s.app}" if s.app else ""
        tail = s.tail
        s.tail = ',"","client backend",,'  # the GUC is set after authentication
        self.log.emit(
            s,
            '"authentication"',
            f"connection authorized: user={s.user} database={s.db}{app}{ssl}",
            vxid=f"{s.backend_id}/0",
        )
        s.tail = tail

    def disconnect(self, s: Session) -> None:
        el = self.log.t - s.start_ms
        h, rem = divmod(el, HOUR)
        m, rem = divmod(rem, MINUTE)
        port = f" port={s.port}" if s.host != "[local]" else ""
        self.log.emit(
            s,
            '"idle"',
            f"disconnection: session time: {h}:{m:02d}:{rem / 1000:06.3f} user={s.user} "
            f"database={s.db} host={s.host}{port}",
        )

    def audit(
        self, s: Session, st: Statement, params: str, rows: int, run: AttackRun | None = None
    ) -> None:
        """The records pgaudit writes for one read of `st.objects` (in range-table order)."""
        s.lxid += 1
        row_part = f",{rows}" if self.log.log_rows else ""
        logged = False
        vx = ""
        for obj in st.objects:
            obj_on = s.object_audit and self.object_audit and (self.watched_audit or obj != WATCHED)
            if not (obj_on or s.session_read):
                continue
            if not logged:
                s.stmt_id += 1
                vx = s.vxid()
            for kind, on in (("OBJECT", obj_on), ("SESSION", s.session_read)):
                if not on:
                    continue
                if s.once and logged:
                    text, prm = "<previously logged>", "<previously logged>"
                else:
                    text, prm = st.quoted, params
                self.log.emit(
                    s,
                    st.tag,
                    f"AUDIT: {kind},{s.stmt_id},1,{st.cls},{st.command},TABLE,{obj},{text},"
                    f"{prm}{row_part}",
                    vxid=vx,
                    qid=st.qid,
                )
                self.log.audits += 1
                logged = True
        if logged:
            if run is not None:
                run.saw(self.log.t, rows)
            elif s.principal not in self.benign:
                self.benign[s.principal] = None

    def utility(self, s: Session, st: Statement, object_type: str = "") -> None:
        """The SESSION record of a role/ddl/misc statement (the DBA's session audit)."""
        s.lxid += 1
        if not s.misc:
            return
        s.stmt_id += 1
        rp = ",0" if self.log.log_rows else ""
        self.log.emit(
            s,
            st.tag,
            f"AUDIT: SESSION,{s.stmt_id},1,{st.cls},{st.command},{object_type},,{st.quoted},"
            f"<none>{rp}",
            vxid=s.vxid(),
        )
        self.log.audits += 1

    def duration(self, s: Session, st: Statement, ms: float, detail: str | None = None) -> None:
        what = "execute <unnamed>" if detail is not None else "statement"
        self.log.emit(
            s,
            st.tag,
            f"duration: {ms:.3f} ms  {what}: {st.text}",
            detail=detail,
            vxid=s.vxid(),
            qid=st.qid,
        )

    def later(self, fn: Callable[[], None]) -> Proc:
        """A one-shot process: runs `fn` when woken."""
        fn()
        yield from ()

    # ---- the server ------------------------------------------------------------------------

    def checkpointer(self) -> Proc:
        rng, w = random.Random(self.rng.getrandbits(64)), self.w
        cp = Session(
            "", "", "", w.start_ms - 5 * DAY - 7_777_000, 1_210, rng, btype="checkpointer", db=""
        )
        t = self.log.t
        while True:
            self.log.emit(cp, "", "checkpoint starting: time")
            took = rng.uniform(20, 270)
            bufs = rng.randint(200, 9000)
            msg = (
                f"checkpoint complete: wrote {bufs} buffers ({bufs / 163.84:.1f}%); "
                f"0 WAL file(s) added, 0 removed, {rng.randint(0, 3)} recycled; "
                f"write={took:.3f} s, sync={rng.uniform(0, 0.05):.3f} s, "
                f"total={took + 0.02:.3f} s; sync files={rng.randint(5, 90)}, "
                f"longest=0.00{rng.randint(1, 9)} s, average=0.001 s; "
                f"distance={bufs * 8} kB, estimate={bufs * 9} kB"
            )
            yield t + int(took * 1000)
            self.log.emit(cp, "", msg)
            t += 5 * MINUTE
            yield t

    def autovacuum(self) -> Proc:
        rng = random.Random(self.rng.getrandbits(64))
        t = self.log.t
        while True:
            s = Session("", "", "", t, self.pids(), rng, btype="autovacuum worker", db="")
            tbl = rng.choice(
                ["crm.crm.client_list", "crm.crm.orders", "crm.pg_catalog.pg_statistic"]
            )
            self.log.emit(
                s,
                "",
                f'automatic analyze of table "{tbl}"\n'
                f"avg read rate: {rng.uniform(0, 40):.3f} MB/s, avg write rate: 0.000 MB/s\n"
                f"buffer usage: {rng.randint(100, 90_000)} hits, {rng.randint(0, 900)} misses, "
                f"0 dirtied\nsystem usage: CPU: user: {rng.uniform(0, 0.4):.2f} s, "
                f"system: 0.00 s, elapsed: {rng.uniform(0, 1.5):.2f} s",
                vxid=s.vxid(),
            )
            t += rng.randint(15 * MINUTE, 70 * MINUTE)
            yield t

    def reload(self, setting: str, ends_object_audit: bool) -> Proc:
        """`SELECT pg_reload_conf()`: the postmaster rereads the configuration."""
        rng = self.attack_rng
        pm = Session(
            "", "", "", self.w.start_ms - 5 * DAY - 7_780_000, 1_201, rng, btype="postmaster", db=""
        )
        self.log.emit(pm, "", "received SIGHUP, reloading configuration files")
        value = "" if ends_object_audit else "none"
        self.log.emit(pm, "", f'parameter "{setting}" changed to "{value}"')
        if ends_object_audit:
            self.object_audit = False
        yield from ()

    def silent_read(self, s: Session, rows: int) -> Proc:
        """A read with object audit switched off in the session: only its duration is logged."""
        st = Statement("SELECT * FROM crm.client_list;", tag="SELECT")
        self.audit(s, st, "<none>", rows)  # writes nothing: object audit off, no session read
        ms = self.attack_rng.uniform(400, 3000)
        yield self.log.t + int(ms)
        self.duration(s, st, ms)

    # ---- benign actors ---------------------------------------------------------------------

    def _rate_table(self) -> list[float]:
        """App lookups per second per host, per 5 minutes of the scenario."""
        w = self.w
        out = []
        for i in range(w.days * 288):
            h = (i % 288) / 12
            d = abs(h - w.peak_h)
            d = min(d, 24 - d)
            curve = w.night + (1 - w.night) * math.exp(-0.5 * (d / w.width_h) ** 2)
            if w.weekday(w.start_ms + i * 5 * MINUTE) >= 5:
                curve *= 0.5
            surge = 3.0 if i // 288 == w.surge_day else 1.0
            out.append(w.per_host * curve * surge)
        return out

    def app_host(self, host: AppHost, rng: random.Random) -> Proc:
        w, log = self.w, self.log
        by_id, by_email, orders = (
            Statement(APP_BY_ID),
            Statement(APP_BY_EMAIL),
            Statement(APP_ORDERS, (ORDERS,)),
        )
        t = host.join_ms
        if t == w.start_ms:  # a pool connected long before the file starts
            for _ in range(w.pool_size):
                s = Session(
                    w.app_user,
                    host.addr,
                    w.app_name,
                    t - rng.randint(MINUTE, 40 * MINUTE),
                    self.pids(),
                    rng,
                )
                age_min = (t - s.start_ms) // MINUTE
                s.stmt_id = int(age_min * rng.uniform(0.5, 3.0)) + 1
                s.line = s.stmt_id + 2
                host.pool.append(s)
        else:  # a new host joins: its pool connects
            for _ in range(w.pool_size):
                host.pool.append(self.connect(w.app_user, host.addr, w.app_name))
            t += rng.randint(3, 9)
            yield t
            for s in host.pool:
                self.authorized(s)
        expire = [s.start_ms + rng.randint(*w.lifetime) for s in host.pool]
        email_cut = w.email_share
        orders_cut = email_cut + w.orders_share
        while True:
            rate = self._rates[min(len(self._rates) - 1, (t - w.start_ms) // (5 * MINUTE))]
            t += max(1, int(rng.expovariate(rate) * 1000))
            yield t
            i = rng.randrange(len(host.pool))
            s = host.pool[i]
            r = rng.random()
            if r < email_cut:
                st, value, rows = by_email, w.email(rng), int(rng.random() < 0.9)
            elif r < orders_cut:
                st, value, rows = orders, str(w.customer_id(rng)), rng.randint(0, 20)
            else:
                st, value, rows = by_id, str(w.customer_id(rng)), 1
            if rng.random() < 0.0003 and st is not by_email:
                bad = f"{value}x"  # a bad value fails at BIND: an ERROR with a context, no audit
                s.lxid += 1
                log.emit(
                    s,
                    '"BIND"',
                    f'invalid input syntax for type integer: "{bad}"',
                    sev="ERROR",
                    state="22P02",
                    context=f"unnamed portal parameter $1 = '{bad}'",
                    query=st.text,
                    vxid=s.vxid(),
                    qid=st.qid,
                )
                continue
            self.audit(s, st, audit_csv(value), rows)
            if rng.random() < 0.003:
                ms = rng.uniform(250, 2400)
                detail = "parameters: $1 = '" + value.replace("'", "''") + "'"
                done = partial(self.duration, s, st, ms, detail)
                self.spawn(t + int(ms), self.later(done))
            if t >= expire[i]:  # maxLifetime: the pool opens a replacement, then closes it
                new = self.connect(w.app_user, host.addr, w.app_name)
                host.pool[i] = new
                expire[i] = t + rng.randint(*w.lifetime)
                self.spawn(t + rng.randint(2, 9), self.later(partial(self.authorized, new)))
                self.spawn(t + rng.randint(10, 400), self.later(partial(self.disconnect, s)))

    def reporting(self, rng: random.Random) -> Proc:
        w = self.w
        p = w.reporting
        regions = Statement(
            "SELECT region, count(*) FROM crm.client_list GROUP BY region", tag="SELECT"
        )
        count = Statement("SELECT count(*) FROM crm.client_list", tag="SELECT")
        join = Statement(
            "SELECT c.region, count(DISTINCT o.client_id), sum(o.total)\n"
            "  FROM crm.orders o\n  JOIN crm.client_list c ON c.id = o.client_id\n"
            " WHERE o.created_at >= now() - interval '1 hour'\n GROUP BY c.region",
            (ORDERS, WATCHED),
            tag="SELECT",
        )
        minute = rng.uniform(3.5, 6.5)
        for hour in range(w.days * 24):
            t = w.start_ms + hour * HOUR + int(minute * MINUTE) + rng.randint(-20_000, 90_000)
            yield t
            s = self.connect(p.user, p.client_addr, p.application_name)
            t += rng.randint(2, 9)
            yield t
            self.authorized(s)
            t += rng.randint(20, 300)
            yield t
            self.audit(s, regions, "<none>", len(w.regions))
            if w.report_count:
                t += rng.randint(200, 1500)
                yield t
                self.audit(s, count, "<none>", 1)
            t += rng.randint(200, 1500)
            yield t
            self.audit(s, join, "<none>", len(w.regions))
            ms = rng.uniform(300, 4000)
            t += int(ms)
            yield t
            self.duration(s, join, ms)
            t += rng.randint(5, 50)
            yield t
            self.disconnect(s)

    def backup(self, rng: random.Random) -> Proc:
        w = self.w
        p = w.backup
        copies = (
            Statement(COPY_CLIENTS, tag="COPY"),
            Statement(COPY_ORDERS, (ORDERS,), tag="COPY"),
        )
        for day in range(w.days):
            t = w.start_ms + day * DAY + 2 * HOUR + rng.randint(0, 12 * MINUTE)
            yield t
            s = self.connect(p.user, p.client_addr, p.application_name)
            t += rng.randint(2, 9)
            yield t
            self.authorized(s)
            for st in copies:
                t += rng.randint(300, 2000)
                yield t
                if not self.log.log_rows:  # with log_rows = on COPY ... TO is not audited at all
                    self.audit(s, st, "<none>", 0)
                ms = rng.uniform(1500, 12_000) * w.rows / 50_000
                t += int(ms)
                yield t
                self.duration(s, st, ms)
            t += rng.randint(50, 500)
            yield t
            self.disconnect(s)

    def dba_days(self, rng: random.Random) -> Proc:
        """The DBA's morning routine on weekdays: settings, a vacuum, a grant once."""
        w = self.w
        p = w.dba
        set_timeout = Statement(
            "SET statement_timeout = '15min';", (), tag="SET", cls="MISC", command="SET"
        )
        vacuum = Statement(
            "VACUUM (ANALYZE) crm.orders;", (), tag="VACUUM", cls="MISC", command="VACUUM"
        )
        grant = Statement(
            "GRANT SELECT ON crm.orders TO reporting;", (), tag="GRANT", cls="ROLE", command="GRANT"
        )
        for day in range(w.days):
            if w.weekday(w.start_ms + day * DAY) >= 5 or rng.random() < 0.2:
                continue
            t = w.start_ms + day * DAY + rng.randint(8 * HOUR, 11 * HOUR)
            yield t
            s = self.connect(p.user, p.client_addr, p.application_name)
            t += rng.randint(2, 9)
            yield t
            self.authorized(s)
            for st, kind in ((set_timeout, ""), (vacuum, ""), (grant, "TABLE")):
                if st is grant and day != 1:
                    continue
                t += rng.randint(5 * SECOND, 90 * SECOND)
                yield t
                self.utility(s, st, kind)
                self.benign.setdefault(s.principal, None)
            t += rng.randint(10 * SECOND, 10 * MINUTE)
            yield t
            self.disconnect(s)

    def analyst(self, a: Analyst, rng: random.Random) -> Proc:
        w = self.w
        for day in range(w.days):
            base = w.start_ms + day * DAY
            if w.weekday(base) >= 5 or rng.random() < 0.06:
                continue
            begin = base + int(a.start_h * HOUR) + rng.randint(-20 * MINUTE, 20 * MINUTE)
            end = base + int(a.end_h * HOUR) + rng.randint(-30 * MINUTE, 20 * MINUTE)
            lunch = begin + int((end - begin) * rng.uniform(0.4, 0.55))
            back = lunch + rng.randint(30 * MINUTE, 60 * MINUTE)
            total = max(5, int(rng.gauss(a.daily, a.daily / 4)))
            blocks = [(begin, lunch), (back, end)]
            if rng.random() < 0.6:  # a reconnect in the afternoon (another tool, a new tab)
                mid = back + int((end - back) * rng.uniform(0.3, 0.7))
                blocks[1:] = [(back, mid), (mid + rng.randint(MINUTE, 20 * MINUTE), end)]
            work = sum(b1 - b0 for b0, b1 in blocks)
            for b0, b1 in blocks:
                yield from self._work(a, b0, b1, int(total * (b1 - b0) / work), rng)

    def _work(self, a: Analyst, t0: int, t1: int, count: int, rng: random.Random) -> Proc:
        """One session: `count` statements between t0 and t1, in small tasks, with think time."""
        t = t0
        yield t
        s = self.connect(a.user, a.host, a.app)
        t += rng.randint(2, 9)
        yield t
        self.authorized(s)
        a.session = s
        think = (t1 - t0) / max(1, count)
        done = 0
        while done < count:
            for st, rows in self._task(a, rng):
                t += int(rng.uniform(3, 45) * SECOND) if done else rng.randint(5, 60) * SECOND
                if t >= t1:
                    break
                yield t
                if st is None:
                    self._typo(s, rng)
                else:
                    self.audit(s, st, "<none>", rows)
                done += 1
            if t >= t1:
                break
            t += int(rng.expovariate(1 / think))
        t = max(t, t1) + rng.randint(0, 5 * MINUTE)
        yield t
        a.session = None
        self.disconnect(s)

    def _typo(self, s: Session, rng: random.Random) -> None:
        text = rng.choice(
            ["SELECT * FORM crm.client_list LIMIT 10", "SELEC count(*) FROM crm.orders"]
        )
        word = text.split()[2] if "FORM" in text else "SELEC"
        s.lxid += 1
        self.log.emit(
            s,
            '"idle"',
            f'syntax error at or near "{word}"',
            sev="ERROR",
            state="42601",
            query=text,
            vxid=s.vxid(),
        )

    def _task(self, a: Analyst, rng: random.Random) -> list[tuple[Statement | None, int]]:
        """A few related statements an analyst runs in a row (None: a typo, an error)."""
        w = self.w
        region = rng.choice(list(w.regions))
        year, month = rng.choice([2024, 2025, 2026]), rng.randint(1, 12)
        since = f"{year}-{month:02d}-01"
        share = {2024: 0.8, 2025: 0.5, 2026: 0.15}[year] * (1 - month / 24)
        nl = "\r\n" if a.crlf else "\n"

        def fin(text: str, multi: str | None = None) -> str:
            if multi is not None and rng.random() < 0.4:
                text = multi.replace("\n", nl)
            return text + (";" if rng.random() < a.semi else "")

        k = rng.random()
        out: list[tuple[Statement | None, int]] = []
        if k < 0.45:  # paging through a filter
            cols = rng.choice(["id, name, region", "id, name, email, region, signup_date", "*"])
            limit = rng.choice([20, 50, 50, 100, 200])
            matched = w.matched(region, share)
            for page in range(rng.randint(1, 6)):
                offset = page * limit
                where = f"region = '{region}' AND signup_date > '{since}'"
                text = fin(
                    f"SELECT {cols} FROM crm.client_list WHERE {where} ORDER BY id "
                    f"LIMIT {limit} OFFSET {offset}",
                    f"SELECT {cols}\n  FROM crm.client_list\n WHERE {where}\n ORDER BY id\n"
                    f" LIMIT {limit} OFFSET {offset}",
                )
                out.append((Statement(text, tag="SELECT"), max(0, min(limit, matched - offset))))
                if matched - offset <= limit:
                    break
        elif k < 0.62:  # aggregates
            text = fin(
                f"SELECT region, count(*) FROM crm.client_list WHERE signup_date >= '{since}' "
                "GROUP BY region ORDER BY 2 DESC",
                f"SELECT region, count(*)\n  FROM crm.client_list\n WHERE signup_date >= "
                f"'{since}'\n GROUP BY region\n ORDER BY 2 DESC",
            )
            out.append((Statement(text, tag="SELECT"), len(w.regions)))
            if rng.random() < 0.5:
                text = fin(f"SELECT count(*) FROM crm.client_list WHERE region = '{region}'")
                out.append((Statement(text, tag="SELECT"), 1))
        elif k < 0.74:  # a name search (a literal with a comma)
            name = rng.choice(["%Müller, J%", "%smith%", "%O''Brien%", "%García, M%", "%Nguyễn%"])
            text = fin(
                f"SELECT id, name, email FROM crm.client_list WHERE name ILIKE '{name}' LIMIT 100"
            )
            out.append((Statement(text, tag="SELECT"), rng.randint(0, 40)))
        elif k < 0.84:  # best customers: a join with the orders
            limit = rng.choice([10, 20, 50])
            text = fin(
                "SELECT c.id, c.name, sum(o.total) AS revenue FROM crm.client_list c JOIN "
                f"crm.orders o ON o.client_id = c.id WHERE c.region = '{region}' GROUP BY c.id, "
                f"c.name ORDER BY revenue DESC LIMIT {limit}",
                "SELECT c.id, c.name, sum(o.total) AS revenue\n  FROM crm.client_list c\n"
                "  JOIN crm.orders o ON o.client_id = c.id\n"
                f" WHERE c.region = '{region}'\n GROUP BY c.id, c.name\n"
                f" ORDER BY revenue DESC\n LIMIT {limit}",
            )
            out.append((Statement(text, (WATCHED, ORDERS), tag="SELECT"), limit))
        elif k < 0.94:  # orders only: another table, not watched
            text = fin(
                f"SELECT status, count(*), sum(total) FROM crm.orders WHERE created_at >= "
                f"'{since}' GROUP BY status"
            )
            out.append((Statement(text, (ORDERS,), tag="SELECT"), rng.randint(3, 6)))
        elif k < 0.985:  # one customer
            text = fin(f"SELECT * FROM crm.client_list WHERE id = {w.customer_id(rng)}")
            out.append((Statement(text, tag="SELECT"), 1))
        else:
            out.append((None, 0))
        return out

    # ---- attacks ---------------------------------------------------------------------------

    def attack(self, run: AttackRun) -> Proc:
        plan, rng = run.plan, self.attack_rng
        p = plan.principal
        s: Session | None = None
        if plan.uses_analyst is not None:
            yield plan.start_ms
            s = plan.uses_analyst.session  # in her open session, if she has one
        own = s is None
        if s is None:
            yield max(self.log.t, plan.start_ms - rng.randint(5 * SECOND, 50 * SECOND))
            s = self.connect(p.user, p.client_addr, p.application_name, attack=True)
            yield self.log.t + rng.randint(2, 9)
            self.authorized(s)
        t = self.log.t
        for step in plan.steps:
            t = max(self.log.t, plan.start_ms + step.at)
            yield t
            if step.run is not None:
                step.run(self, s)
                run.saw(self.log.t, 0)
            else:
                self.audit(s, step.statement, step.params, step.rows, run)
        last = plan.steps[-1]
        if last.statement.tag == '"SELECT"' and last.rows > 5000:  # over the duration limit
            ms = rng.uniform(300, 3000) * last.rows / 50_000
            t += int(ms)
            yield t
            self.duration(s, last.statement, ms)
        if plan.after is not None:
            t = plan.after(self, s, t)
        if own:
            yield t + rng.randint(500, 20_000)
            self.disconnect(s)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def generate(
    out: Path,
    *,
    seed: int,
    log_rows: bool,
    days: int = 4,
    scale: float = 1.0,
    attacks: Sequence[str] = ATTACKS,
) -> Manifest:
    """Write a scenario csvlog to `out` and its manifest to `out.with_suffix(".json")`.

    Deterministic for a seed. Raises ValueError for an unknown attack or fewer than 3 days (the
    attacks need a learning period and a weekday night after it).
    """
    unknown = set(attacks) - set(ATTACKS)
    if unknown:
        raise ValueError(f"unknown attacks: {sorted(unknown)}")
    if days < 3:
        raise ValueError("a scenario needs at least 3 days")
    world = World(seed, log_rows, days, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with part.open("w", encoding="utf-8", newline="") as f:
        log = Log(f, log_rows)
        run = Run(world, log, attacks)
        run.run()
    part.replace(out)
    found = []
    for r in run.runs:
        if r.first < 0:
            raise RuntimeError(f"attack {r.plan.name} wrote no audit record")
        half = (
            r.half * 1000
            if r.half is not None and r.plan.name == "stolen_credentials_paging"
            else None
        )
        found.append(
            Attack(
                r.plan.name, r.plan.principal, r.first * 1000, r.last * 1000, half, r.plan.detail
            )
        )
    found.sort(key=lambda a: a.start_us)
    manifest = Manifest(
        path=str(out),
        seed=seed,
        log_rows=log_rows,
        table=WATCHED,
        table_rows=world.rows,
        start_us=world.start_ms * 1000,
        end_us=world.end_ms * 1000,
        records=log.records,
        audit_records=log.audits,
        expected=[{"user": "backup", "application_name": "pg_dump", "note": "nightly backup"}],
        benign=list(run.benign),
        attacks=found,
    )
    out.with_suffix(".json").write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _utc(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%a %Y-%m-%d %H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.scenario", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument("out", type=Path, help="the csvlog file to write (manifest: OUT.json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-rows", action="store_true", help="pgaudit.log_rows = on")
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies all benign rates")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = generate(args.out, seed=args.seed, log_rows=args.log_rows, days=args.days, scale=args.scale)
    took = time.perf_counter() - t0
    size = args.out.stat().st_size
    print(
        f"wrote {m.records:,} records ({m.audit_records:,} audit), {size / 2**20:.1f} MiB to "
        f"{args.out} in {took:.1f} s; manifest {args.out.with_suffix('.json')}"
    )
    print(
        f"{_utc(m.start_us)} .. {_utc(m.end_us)} UTC; {m.table} {m.table_rows:,} rows; "
        f"{len(m.benign)} benign principals; log_rows={'on' if m.log_rows else 'off'}"
    )
    for a in m.attacks:
        p = a.principal
        print(f"  {_utc(a.start_us)} {a.name:<26} {p.user}@{p.client_addr} [{p.application_name}]")
        print(f"      {a.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
