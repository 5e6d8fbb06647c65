"""End to end: real clients read crm.client_list, pgaudit logs it, tablewatch parses all 3 formats.

One private PostgreSQL 15 + pgaudit cluster per ``pgaudit.log_rows`` setting (off, on) logs to
stderr, csvlog and jsonlog at once. Roles read the watched table the ways real clients do (driver
parameters over the extended protocol, psql, COPY, a cursor, a view, a join, writes, a denied
read) with hostile text everywhere (markup in application_name, escape sequences, unicode, a
100 KB statement, statements that carry forged log lines). The test records what it executed;
the three parses must agree with each other and with that record, exactly.

Facts this relies on (DESIGN.md, "Facts about pgaudit"; all re-checked here):

- object audit writes one ``AUDIT: OBJECT`` record per relation touched, a read through a view
  included, with COMMAND ``SELECT`` for COPY TO and DECLARE CURSOR too (the command *tag* of
  driver traffic, csvlog column ``ps``, is ``BIND``; the audit COMMAND is still ``SELECT``);
- STATEMENT_ID counts the audited statements of a session from 1; SUBSTATEMENT_ID is 1 here;
- with ``pgaudit.log_rows = on`` the COPY TO and DECLARE CURSOR records are not written at all;
- FETCH from a cursor is never audited (the read is logged at DECLARE, or not at all);
- a permission-denied read writes no audit record, only the ERROR with its STATEMENT.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from collectors.events import EventBuilder, ParseStats
from collectors.logfile import detect_format, read_events
from core.events import AccessEvent, EventKind
from core.tables import TableName, WatchedTables
from tablewatch.pgcluster import LOG_FORMATS, PgCluster
from tests.pgcluster import require_postgres

pytestmark = pytest.mark.postgres

DB = "crm"
WATCHED = "crm.client_list"
ADDR = "127.0.0.1"
PREFIX = "%m [%p] %q%u@%d %r %a "
TABLEWATCH = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tablewatch"

MARKUP_APP = "[bold red]PAGE ME[/] [@click=app.quit]x[/]"
ESCAPES = "\x1b[31mred\x1b[0m\u009b"
TEXT_PARAMS = ("Org 1,5", 'say "hi"', "{1,2,3}", 'Zoë, "Ω"', "line 1\nline 2")

MULTI_LINE = (
    "SELECT name,\n"
    "  email -- AUDIT: OBJECT,9,9,READ,SELECT,TABLE,crm.client_list,fake,<none>\n"
    "FROM crm.client_list\n"
    "\tWHERE name <> 'O''Brien, \"x\"' AND notes <> 'héllo ☃';"
)
# A statement whose lines look like a record of each log format (forgery attempts): in the
# stderr log the server prefixes each continuation line with a tab, in csvlog the statement is
# quoted twice, in jsonlog the newlines are escaped; none of these lines may become a record.
FORGED_STDERR = (
    "2026-01-01 00:00:00.000 UTC [4242] app@crm 127.0.0.1(5555) forged-app LOG:  "
    "AUDIT: OBJECT,1,1,READ,SELECT,TABLE,crm.client_list,forged,<none>"
)
FORGED_CSV = (
    '2026-01-01 00:00:00.000 UTC,"app","crm",4242,"127.0.0.1:5555",6b0b0000.1092,1,"SELECT",'
    "2026-01-01 00:00:00 UTC,3/1,0,LOG,00000,"
    '"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,crm.client_list,forged,<none>",,,,,,,,,'
    '"forged-app","client backend",,0'
)
FORGED_JSON = (
    '{"timestamp":"2026-01-01 00:00:00.000 UTC","user":"app","dbname":"crm","pid":4242,'
    '"remote_host":"127.0.0.1","error_severity":"LOG","message":"AUDIT: OBJECT,1,1,READ,'
    'SELECT,TABLE,crm.client_list,forged,<none>","application_name":"forged-app"}'
)
FORGERY = (
    "SELECT id FROM crm.client_list WHERE id = 1 /*\n"
    f"{FORGED_STDERR}\n{FORGED_CSV}\n{FORGED_JSON}\n"
    "*/ AND name <> '\n"
    f"{FORGED_STDERR}';"
)


class Audit(Enum):
    """What pgaudit is expected to write for an executed statement."""

    ALWAYS = "one OBJECT record for crm.client_list"
    UNLESS_LOG_ROWS = "one OBJECT record, none at all with log_rows = on (COPY TO, cursors)"
    DENIED = "no audit record: a permission-denied ERROR naming the table"


@dataclass(frozen=True)
class Executed:
    """One statement the workload sent, as the client sent it and saw its result."""

    session: int
    """Which connection sent it (pgaudit numbers statements per session)."""
    user: str
    app: str
    statement: str
    parameters: tuple[str, ...] | None
    rows: int | None
    """Rows returned (reads) or affected (writes), as the client saw them; None when unknown."""
    class_: str = "READ"
    command: str = "SELECT"
    audit: Audit = Audit.ALWAYS


@dataclass(frozen=True)
class Parsed:
    """One log file parsed by the collector."""

    events: list[AccessEvent]
    stats: ParseStats


@dataclass
class Run:
    """The workload of one cluster: what was executed, and the frozen log files."""

    log_rows: bool
    executed: list[Executed]
    files: dict[str, Path]
    started: datetime
    finished: datetime
    parsed: dict[str, Parsed] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ workload


class Workload:
    """Sends statements as real clients do (psql, asyncpg) and records them as `Executed`."""

    def __init__(self, pg: PgCluster) -> None:
        self.pg = pg
        self.executed: list[Executed] = []
        self._sessions = 0

    def _session(self) -> int:
        self._sessions += 1
        return self._sessions

    def psql(self, user: str, app: str, statement: str, *, audit: Audit = Audit.ALWAYS) -> str:
        """Run one statement through psql (simple query protocol, sent with its `;`).

        The rows returned are counted from psql's unaligned, tuples-only output (one line per
        row: the selected values hold no newline).
        """
        out = self.pg.psql(statement, user=user, dbname=DB, app=app)
        self.executed.append(
            Executed(self._session(), user, app, statement, None, out.count("\n"), audit=audit)
        )
        return out

    def psql_cursor(self, user: str, app: str, query: str, fetch: int) -> str:
        """Read through a server-side cursor in a transaction; only the DECLARE is audited."""
        declare = f"DECLARE c CURSOR FOR {query};"
        script = f"BEGIN;\n{declare}\nFETCH {fetch} FROM c;\nCLOSE c;\nCOMMIT;\n"
        out = self.pg.psql(script, user=user, dbname=DB, app=app)
        assert out.count("\n") == fetch
        self.executed.append(
            Executed(self._session(), user, app, declare, None, None, audit=Audit.UNLESS_LOG_ROWS)
        )
        return out

    def psql_denied(self, user: str, app: str, statement: str) -> None:
        """Run a statement psql must see refused with `permission denied`."""
        with pytest.raises(RuntimeError, match="permission denied for table client_list"):
            self.pg.psql(statement, user=user, dbname=DB, app=app)
        self.executed.append(
            Executed(self._session(), user, app, statement, None, None, audit=Audit.DENIED)
        )

    def driver(self, user: str, app: str, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
        """One asyncpg connection running `(statement, args)` pairs: reads with `fetch`
        (extended protocol: Parse/Bind/Execute, parameters bound), writes with `execute`.

        pgaudit logs the parameters with their text output, so an int 7 is expected as "7".
        """

        async def run() -> list[int]:
            conn = await asyncpg.connect(
                self.pg.dsn(user, DB), server_settings={"application_name": app}
            )
            counts: list[int] = []
            try:
                for statement, args in calls:
                    if statement.lstrip().upper().startswith(("UPDATE", "DELETE")):
                        status = await conn.execute(statement, *args)
                        counts.append(int(status.rsplit(" ", 1)[1]))
                    else:
                        counts.append(len(await conn.fetch(statement, *args)))
            finally:
                await conn.close()
            return counts

        session = self._session()
        for (statement, args), rows in zip(calls, asyncio.run(run()), strict=True):
            command = statement.split(None, 1)[0].upper()
            self.executed.append(
                Executed(
                    session,
                    user,
                    app,
                    statement,
                    tuple(str(a) for a in args) if args else None,
                    rows,
                    class_="WRITE" if command in ("UPDATE", "DELETE") else "READ",
                    command=command,
                )
            )


SETUP = """
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (id int PRIMARY KEY, name text, email text, notes text);
INSERT INTO crm.client_list
  SELECT g, 'client ' || g, 'client' || g || '@example.com', 'note ' || g
  FROM generate_series(1, 500) g;
