#!/usr/bin/env python3
"""Deterministic generator of a realistic PostgreSQL 15 csvlog file full of pgaudit records.

The file is what a PG15 server with pgaudit 1.7 writes with::

    log_destination = 'csvlog'          log_connections = on       log_disconnections = on
    log_min_duration_statement = 250    log_autovacuum_min_duration = 0   log_checkpoints = on
    compute_query_id = auto             shared_preload_libraries = 'pgaudit,pg_stat_statements'
    pgaudit.role = 'auditor'            pgaudit.log_parameter = on        pgaudit.log_relation = on
    pgaudit.log_parameter_max_size = 256                    pgaudit.log_rows = off (see --log-rows)
    GRANT SELECT ON crm.client_list, crm.orders TO auditor;  -- object audit on two tables
    ALTER ROLE alice, "zoë" SET pgaudit.log = 'read';        -- session audit for the analysts
    ALTER ROLE reporting SET pgaudit.log_statement_once = on;
    ALTER ROLE billing_svc SET pgaudit.log_parameter = off;  -- its parameters are <not logged>
    ALTER ROLE postgres SET pgaudit.log = 'role, ddl';

Every row has the 26 csvlog columns of PostgreSQL 15, written the way ``csvlog.c`` writes them:
text fields through ``appendCSVLiteral`` (always double-quoted, ``""`` for an empty string, nothing
for NULL), numbers and timestamps bare, ``connection_from`` quoted ``"host:port"``, session id
``%lx.%x`` of (backend start epoch, pid).

pgaudit messages (``AUDIT: TYPE,STMT,SUBSTMT,CLASS,COMMAND,OBJTYPE,OBJNAME,STATEMENT,PARAMS``
and ``,ROWS`` with --log-rows) use pgaudit's ``append_valid_csv`` (quoted only when the value holds
a comma, a quote, CR or LF) on the statement, on each parameter and again on the joined parameter
list; the whole message is then quoted once more as the csvlog ``message`` column.

The workload, over about one day of event time (``--span-hours``):

* ``crm_app`` / ``crm-web`` from six app hosts, a pool of long-lived connections, key lookups
  over the extended protocol (command tag ``BIND``), a join with ``crm.orders`` (two OBJECT
  records), name searches whose parameters hold commas, quotes and non-ASCII; slow ones get
  ``duration:`` lines with a ``parameters:`` detail;
* ``billing_svc`` / ``billing-worker`` from two hosts, one connection per job (connection lines),
  mostly ``<not logged>`` parameters, some jobs with ``= ANY($1)`` array parameters, NULLs and
  ``<long param suppressed>``, and an UPDATE (class WRITE);
* analysts ``alice`` (psql) and ``zoë`` (DBeaver, CRLF line ends) in office hours: multi-line
  statements, SESSION + OBJECT records, literals with commas and quoted identifiers;
* ``reporting`` / ``hourly-agg``: an hourly aggregate (``log_statement_once``, so its second
  relation reads ``<previously logged>``);
* ``backup`` / ``pg_dump`` at 02:00: ``COPY ... TO stdout`` (not written at all with --log-rows,
  as pgaudit does);
* a quiet enumerator (``crm_app`` from an unknown host, empty application_name, sequential ids);
* ``jdoe`` probing: ``ERROR 42501 permission denied`` with the statement in the ``query`` column;
* server lines: checkpoints, autovacuum (multi-line messages), a GRANT by ``postgres`` (a ROLE
  SESSION record), occasional bind errors with a ``context``.

Run ``gen_csvlog.py --check`` to re-read the file with Python's csv module, verify it (26 columns,
every ``AUDIT:`` message parses into 9 or 10 fields) and write ``FILE.json`` with its counts.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import heapq
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# the record writers are shared with the detection scenarios
from collectors.csvlog_writer import Statement  # noqa: E402
from tests.scenario.csvlog import Stamps, audit_csv, audit_params, lit, query_id, row  # noqa: E402

WATCHED = "crm.client_list"
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "bench-1m.csv"
START = datetime(2026, 11, 28, 0, 0, 0, tzinfo=UTC)
TABLE_ROWS = 50_000

# Relative traffic per hour of day (UTC); averages ~1 so N records span about --span-hours.
HOURLY_INTENSITY = [0.25] * 6 + [0.5, 1.0] + [1.7] * 10 + [1.2, 0.8] + [0.4] * 4


# --------------------------------------------------------------------------------------------
# Quoting, exactly as the servers do it
# --------------------------------------------------------------------------------------------


def pg_param_detail(values: list[str | None]) -> str:
    """errdetail of a slow extended-protocol statement: ``parameters: $1 = '1', $2 = NULL``."""
    parts = []
    for i, v in enumerate(values, 1):
        parts.append(f"${i} = NULL" if v is None else f"${i} = '" + v.replace("'", "''") + "'")
    return "parameters: " + ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Sessions (one backend each)
# --------------------------------------------------------------------------------------------


class Session:
    __slots__ = (
        "pid",
        "user",
        "db",
        "host",
        "port",
        "app",
        "start_s",
        "start_ms",
        "head",
        "start_str",
        "tail",
        "line",
        "backend_id",
        "lxid",
        "stmt_id",
        "left",
        "btype",
        "conn",
        "sid",
    )

    def __init__(
        self,
        gen: Generator,
        user: str,
        host: str,
        app: str,
        start_ms: int,
        *,
        db: str = "crm",
        port: int | None = None,
        btype: str = "client backend",
        statements: int = 0,
    ) -> None:
        self.pid = gen.next_pid()
        self.user = user
        self.db = db
        self.host = host
        self.port = port if port is not None else gen.rng.randint(32768, 60999)
        self.app = app
        self.start_ms = start_ms
        self.start_s = start_ms // 1000
        self.btype = btype
        self.line = 0
        self.backend_id = gen.rng.randint(3, 140)
        self.lxid = gen.rng.randint(1, 9000)
        self.stmt_id = 0
        self.left = statements
        self.sid = sid = f"{self.start_s:x}.{self.pid:x}"
        if host == "":
            conn = ""
        elif host == "[local]":
            conn = '"[local]"'
        else:
            conn = f'"{host}:{self.port}"'
        self.conn = conn
        user_f = lit(user) if user else ""
        db_f = lit(db) if db else ""
        self.head = f",{user_f},{db_f},{self.pid},{conn},{sid},"
        self.start_str = datetime.fromtimestamp(self.start_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.tail = f",{lit(app)},{lit(btype)},,"

    def vxid(self) -> str:
        return f"{self.backend_id}/{self.lxid}"


# --------------------------------------------------------------------------------------------
# Workload material
# --------------------------------------------------------------------------------------------

APP_HOSTS = [f"10.0.1.{i}" for i in range(11, 17)]
BILLING_HOSTS = ["10.0.2.21", "10.0.2.22"]

APP_LOOKUP = Statement(
    "SELECT id, name, email, phone, country FROM crm.client_list WHERE id = $1", (WATCHED,)
)
APP_JOIN = Statement(
    "SELECT c.id, c.name, o.id, o.total, o.created_at FROM crm.client_list c "
    "JOIN crm.orders o ON o.client_id = c.id WHERE c.id = $1 ORDER BY o.created_at DESC LIMIT $2",
    (WATCHED, "crm.orders"),
)
APP_SEARCH = Statement(
    "SELECT id, name, email FROM crm.client_list WHERE name ILIKE $1 AND region = $2 LIMIT 20",
    (WATCHED,),
)
SEARCH_TERMS = [
    "%Müller, J%",
    "Org 1,5",
    'say "hi"',
    "%O'Brien & Söhne%",
    "%São Paulo%",
    'Zoë "Zo" Smith',
    "%Łódź%",
    "%株式会社%",
    "%smith%",
    "%garcía%",
    "ACME, Inc.",
]
REGIONS = ["emea", "apac", "amer", "latam"]
BILLING_ANY = Statement(
    "SELECT id, name, billing_address, vat_id FROM crm.client_list WHERE id = ANY($1)", (WATCHED,)
)
BILLING_UPDATE = Statement(
    "UPDATE crm.client_list SET billing_note = $1, updated_at = now() WHERE id = $2",
    (WATCHED,),
    cls="WRITE",
    command="UPDATE",
)
BILLING_ORDERS = Statement(
    "SELECT id, total, currency FROM crm.orders WHERE client_id = $1 AND paid IS NOT TRUE",
    ("crm.orders",),
)
ENUM_STMT = Statement("SELECT * FROM crm.client_list WHERE id = $1", (WATCHED,))
COUNTRIES = ["Österreich", "Deutschland", "España", "France", "Česko", "Polska", "Sverige"]


def analyst_statements(rng: random.Random) -> Statement:
    """One analyst statement: simple protocol, mostly multi-line, some with CRLF line ends."""
    k = rng.randrange(6)
    if k == 0:
        country = rng.choice(COUNTRIES)
        return Statement(
            "SELECT c.id, c.name, c.email\n  FROM crm.client_list c\n"
            f" WHERE c.country = '{country}'\n ORDER BY c.name;",
            (WATCHED,),
            tag="SELECT",
        )
    if k == 1:
        month = rng.randint(1, 11)
        return Statement(
            '-- Q4 Umsatzprüfung\nSELECT c.region, count(*) AS "Anzahl Kunden", sum(o.total)\n'
            "  FROM crm.client_list c\n  JOIN crm.orders o ON o.client_id = c.id\n"
            f" WHERE o.created_at >= '2026-{month:02d}-01'\n GROUP BY c.region;",
            (WATCHED, "crm.orders"),
            tag="SELECT",
        )
    if k == 2:
        name = rng.choice(["Müller, %", "Smith, %", "Nguyễn, %", "O''Neil, %"])
        return Statement(
            f"select name, email, phone from crm.client_list where name like '{name}' limit 500",
            (WATCHED,),
            tag="SELECT",
        )
    if k == 3:
        days = rng.choice([7, 14, 30])
        return Statement(
            "SELECT *\r\n  FROM crm.client_list\r\n"
            f" WHERE created_at > now() - interval '{days} days'\r\n ORDER BY created_at DESC",
            (WATCHED,),
            tag="SELECT",
        )
    if k == 4:
        return Statement(
            'SELECT "name", "email"   -- "VIP" clients, see ticket #4411\n'
            "  FROM crm.client_list\n WHERE tier = 'vip'\n   AND country IN ('France', 'España')",
            (WATCHED,),
            tag="SELECT",
        )
    return Statement(
        "SELECT count(*) FROM crm.client_list WHERE email LIKE '%@example.com'",
        (WATCHED,),
        tag="SELECT",
    )


AGG_REGION = Statement(
    "SELECT region, count(*) FROM crm.client_list GROUP BY region", (WATCHED,), tag="SELECT"
)
AGG_DAILY = Statement(
    "SELECT date_trunc('day', o.created_at) AS day, count(DISTINCT c.id), sum(o.total)\n"
    "  FROM crm.orders o JOIN crm.client_list c ON c.id = o.client_id\n"
    " WHERE o.created_at >= now() - interval '1 day'\n GROUP BY 1",
    ("crm.orders", WATCHED),
    tag="SELECT",
)
COPY_CLIENTS = Statement(
    "COPY crm.client_list (id, name, email, phone, country, region, tier, created_at) TO stdout;",
    (WATCHED,),
    tag="COPY",
)
COPY_ORDERS = Statement(
    "COPY crm.orders (id, client_id, total, currency, paid, created_at) TO stdout;",
    ("crm.orders",),
    tag="COPY",
)
PROBES = [
    ("SELECT * FROM crm.client_secrets;", "permission denied for table client_secrets"),
    ("select * from crm.client_list limit 10", "permission denied for table client_list"),
    ("COPY crm.client_list TO '/tmp/c.csv'", "permission denied for table client_list"),
]


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


class Generator:
    def __init__(self, records: int, seed: int, log_rows: bool, span_hours: float) -> None:
        self.rng = random.Random(seed)
        self.target = records
        self.log_rows = log_rows
        self.count = 0
        self.buf: list[str] = []
        self.t = int(START.timestamp() * 1000)
        # One step of the main loop writes ~1.1 records on average (joins, SESSION + OBJECT,
        # connection lines), so stretch the gap to make N records cover about span_hours.
        self.mean_gap = 1.09 * span_hours * 3_600_000 / max(records, 1)
        self._pid = 21_000
        self._stamps = Stamps()
        self._seq = itertools.count()
        self.sched: list[tuple[int, int, Callable[[], None]]] = []
        rng = self.rng
        boot = self.t - 3 * 86_400_000 - 7_777_123
        self.checkpointer = Session(self, "", "", "", boot, db="", btype="checkpointer", port=0)
        self.app_pool = [
            Session(self, "crm_app", h, "crm-web", self.t - rng.randint(60_000, 7_200_000))
            for h in APP_HOSTS
            for _ in range(4)
        ]
        for s in self.app_pool:  # connected before the file starts
            s.left = rng.randint(500, 6000)
            s.line = s.stmt_id = rng.randint(100, 5000)
        self.billing: Session | None = None
        self.analysts: dict[str, Session | None] = {"alice": None, "zoë": None}
        self.enum_session: Session | None = None
        self.enum_next_id = rng.randint(1, 2000)
        self._setup_schedule()
        day = self._pick_table(business=True)
        night = self._pick_table(business=False)
        self.tables = (night, day)

    # ---- small helpers ----------------------------------------------------------------

    def next_pid(self) -> int:
        self._pid += self.rng.randint(1, 37)
        if self._pid > 4_000_000:
            self._pid = 1000
        return self._pid

    def now(self) -> str:
        return self._stamps(self.t)

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
        self.buf.append(
            row(
                self.now(),
                s,
                tag,
                msg,
                sev=sev,
                state=state,
                detail=detail,
                context=context,
                query=query,
                vxid=vxid,
                qid=qid,
            )
        )
        self.count += 1

    def schedule(self, at_ms: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self.sched, (at_ms, next(self._seq), fn))

    # ---- connection lifecycle -----------------------------------------------------------

    def connect(self, user: str, host: str, app: str, statements: int = 0) -> Session:
        s = Session(self, user, host, app, self.t, statements=statements)
        port = f" port={s.port}" if host != "[local]" else ""
        # Before the startup packet is read: no user, no database, empty ps display and
        # application_name; while authenticating the application_name GUC is still "".
        saved_head, saved_tail = s.head, s.tail
        s.head = f",,,{s.pid},{s.conn},{s.sid},"
        s.tail = f',"",{lit(s.btype)},,'
        self.emit(s, '""', f"connection received: host={host}{port}")
        s.head = saved_head
        ssl = (
            " SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"
            if host != "[local]"
            else ""
        )
        app_part = f" application_name={app}" if app else ""
        self.t += self.rng.randint(2, 9)
        self.emit(
            s,
            '"authentication"',
            f"connection authorized: user={user} database={s.db}{app_part}{ssl}",
            vxid=f"{s.backend_id}/0",
        )
        s.tail = saved_tail
        return s

    def disconnect(self, s: Session) -> None:
        el = self.t - s.start_ms
        h, rem = divmod(el, 3_600_000)
        m, rem = divmod(rem, 60_000)
        port = f" port={s.port}" if s.host != "[local]" else ""
        self.emit(
            s,
            '"idle"',
            f"disconnection: session time: {h}:{m:02d}:{rem / 1000:06.3f} user={s.user} "
            f"database={s.db} host={s.host}{port}",
        )

    # ---- pgaudit ------------------------------------------------------------------------

    def audit(
        self,
        s: Session,
        st: Statement,
        params: str,
        rows: int,
        *,
        session_log: bool = False,
        once: bool = False,
    ) -> None:
        """The records pgaudit writes for one statement touching st.objects."""
        s.stmt_id += 1
        s.lxid += 1
        vx = s.vxid()
        row_part = f",{rows}" if self.log_rows else ""
        first = True
        for obj in st.objects:
            if once and not first:
                stmt, prm = "<previously logged>", "<previously logged>"
            else:
                stmt, prm = st.quoted, params
            common = f"{s.stmt_id},1,{st.cls},{st.command},TABLE,{obj},{stmt},{prm}{row_part}"
            if session_log:
                self.emit(s, st.tag, f"AUDIT: SESSION,{common}", vxid=vx, qid=st.qid)
            self.emit(s, st.tag, f"AUDIT: OBJECT,{common}", vxid=vx, qid=st.qid)
            first = False

    # ---- actors -------------------------------------------------------------------------

    def app_request(self, kind: int) -> None:
        rng = self.rng
        i = rng.randrange(len(self.app_pool))
        s = self.app_pool[i]
        if s.left <= 0:
            self.disconnect(s)
            self.t += rng.randint(1, 40)
            s = self.connect("crm_app", s.host, "crm-web")
            s.left = rng.randint(500, 6000)
            self.app_pool[i] = s
        s.left -= 1
        values: list[str | None]
        if kind == 0:
            values = [str(rng.randint(1, TABLE_ROWS))]
            st, rows = APP_LOOKUP, (1 if rng.random() > 0.02 else 0)
        elif kind == 1:
            values = [str(rng.randint(1, TABLE_ROWS)), str(rng.choice([5, 10, 20]))]
            st, rows = APP_JOIN, rng.randint(0, 20)
        else:
            values = [rng.choice(SEARCH_TERMS), rng.choice(REGIONS)]
            st, rows = APP_SEARCH, rng.randint(0, 20)
        if kind != 2 and rng.random() < 0.0004:
            # A bad value from the client fails at BIND: an ERROR with a context, no audit.
            bad = f"{values[0]}x"
            s.lxid += 1
            self.emit(
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
            return
        self.audit(s, st, audit_params(values), rows)
        if rng.random() < 0.05:
            # Slow: log_min_duration_statement logs it when the Execute ends, meanwhile other
            # backends keep writing.
            ms = rng.uniform(250, 2400)
            detail = pg_param_detail(values)

            def slow() -> None:
                self.emit(
                    s,
                    '"SELECT"',
                    f"duration: {ms:.3f} ms  execute <unnamed>: {st.text}",
                    detail=detail,
                    vxid=s.vxid(),
                    qid=st.qid,
                )

            self.schedule(self.t + int(ms), slow)

    def billing_job(self) -> None:
        rng = self.rng
        s = self.billing
        if s is None or s.left <= 0:
            if s is not None:
                self.disconnect(s)
                self.t += rng.randint(1, 200)
            s = self.connect("billing_svc", rng.choice(BILLING_HOSTS), "billing-worker")
            s.left = rng.randint(3, 12)
            self.billing = s
            self.t += rng.randint(1, 20)
        s.left -= 1
        r = rng.random()
        if r < 0.55:
            ids = sorted(rng.sample(range(1, TABLE_ROWS), rng.randint(1, 6)))
            self.audit(s, BILLING_ANY, "<not logged>", len(ids))
        elif r < 0.85:
            self.audit(s, BILLING_ORDERS, "<not logged>", rng.randint(0, 4))
        else:
            self.audit(s, BILLING_UPDATE, "<not logged>", 1)

    def billing_params_job(self) -> None:
        """The same worker after a config change on one host: parameters logged (arrays, NULLs)."""
        rng = self.rng
        s = self.billing
        if s is None or s.left <= 0:
            self.billing_job()
            return
        s.left -= 1
        if rng.random() < 0.6:
            ids = sorted(rng.sample(range(1, TABLE_ROWS), rng.randint(1, 6)))
            values: list[str | None] = ["{" + ",".join(map(str, ids)) + "}"]
            self.audit(s, BILLING_ANY, audit_params(values), len(ids))
        else:
            note: str | None
            p = rng.random()
            if p < 0.3:
                note = None
            elif p < 0.5:
                note = "<long param suppressed>"
            else:
                note = rng.choice(["paid, thanks", 'dunning "level 2"', "Zahlung erhalten ✓", "ok"])
            values = [note, str(rng.randint(1, TABLE_ROWS))]
            self.audit(s, BILLING_UPDATE, audit_params(values), 1)

    def analyst(self) -> None:
        rng = self.rng
        name = "alice" if rng.random() < 0.6 else "zoë"
        s = self.analysts[name]
        if s is None or s.left <= 0:
            if s is not None:
                self.disconnect(s)
                self.t += rng.randint(100, 5000)
            if name == "alice":
                s = self.connect("alice", "192.168.50.23", "psql")
            else:
                s = self.connect(
                    "zoë", "192.168.50.41", "DBeaver 23.2.0 - SQLEditor <Script-3.sql>"
                )
            s.left = rng.randint(20, 300)
            self.analysts[name] = s
            self.t += rng.randint(500, 20_000)
        s.left -= 1
        st = analyst_statements(rng)
        if name == "alice" and "\r\n" in st.text:  # CRLF comes from zoë's Windows client
            st = Statement(st.text.replace("\r\n", "\n"), st.objects, tag="SELECT")
        rows = 1 if st.text.startswith("SELECT count") else rng.randint(0, 5000)
        self.audit(s, st, "<none>", rows, session_log=True)
        if rng.random() < 0.2:
            ms = rng.uniform(250, 9000)
            self.t += int(ms) // 50
            self.emit(
                s,
                '"SELECT"',
                f"duration: {ms:.3f} ms  statement: {st.text}",
                vxid=s.vxid(),
                qid=st.qid,
            )

    def enumerator(self) -> None:
        rng = self.rng
        s = self.enum_session
        if s is None:
            s = self.connect("crm_app", "10.0.7.99", "")
            self.enum_session = s
        self.audit(s, ENUM_STMT, audit_params([str(self.enum_next_id)]), 1)
        self.enum_next_id += 1 if rng.random() < 0.9 else rng.randint(2, 5)

    # ---- scheduled events ---------------------------------------------------------------

    def _setup_schedule(self) -> None:
        t0 = self.t
        hour = 3_600_000
        end = t0 + 4 * 24 * hour  # more than enough; unused entries are simply never reached
        for at in range(t0 + 170_000, end, 300_000):
            self.schedule(at, self.checkpoint)
        for at in range(t0 + 5 * 60_000 + 1234, end, hour):
            self.schedule(at, self.hourly_agg)
        for day in range(4):
            self.schedule(t0 + day * 24 * hour + 2 * hour + 17, self.backup)
            self.schedule(t0 + day * 24 * hour + 10 * hour + 15 * 60_000, self.dba_grant)
            for probe in range(3):
                at = t0 + day * 24 * hour + (11 + 3 * probe) * hour + 1_234_567 * (probe + 1)
                self.schedule(at, self.probe)
        for at in range(t0 + 1_111_111, end, 37 * 60_000):
            self.schedule(at, self.autovacuum)

    def checkpoint(self) -> None:
        cp = self.checkpointer
        self.emit(cp, "", "checkpoint starting: time")
        rng = self.rng
        took = rng.uniform(20, 270)
        bufs = rng.randint(200, 9000)

        def complete() -> None:
            self.emit(
                cp,
                "",
                f"checkpoint complete: wrote {bufs} buffers ({bufs / 163.84:.1f}%); "
                f"0 WAL file(s) added, 0 removed, {rng.randint(0, 3)} recycled; "
                f"write={took:.3f} s, sync={rng.uniform(0, 0.05):.3f} s, "
                f"total={took + 0.02:.3f} s; sync files={rng.randint(5, 90)}, "
                f"longest=0.00{rng.randint(1, 9)} s, average=0.001 s; "
                f"distance={bufs * 8} kB, estimate={bufs * 9} kB",
            )

        self.schedule(self.t + int(took * 1000), complete)

    def autovacuum(self) -> None:
        rng = self.rng
        s = Session(self, "", "", "", self.t, db="", btype="autovacuum worker", port=0)
        tbl = rng.choice(["crm.crm.client_list", "crm.crm.orders", "crm.pg_catalog.pg_statistic"])
        hits = rng.randint(100, 90_000)
        self.emit(
            s,
            "",
            f'automatic analyze of table "{tbl}"\n'
            f"avg read rate: {rng.uniform(0, 40):.3f} MB/s, avg write rate: 0.000 MB/s\n"
            f"buffer usage: {hits} hits, {rng.randint(0, 900)} misses, 0 dirtied\n"
            f"system usage: CPU: user: {rng.uniform(0, 0.4):.2f} s, system: 0.00 s, "
            f"elapsed: {rng.uniform(0, 1.5):.2f} s",
            vxid=f"{s.backend_id}/{s.lxid}",
        )

    def hourly_agg(self) -> None:
        rng = self.rng
        s = self.connect("reporting", "10.0.3.7", "hourly-agg")
        self.t += rng.randint(5, 60)
        self.audit(s, AGG_REGION, "<none>", len(REGIONS), once=True)
        self.t += rng.randint(300, 1500)
        self.audit(s, AGG_DAILY, "<none>", 1, once=True)
        ms = rng.uniform(400, 4000)
        self.t += int(ms)
        self.emit(
            s,
            '"SELECT"',
            f"duration: {ms:.3f} ms  statement: {AGG_DAILY.text}",
            vxid=s.vxid(),
            qid=AGG_DAILY.qid,
        )
        self.disconnect(s)

    def backup(self) -> None:
        rng = self.rng
        s = self.connect("backup", "10.0.9.5", "pg_dump")
        self.t += rng.randint(200, 900)
        for st in (COPY_CLIENTS, COPY_ORDERS):
            if not self.log_rows:
                # With pgaudit.log_rows = on COPY ... TO is not audited at all (DESIGN.md).
                self.audit(s, st, "<none>", 0)
            ms = rng.uniform(1500, 9000)
            self.t += int(ms)
            self.emit(
                s,
                '"COPY"',
                f"duration: {ms:.3f} ms  statement: {st.text}",
                vxid=s.vxid(),
                qid=st.qid,
            )
        self.disconnect(s)

    def dba_grant(self) -> None:
        s = self.connect("postgres", "[local]", "psql")
        self.t += 4000
        s.stmt_id += 1
        s.lxid += 1
        text = "GRANT SELECT ON crm.client_list TO reporting;"
        row_part = ",0" if self.log_rows else ""
        self.emit(
            s,
            '"GRANT"',
            f"AUDIT: SESSION,{s.stmt_id},1,ROLE,GRANT,,,{audit_csv(text)},<none>{row_part}",
            vxid=s.vxid(),
            qid="0",
        )
        self.t += 1500
        self.disconnect(s)

    def probe(self) -> None:
        rng = self.rng
        s = self.connect("jdoe", "192.168.50.77", "psql")
        for text, msg in PROBES:
            self.t += rng.randint(2000, 30_000)
            s.lxid += 1
            self.emit(
                s,
                '"SELECT"' if text[0] in "Ss" else '"COPY"',
                msg,
                sev="ERROR",
                state="42501",
                query=text,
                vxid=s.vxid(),
                qid=query_id(text),
            )
        self.t += 3000
        self.disconnect(s)

    # ---- main loop ------------------------------------------------------------------------

    def _pick_table(self, business: bool) -> tuple[list[float], list[Callable[[], None]]]:
        acts: list[tuple[float, Callable[[], None]]] = [
            (0.690, lambda: self.app_request(0)),
            (0.055, lambda: self.app_request(1)),
            (0.035, lambda: self.app_request(2)),
            (0.060, self.billing_job),
            (0.020, self.billing_params_job),
            (0.002, self.enumerator),
        ]
        if business:
            acts.append((0.030, self.analyst))
        cum: list[float] = []
        total = 0.0
        for w, _ in acts:
            total += w
            cum.append(total)
        return [c / total for c in cum], [fn for _, fn in acts]

    def run(self, out: Path) -> None:
        rng = self.rng
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            while self.count < self.target:
                hour = (self.t // 3_600_000) % 24
                gap = -math.log(1.0 - rng.random()) * self.mean_gap / HOURLY_INTENSITY[hour]
                nxt = self.t + max(1, int(gap))
                while self.sched and self.sched[0][0] <= nxt and self.count < self.target:
                    at, _, fn = heapq.heappop(self.sched)
                    self.t = max(self.t, at)
                    fn()
                self.t = max(self.t, nxt)
                cum, fns = self.tables[8 <= hour < 18]
                fns[bisect.bisect_left(cum, rng.random())]()
                if len(self.buf) >= 20_000:
                    f.write("".join(self.buf))
                    self.buf.clear()
            # Stop at exactly N records, as a rotated file may cut a statement's records short.
            extra = self.count - self.target
            if extra > 0:
                del self.buf[len(self.buf) - extra :]
            f.write("".join(self.buf))
            self.buf.clear()
        tmp.replace(out)


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def check(path: Path) -> dict[str, Any]:
    """Re-read the file with csv; verify the shape; return (and store next to it) its counts."""
    records = audit = watched = denied = multiline = 0
    bad: list[str] = []
    by_user: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            records += 1
            if len(row) != 26:
                bad.append(f"record {n}: {len(row)} columns")
                continue
            msg = row[13]
            if "\n" in msg or "\r" in msg:
                multiline += 1
            if msg.startswith("AUDIT: "):
                audit += 1
                fields = next(csv.reader([msg[7:]]))
                if len(fields) not in (9, 10):
                    bad.append(f"record {n}: AUDIT message has {len(fields)} fields")
                    continue
                if fields[0] not in ("SESSION", "OBJECT"):
                    bad.append(f"record {n}: audit type {fields[0]!r}")
                if fields[8] not in ("<none>", "<not logged>", "<previously logged>"):
                    # The parameter list must itself parse as CSV.
                    next(csv.reader([fields[8]]))
                if fields[6] == WATCHED:
                    watched += 1
                    by_user[row[1]] += 1
                by_kind[f"{fields[0]} {fields[3]} {fields[4]} {fields[6] or '-'}"] += 1
            elif row[12] == "42501":
                denied += 1
            else:
                by_kind[f"{row[11]} {msg.split(':', 1)[0][:40]}"] += 1
            if len(bad) > 20:
                break
    result: dict[str, Any] = {
        "file": str(path),
        "bytes": path.stat().st_size,
        "records": records,
        "audit_records": audit,
        "watched_events": watched,
        "non_audit_records": records - audit,
        "permission_denied": denied,
        "multiline_messages": multiline,
        "watched_events_by_user": dict(by_user.most_common()),
        "kinds": dict(by_kind.most_common()),
        "errors": bad,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--records", type=int, default=1_000_000, help="csvlog records to write")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--log-rows", action="store_true", help="pgaudit.log_rows = on (append ROWS)")
    ap.add_argument("--span-hours", type=float, default=24.0, help="event time covered (about)")
    ap.add_argument(
        "--check", action="store_true", help="verify the file with csv and write FILE.json"
    )
    ap.add_argument("--check-only", action="store_true", help="only verify an existing file")
    args = ap.parse_args(argv)

    if not args.check_only:
        t0 = time.perf_counter()
        Generator(args.records, args.seed, args.log_rows, args.span_hours).run(args.out)
        dt = time.perf_counter() - t0
        size = args.out.stat().st_size
        print(
            f"wrote {args.records:,} records, {size / 2**20:.1f} MiB to {args.out} in {dt:.1f} s",
            file=sys.stderr,
        )
    if args.check or args.check_only:
        t0 = time.perf_counter()
        result = check(args.out)
        result["generator"] = {
            "records": args.records,
            "seed": args.seed,
            "log_rows": args.log_rows,
            "span_hours": args.span_hours,
        }
        manifest = args.out.with_name(args.out.name + ".json")
        manifest.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "kinds"}, ensure_ascii=False))
        print(f"checked in {time.perf_counter() - t0:.1f} s; counts in {manifest}", file=sys.stderr)
        if result["errors"]:
            print("INVALID: " + "; ".join(result["errors"][:5]), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