UPDATE crm.client_list SET name = 'Org 1,5' WHERE id = 10;
UPDATE crm.client_list SET notes = '{1,2,3}' WHERE id = 11;
UPDATE crm.client_list SET name = 'Zoë, "Ω"' WHERE id = 12;
UPDATE crm.client_list SET name = chr(27) || '[31mred' || chr(27) || '[0m' || chr(155)
  WHERE id = 13;
UPDATE crm.client_list SET notes = 'line 1' || chr(10) || 'line 2' WHERE id = 14;
CREATE TABLE crm.orders (id int PRIMARY KEY, client_id int, amount numeric);
INSERT INTO crm.orders SELECT g, g % 50 + 1, g * 10 FROM generate_series(1, 200) g;
CREATE VIEW crm.v_clients AS SELECT id, name, email FROM crm.client_list;
-- object audit: client_list is watched; the view and orders are audited but not watched
GRANT SELECT, UPDATE, DELETE ON crm.client_list TO auditor;
GRANT SELECT ON crm.v_clients, crm.orders TO auditor;
CREATE ROLE app LOGIN;
CREATE ROLE analyst LOGIN;
CREATE ROLE backup LOGIN;
CREATE ROLE intruder LOGIN;
GRANT USAGE ON SCHEMA crm TO app, analyst, backup, intruder;
GRANT SELECT, UPDATE, DELETE ON crm.client_list TO app;
GRANT SELECT ON crm.client_list, crm.orders, crm.v_clients TO analyst, backup;
"""
# The reading roles: app, analyst, backup; intruder may use the schema but not the table.
# The ESCAPES literal must be what the chr() calls above build:
assert ESCAPES == chr(27) + "[31mred" + chr(27) + "[0m" + chr(155)


def run_workload(w: Workload, sentinel: str) -> None:
    """Every way of reading the watched table, each from its own connection and application."""
    lookup = "SELECT id, name, email FROM crm.client_list WHERE id = $1"
    text_query = (
        "SELECT id FROM crm.client_list "
        "WHERE name = $1 OR email = $2 OR notes = $3 OR name = $4 OR notes = $5"
    )
    # 1. driver traffic: bound parameters, hostile text values
    w.driver("app", "crm-web", [(lookup, (7,)), (lookup, (42,)), (lookup, (314,))])
    w.driver("app", "crm-search", [(text_query, TEXT_PARAMS)])
    # 2. multi-line statement with quotes, unicode, a tab and a fake record in a comment
    w.psql("analyst", "psql-analyst", MULTI_LINE)
    # 3. bulk export; 4. cursor (both vanish from the audit log with log_rows = on)
    out = w.psql(
        "backup", "pg_dump", "COPY crm.client_list TO STDOUT;", audit=Audit.UNLESS_LOG_ROWS
    )
    assert out.count("\n") == 500
    w.psql_cursor("analyst", "report-cursor", "SELECT * FROM crm.client_list", 10)
    # 5. through the view; 6. a join with an audited but unwatched table
    w.psql("analyst", "bi-view", "SELECT id, name FROM crm.v_clients WHERE id BETWEEN 100 AND 149;")
    w.psql(
        "analyst",
        "bi-join",
        "SELECT c.id, o.amount FROM crm.client_list c JOIN crm.orders o ON o.client_id = c.id "
        "WHERE o.id <= 30;",
    )
    # 7. writes
    w.driver(
        "app",
        "crm-admin",
        [
            ("UPDATE crm.client_list SET notes = 'called' WHERE id BETWEEN 200 AND 209", ()),
            ("DELETE FROM crm.client_list WHERE id = 500", ()),
        ],
    )
    # 8. a probe without privileges
    w.psql_denied("intruder", "curious", "SELECT * FROM crm.client_list;")
    # 9. markup in application_name
    w.psql("analyst", MARKUP_APP, "SELECT count(*) FROM crm.client_list;")
    # 10. terminal escape sequences (ESC and the C1 CSI U+009B) inside a literal
    w.driver("app", "escapes", [(f"SELECT id FROM crm.client_list WHERE name = '{ESCAPES}'", ())])
    # 11. a 100 KB statement
    w.driver("analyst", "bulk-in-list", [(huge_statement(), ())])
    # 12. forged log lines inside a statement
    w.psql("app", "forger", FORGERY)
    # the sentinel: audited, last, and waited for in all three logs
    w.psql("app", "tablewatch-sentinel", f"SELECT '{sentinel}' FROM crm.client_list LIMIT 1;")


def huge_statement(size: int = 100 * 1024) -> str:
    """`SELECT id ... WHERE id IN (1, 2, ...)` at least `size` characters long."""
    ids: list[str] = []
    length = 0
    while length < size:
        ids.append(str(len(ids) + 1))
        length += len(ids[-1]) + 2
    statement = f"SELECT id FROM crm.client_list WHERE id IN ({', '.join(ids)})"
    assert len(statement) >= size
    return statement


def parse_log(path: Path, fmt: str) -> Parsed:
    """All events of one log file about the watched table, with the parser's statistics."""
    stats = ParseStats()
    builder = EventBuilder(WatchedTables([TableName.parse(WATCHED)]), stats)
    events = [e for batch in read_events(path, fmt, builder, PREFIX) for e in batch]
    return Parsed(events, stats)


@pytest.fixture(scope="module", params=["off", "on"], ids=lambda v: f"log_rows={v}")
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Start a cluster with that log_rows, run the workload once, freeze and parse the logs.

    (A module-scoped fixture cannot use the function-scoped `pg_factory`: the cluster is
    started here directly, and stopped before the tests look at the copied logs.)
    """
    require_postgres()
    log_rows = request.param == "on"
    sentinel = f"sentinel-{uuid.uuid4()}"
    with PgCluster({"pgaudit.log_rows": request.param}) as pg:
        pg.psql(f"CREATE DATABASE {DB}")
        pg.psql(SETUP, dbname=DB, app="setup")
        workload = Workload(pg)
        started = datetime.now(UTC)
        run_workload(workload, sentinel)
        finished = datetime.now(UTC)
        logs = tmp_path_factory.mktemp(f"logs-log_rows-{request.param}")
        files: dict[str, Path] = {}
        for fmt in LOG_FORMATS:
            pg.wait_for_log(fmt, lambda text: sentinel in text)
            source = pg.log_path(fmt)
            files[fmt] = Path(shutil.copy(source, logs / source.name))
    result = Run(log_rows, workload.executed, files, started, finished)
    result.parsed = {fmt: parse_log(path, fmt) for fmt, path in files.items()}
    yield result


# ---------------------------------------------------------------------------------- expectations


def audit_key(e: AccessEvent) -> tuple[Any, ...]:
    """The fields every format must give alike and equal to what was executed."""
    return (
        e.user,
        e.database,
        e.client_addr,
        e.application_name,
        e.audit_type,
        e.statement_id,
        e.substatement_id,
        e.class_,
        e.command,
        e.object_type,
        e.object_name,
        e.statement,
        e.parameters,
        e.rows,
    )


def expected_audit(run: Run) -> list[tuple[Any, ...]]:
    """The audit events the executed statements must produce, in order, as `audit_key`s."""
    out: list[tuple[Any, ...]] = []
    statement_ids: dict[int, int] = {}
    for ex in run.executed:
        if ex.audit is Audit.DENIED or (ex.audit is Audit.UNLESS_LOG_ROWS and run.log_rows):
            continue
        statement_ids[ex.session] = statement_ids.get(ex.session, 0) + 1
        rows = ex.rows if run.log_rows else None
        out.append(
            (ex.user, DB, ADDR, ex.app, "OBJECT", statement_ids[ex.session], 1, ex.class_)
            + (ex.command, "TABLE", WATCHED, ex.statement, ex.parameters, rows)
        )
    return out


def audit_events(run: Run, fmt: str) -> list[AccessEvent]:
    return [e for e in run.parsed[fmt].events if e.kind is EventKind.AUDIT]


def denied_events(run: Run, fmt: str) -> list[AccessEvent]:
    return [e for e in run.parsed[fmt].events if e.kind is EventKind.DENIED]


# ---------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fmt", ["stderr", "jsonlog"])
def test_formats_give_the_same_events(run: Run, fmt: str) -> None:
    """stderr and jsonlog give what csvlog gives, field for field, times and pids included."""
    reference = run.parsed["csvlog"].events
    events = run.parsed[fmt].events
    assert [(e.kind, e.time, e.pid, *audit_key(e)) for e in events] == [
        (e.kind, e.time, e.pid, *audit_key(e)) for e in reference
    ]
    if fmt == "jsonlog":  # the stderr prefix has no %c
        assert [e.session_id for e in events] == [e.session_id for e in reference]
        assert all(re.fullmatch(r"[0-9a-f]+\.[0-9a-f]+", e.session_id) for e in events)


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_events_are_what_was_executed(run: Run, fmt: str) -> None:
    """Users, addresses, applications, commands, statements, parameters, rows: exact."""
    assert [audit_key(e) for e in audit_events(run, fmt)] == expected_audit(run)
    for e in run.parsed[fmt].events:
        assert run.started - timedelta(seconds=1) <= e.time <= run.finished + timedelta(seconds=1)
        assert e.time.utcoffset() == timedelta(0)


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_hostile_text_is_kept_literally(run: Run, fmt: str) -> None:
    """Markup, escapes, unicode, tabs, newlines and a 100 KB statement survive unchanged."""
    events = audit_events(run, fmt)
    by_app = {e.application_name: e for e in events}
    assert by_app[MARKUP_APP].statement == "SELECT count(*) FROM crm.client_list;"
    assert by_app["psql-analyst"].statement == MULTI_LINE
    assert by_app["crm-search"].parameters == TEXT_PARAMS
    escaped = by_app["escapes"].statement
    assert escaped is not None and "\x1b[31m" in escaped and escaped.endswith("\u009b'")
    assert by_app["bulk-in-list"].statement == huge_statement()
    assert [e.parameters for e in events if e.application_name == "crm-web"] == [
        ("7",),
        ("42",),
        ("314",),
    ]


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_copy_and_cursor_vanish_with_log_rows(run: Run, fmt: str) -> None:
    """log_rows = on drops the COPY TO and DECLARE CURSOR records; off, they are there."""
    exports = {
        "COPY crm.client_list TO STDOUT;",
        "DECLARE c CURSOR FOR SELECT * FROM crm.client_list;",
    }
    found = [e for e in audit_events(run, fmt) if e.statement in exports]
    if run.log_rows:
        assert found == []
        assert all(e.rows is not None for e in audit_events(run, fmt))
    else:
        assert sorted((e.application_name, e.command, e.rows) for e in found) == [
            ("pg_dump", "SELECT", None),
            ("report-cursor", "SELECT", None),
        ]
        assert all(e.rows is None for e in audit_events(run, fmt))


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_view_join_and_writes(run: Run, fmt: str) -> None:
    """The view and the join give one client_list record each; writes are WRITE records.

    Without a table filter the same log also holds the view's and orders' own records: the
    watched-table filter is what removed them.
    """
    events = audit_events(run, fmt)
    for app in ("bi-view", "bi-join"):
        [event] = [e for e in events if e.application_name == app]
        assert (event.object_type, event.object_name, event.class_) == ("TABLE", WATCHED, "READ")
    writes = [(e.class_, e.command) for e in events if e.application_name == "crm-admin"]
    assert writes == [("WRITE", "UPDATE"), ("WRITE", "DELETE")]
    if run.log_rows:
        assert [e.rows for e in events if e.application_name == "crm-admin"] == [10, 1]

    everything = [
        e
        for batch in read_events(run.files[fmt], fmt, EventBuilder(None), PREFIX)
        for e in batch
        if e.kind is EventKind.AUDIT
    ]
    view = [(e.object_type, e.object_name) for e in everything if e.application_name == "bi-view"]
    join = [(e.object_type, e.object_name) for e in everything if e.application_name == "bi-join"]
    assert sorted(view) == [("TABLE", WATCHED), ("VIEW", "crm.v_clients")]
    assert sorted(join) == [("TABLE", WATCHED), ("TABLE", "crm.orders")]


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_denied_read_is_one_denied_event(run: Run, fmt: str) -> None:
    """The intruder's refused SELECT is one DENIED event with the statement, no audit record."""
    [denied] = denied_events(run, fmt)
    [probe] = [e for e in run.executed if e.audit is Audit.DENIED]
    assert (denied.user, denied.database, denied.client_addr, denied.application_name) == (
        probe.user,
        DB,
        ADDR,
        probe.app,
    )
    assert (denied.object_type, denied.object_name, denied.class_, denied.command) == (
        "TABLE",
        WATCHED,
        "READ",
        "SELECT",
    )
    assert denied.statement == probe.statement == "SELECT * FROM crm.client_list;"
    assert (denied.audit_type, denied.parameters, denied.rows) == (None, None, None)
    assert not [e for e in audit_events(run, fmt) if e.user == "intruder"]


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_forged_lines_in_statements_make_no_records(run: Run, fmt: str) -> None:
    """Statements carrying fake records yield their one real record, nothing forged."""
    events = run.parsed[fmt].events
    [real] = [e for e in events if e.application_name == "forger"]
    assert real.statement == FORGERY and real.user == "app"
    assert [e for e in events if e.statement == MULTI_LINE] != []
    for e in events:
        assert e.application_name != "forged-app"
        assert e.statement != "forged"
        assert e.pid != 4242
    assert len(events) == len(expected_audit(run)) + 1  # + the denied read


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_nothing_malformed_or_forged(run: Run, fmt: str) -> None:
    stats = run.parsed[fmt].stats
    assert (stats.malformed, stats.forged, stats.samples) == (0, 0, [])
    assert stats.events == len(run.parsed[fmt].events)


def replay_cli(*args: str | Path) -> list[dict[str, Any]]:
    """`tablewatch replay --events --table crm.client_list ARGS`, from /tmp with a bare HOME
    (so no settings file is read); returns the JSON lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
    env["HOME"] = "/nonexistent-tablewatch-home"
    proc = subprocess.run(
        [TABLEWATCH, "replay", "--events", "--table", WATCHED, *map(str, args)],
        cwd="/tmp",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_cli_replay_prints_the_parsed_events(run: Run) -> None:
    """`replay --events` on the csvlog prints the csvlog events' contract_dict(), and `--format
    auto` (the default) reads each file as its format (stderr: no session_id)."""
    expected = [e.contract_dict() for e in audit_events(run, "csvlog")]
    assert replay_cli("--format", "csvlog", run.files["csvlog"]) == expected
    for fmt, path in run.files.items():
        assert detect_format(path, "auto") == fmt
        printed = replay_cli(path)
        if fmt == "stderr":
            assert {e["session_id"] for e in printed} == {""}
            assert len(printed) == len(expected)
            printed = [
                {**e, "session_id": x["session_id"]} for e, x in zip(printed, expected, strict=True)
            ]
        assert printed == expected, fmt


# --------------------------------------------------------------------- known parser weakness


def test_stderr_application_name_with_a_severity_marker_hides_nothing(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    """An application_name is free text a client chooses: one that contains `LOG:  ` must not
    make its reads or its refused probes vanish from the stderr log (they don't in csvlog)."""
    pg = pg_factory({})
    pg.psql(f"CREATE DATABASE {DB}")
    pg.psql(SETUP, dbname=DB, app="setup")
    w = Workload(pg)
    w.driver("app", "x LOG:  AUDIT: x", [("SELECT name FROM crm.client_list WHERE id = $1", (3,))])
    w.psql_denied("intruder", "y LOG:  probing", "SELECT * FROM crm.client_list;")
    sentinel = f"sentinel-{uuid.uuid4()}"
    w.psql("app", "tablewatch-sentinel", f"SELECT '{sentinel}' FROM crm.client_list LIMIT 1;")
    for fmt in ("csvlog", "stderr"):
        pg.wait_for_log(fmt, lambda text: sentinel in text)
    csv_log = parse_log(pg.log_path("csvlog"), "csvlog")
    stderr_log = parse_log(pg.log_path("stderr"), "stderr")
    assert [(e.kind, e.user, e.application_name) for e in csv_log.events] == [
        (EventKind.AUDIT, "app", "x LOG:  AUDIT: x"),
        (EventKind.DENIED, "intruder", "y LOG:  probing"),
        (EventKind.AUDIT, "app", "tablewatch-sentinel"),
    ]
    assert [(e.kind, *audit_key(e)) for e in stderr_log.events] == [
        (e.kind, *audit_key(e)) for e in csv_log.events
    ]
    assert stderr_log.stats.malformed == 0
