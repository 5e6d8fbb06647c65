#!/usr/bin/env python3
"""Live-source bench: SELECT to reader in the agent's snapshot, and the cost of each pg_stat_* poll.

    .venv/bin/python bench/pgstat_bench.py [--quick] [--part a|b|both] [--selects N] [--polls N]

One private PostgreSQL 15 cluster (tablewatch.pgcluster.PgCluster, run as the postgres OS user)
with `shared_preload_libraries = 'pgaudit,pg_stat_statements'`, `pg_stat_statements.max = 20000`
and `track_planning = on`; object audit of crm.client_list (50,000 rows) through the role
`auditor`, csvlog.

Part A, end to end: `tablewatch run` as a subprocess (csvlog, `start = "end"`, the audit log's
default poll interval unless `--poll-interval`, the API on a free local port, /metrics off, no
[database] section). Then `--selects` times (300; `--quick` 30), after a random pause of 0-250 ms
(so that the SELECTs land all over the tail's poll cycle): a fresh principal (application_name
`twbench-NNNN`, over asyncpg, TCP) runs a key lookup on crm.client_list; the time is taken just
before it is sent. The bench then polls GET /api/v1/snapshot every 10 ms until that reader is
there, and watches the csvlog itself every 2 ms, so the latency comes in stages: the server's
stamp of the audit record (the reader's `last_seen`), the record in the file, the first snapshot
that has it (its `taken_at`), the bench's GET that sees it.

Part B, the polls: 10,000 distinct statements put into pg_stat_statements by four roles (a fifth
of them on crm.client_list, the rest on 50 other tables; different column lists and predicates,
so distinct queryids), 12 idle application connections whose last query read the watched table,
and a monitoring role with only pg_monitor. For each poll source that imports
(collectors.pgstat.TableStatsSource, collectors.pgstatements.StatementsSource,
collectors.activity.ActivitySource, collectors.setupwatch.AuditSetupSource; the others are
reported as not built yet), over its own collectors.pgstat.DatabaseLink: the first poll apart
(StatementsSource fetches every text then), then `--polls` polls (100; `--quick` 20), with 100
of the 10,000 statements run again before each one (not timed) so that counters move. Figures:
wall time and this process's CPU per poll; on the server, the monitoring backend's CPU (from
/proc/PID/schedstat of `pg_backend_pid()`) and the monitoring role's own entries in
pg_stat_statements (plan + exec time, per query).

Report: stdout and `bench/results/pgstat-DATE.md`; raw samples in `bench/out/pgstat-bench.json`.
Targets (project issue): p99 latency under 1 s (part A); under 50 ms a poll (part B).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import hashlib
import importlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence, Sized
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import asyncpg  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from replay_bench import cpu_model  # noqa: E402

from collectors.pgstat import DatabaseLink  # noqa: E402
from core.tables import TableName  # noqa: E402
from tablewatch.pgcluster import PgCluster, available, free_port  # noqa: E402

OUT = HERE / "out"
RESULTS = HERE / "results"
WATCHED, ROWS = "crm.client_list", 50_000
READER = "tw_reader"
MONITOR = "tw_monitor"
AUDIT_ROLE = "auditor"
APP_ROLES = ("app_crm", "app_billing", "app_reports", "app_etl")
OTHER_TABLES = 50
STATEMENTS = 10_000
WATCHED_SHARE = 0.2
RERUN_PER_POLL = 100
IDLE_CONNECTIONS = 12
LATENCY_TARGET_S = 1.0
POLL_TARGET_MS = 50.0
SNAPSHOT_POLL_S = 0.010
FILE_POLL_S = 0.002
GAP_S = 0.25
SEE_TIMEOUT_S = 10.0
TAKEN_AT = re.compile(rb'"taken_at":"([^"]+)"')
TICKS = os.sysconf("SC_CLK_TCK")
LOOKUP = "SELECT id, name, email FROM crm.client_list WHERE id = $1"
CLUSTER_SETTINGS = {
    "shared_preload_libraries": "pgaudit,pg_stat_statements",
    "pg_stat_statements.max": "20000",
    "pg_stat_statements.track_planning": "on",
    "max_connections": "60",
}
SOURCES = (
    ("TableStatsSource", "collectors.pgstat"),
    ("StatementsSource", "collectors.pgstatements"),
    ("ActivitySource", "collectors.activity"),
    ("AuditSetupSource", "collectors.setupwatch"),
)
CLIENT_COLUMNS = ("name", "email", "phone", "region", "country", "created_at", "notes")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process: /proc/PID/schedstat (ns, exact) when there, else utime + stime
    from /proc/PID/stat (clock ticks). NaN when the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def cell(text: str, width: int = 90) -> str:
    """A query text as a Markdown table cell: one line, pipes escaped, cut."""
    one = " ".join(text.split())
    one = one if len(one) <= width else one[: width - 1] + "…"
    return "`" + one.replace("|", "\\|").replace("`", "'") + "`"


def default_poll_interval() -> str:
    """The audit log's default poll interval, as core.settings has it."""
    try:
        from core.settings import AuditLogSettings

        value = AuditLogSettings.model_fields["poll_interval"].default
        return f"{value.total_seconds() * 1000:.0f} ms"
    except Exception:  # noqa: BLE001 - someone else's file, maybe mid-edit
        return "250 ms (DESIGN.md)"


def snapshot_reuse() -> float | None:
    """How long the API re-uses an encoded snapshot (tablewatch.api.SNAPSHOT_REUSE_SECONDS)."""
    try:
        value = importlib.import_module("tablewatch.api").SNAPSHOT_REUSE_SECONDS
        return float(value)
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


def setup_sql() -> str:
    """The watched table, the audit grant, the reader and the monitoring role."""
    return f"""
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (id int PRIMARY KEY, name text, email text, phone text,
    region text, country text, created_at timestamptz, notes text);
INSERT INTO crm.client_list
SELECT g, 'Client ' || g, 'c' || g || '@example.com', '+43 1 ' || g,
       (ARRAY['emea', 'apac', 'amer', 'latam'])[1 + g % 4], 'AT',
       now() - g * interval '1 minute', NULL
  FROM generate_series(1, {ROWS}) g;
ANALYZE crm.client_list;
GRANT SELECT ON crm.client_list TO {AUDIT_ROLE};
CREATE ROLE {READER} LOGIN;
GRANT USAGE ON SCHEMA crm TO {READER};
GRANT SELECT ON crm.client_list TO {READER};
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
"""


def load_sql() -> str:
    """Part B's other tables and the roles that read them."""
    cols = ", ".join(f"c{j} int" for j in range(10))
    fill = ", ".join(f"g % {j + 2}" for j in range(10))
    parts = [
        f"CREATE TABLE crm.t{k:02d} ({cols});\n"
        f"INSERT INTO crm.t{k:02d} SELECT {fill} FROM generate_series(1, 200) g;\n"
        for k in range(OTHER_TABLES)
    ]
    for role in APP_ROLES:
        parts.append(
            f"CREATE ROLE {role} LOGIN;\nGRANT USAGE ON SCHEMA crm TO {role};\n"
            f"GRANT SELECT ON ALL TABLES IN SCHEMA crm TO {role};\n"
        )
    return "".join(parts) + "ANALYZE;\n"


def make_statements(n: int, seed: int) -> list[str]:
    """`n` statements that normalise to distinct queryids (constants become $n, so they differ
    in their column lists, tables and predicates): a WATCHED_SHARE on crm.client_list."""
    rng = random.Random(seed)
    ops = ("=", "<", ">", "<=", ">=")
    wheres = [f"{c} {op} {v}" for c, v in (("id", "1"), ("region", "'emea'"),
              ("country", "'AT'")) for op in ops]  # fmt: skip
    watched = [
        f"SELECT {', '.join(cols)} FROM crm.client_list WHERE {w} LIMIT 5"
        for mask in range(1, 2 ** len(CLIENT_COLUMNS))
        for cols in [[c for j, c in enumerate(CLIENT_COLUMNS) if mask >> j & 1]]
        for w in [*wheres, "true"]
    ]
    others = [
        f"SELECT c{a}, c{b} FROM crm.t{k:02d} WHERE c{w} = 1"
        for k in range(OTHER_TABLES)
        for a in range(10)
        for b in range(a + 1, 10)
        for w in range(10)
    ]
    on_watched = int(n * WATCHED_SHARE)
    chosen = rng.sample(watched, on_watched) + rng.sample(others, n - on_watched)
    rng.shuffle(chosen)
    return chosen


# --------------------------------------------------------------------------------------------
# Part A: SELECT -> reader in the agent's snapshot
# --------------------------------------------------------------------------------------------


class Agent:
    """`tablewatch run` on `config`, its JSON log in `log`."""

    def __init__(self, config: Path, log: Path) -> None:
        self.command = [sys.executable, "-m", "tablewatch.cli", "--config", str(config),
                        "run", "--log-format", "json"]  # fmt: skip
        self.log = log
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env={**clean, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        atexit.register(self.kill)

    def last_words(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 20 s; the exit status."""
        atexit.unregister(self.kill)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Seen:
    """One SELECT's stages, wall-clock seconds (same host clock for the server and us)."""

    app: str
    sent: float
    returned: float
    stamp: float
    """The audit record's log time (the reader's last_seen; PostgreSQL stamps milliseconds)."""
    in_file: float
    """When the bench saw the record in the csvlog (NaN: not before the reader)."""
    previous: float
    """taken_at of the last snapshot the bench got without the reader (NaN: none since sent)."""
    taken_at: float
    """taken_at of the first snapshot that had the reader."""
    seen: float


@dataclass
class PartA:
    poll_interval: str
    selects: int
    seen: list[Seen] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    agent_cpu_s: float = float("nan")
    span_s: float = float("nan")
    status: int | None = None
    load_before: str = ""
    load_after: str = ""
    troubles: list[str] = field(default_factory=list)


async def watch_file(path: Path, needle: bytes) -> float:
    """The time `needle` first shows in `path` after its end when the watch began."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        window = b""
        while True:
            chunk = f.read()
            if chunk:
                window = window[-len(needle) :] + chunk
                if needle in window:
                    return time.time()
            await asyncio.sleep(FILE_POLL_S)


async def get_snapshot(http: aiohttp.ClientSession, base: str) -> bytes:
    async with http.get(f"{base}/api/v1/snapshot") as answer:
        answer.raise_for_status()
        return await answer.read()


def find_reader(body: bytes, app: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the snapshot, the reader) when the snapshot has `app`'s reader of the watched table."""
    if f'"{app}"'.encode() not in body:
        return None
    snap: dict[str, Any] = json.loads(body)
    for reader in snap["readers"]:
        if reader["application_name"] == app and reader["table"] == WATCHED:
            return snap, reader
    return None


async def one_select(
    http: aiohttp.ClientSession, base: str, dsn: str, csvlog: Path, app: str, key: int
) -> Seen | None:
    """A fresh principal's key lookup, then poll the snapshot until its reader is there."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": app})
    watcher: asyncio.Task[float] | None = None
    try:
        watcher = asyncio.create_task(watch_file(csvlog, f'"{app}"'.encode()))
        await asyncio.sleep(0)  # the watcher has its file open and its offset before we send
        sent = time.time()
        await conn.fetch(LOOKUP, key)
        returned = time.time()
        previous = float("nan")
        while True:
            body = await get_snapshot(http, base)
            now = time.time()
            hit = find_reader(body, app)
            if hit is not None:
                snap, reader = hit
                in_file = watcher.result() if watcher.done() else float("nan")
                return Seen(app, sent, returned, iso_seconds(reader["last_seen"]), in_file,
                            previous, iso_seconds(snap["taken_at"]), now)  # fmt: skip
            taken = TAKEN_AT.search(body, 0, 400)
            if taken is not None:
                previous = iso_seconds(taken.group(1).decode())
            if now - sent > SEE_TIMEOUT_S:
                return None
            await asyncio.sleep(SNAPSHOT_POLL_S)
    finally:
        if watcher is not None:
            watcher.cancel()
        await conn.close()


async def part_a(pg: PgCluster, args: argparse.Namespace, folder: Path) -> PartA:
    csvlog = pg.log_path("csvlog")
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    config = folder / "settings.toml"
    config.write_text(
        f'[[tables]]\nname = "{WATCHED}"\nrows = {ROWS}\n'
        f'[audit_log]\npath = "{csvlog}"\nformat = "csvlog"\nstart = "end"\n'
        + (f'poll_interval = "{args.poll_interval}"\n' if args.poll_interval else "")
        + f'[metrics]\nlisten = ""\n[api]\nlisten = "127.0.0.1:{api_port}"\n'
        f'[state]\ndir = "{folder}/state"\n'
    )
    shown = args.poll_interval or f"{default_poll_interval()} (the default)"
    result = PartA(shown, args.selects, load_before=load())
    rng = random.Random(args.seed)
    dsn = pg.dsn(READER)
    agent = Agent(config, folder / "agent.log")
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:  # the API answers and the tail has the file open
                if agent.proc.poll() is not None:
                    raise RuntimeError(f"the agent exited:\n{agent.last_words()}")
                try:
                    snap = json.loads(await get_snapshot(http, base))
                    if any(s["name"] == "audit_log" and s["state"] == "ok"
                           for s in snap["sources"]):  # fmt: skip
                        break
                except (aiohttp.ClientError, OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the agent's API did not come up:\n{agent.last_words()}")
                await asyncio.sleep(0.1)
            for n in range(5):  # warm-up: until one SELECT comes through
                if await one_select(http, base, dsn, csvlog, f"twbench-warm{n}", n + 1):
                    break
            else:
                raise RuntimeError(f"no SELECT reached the snapshot:\n{agent.last_words()}")
            cpu0, t0 = cpu_seconds(agent.proc.pid), time.time()
            for i in range(args.selects):
                await asyncio.sleep(rng.uniform(0, GAP_S))
                app = f"twbench-{i:04d}"
                got = await one_select(http, base, dsn, csvlog, app, rng.randint(1, ROWS))
                if got is None:
                    result.missed.append(app)
                else:
                    result.seen.append(got)
                if (i + 1) % 50 == 0:
                    print(f"part A: {i + 1}/{args.selects} SELECTs", file=sys.stderr)
            result.agent_cpu_s = cpu_seconds(agent.proc.pid) - cpu0
            result.span_s = time.time() - t0
    finally:
        result.status = agent.stop()
        result.load_after = load()
    for line in agent.log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            result.troubles.append(line[:300])
            continue
        if record.get("level") in ("warning", "error", "critical"):
            result.troubles.append(line[:300])
    return result


def report_a(a: PartA) -> list[str]:
    s = a.seen
    reuse = snapshot_reuse()

    def row(what: str, values: list[float]) -> str:
        v = [1000 * x for x in values if x == x]
        if not v:
            return f"| {what} | - | - | - | - |"
        return (f"| {what} | {pct(v, 50):,.0f} | {pct(v, 95):,.0f} | {pct(v, 99):,.0f} | "
                f"{max(v):,.0f} |")  # fmt: skip

    latency = [x.seen - x.sent for x in s]
    p99 = pct(latency, 99)
    ok = bool(s) and not a.missed and p99 < LATENCY_TARGET_S
    lines = [
        "## Part A: SELECT on the server to the reader in the agent's snapshot",
        "",
        f"Agent: `tablewatch run` (csvlog tailed from the end, audit log poll interval "
        f"**{a.poll_interval}**, the API on 127.0.0.1, /metrics off, no [database] section). "
        f"{a.selects} SELECTs by fresh principals ({READER}, 127.0.0.1, a new application_name "
        f"each; a key lookup over asyncpg's extended protocol), a random 0-{GAP_S * 1000:.0f} ms "
        f"apart; GET /api/v1/snapshot every {SNAPSHOT_POLL_S * 1000:.0f} ms until the reader is "
        f"there, the csvlog watched every {FILE_POLL_S * 1000:.0f} ms. Load average (1/5/15 min) "
        f"{a.load_before} before, {a.load_after} after.",
        "",
        "| from the SELECT sent to ..., ms | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|",
        row("its result back at the client", [x.returned - x.sent for x in s]),
        row("the audit record's log time (server clock, ms resolution)",
            [x.stamp - x.sent for x in s]),
        row("the record in the csvlog file (seen by the bench)", [x.in_file - x.sent for x in s]),
        row("the taken_at of the first snapshot with the reader", [x.taken_at - x.sent for x in s]),
        row("**the reader in GET /api/v1/snapshot** (the latency)", latency),
        "",
        "| stage, ms | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|",
        row("record in the file -> first snapshot with the reader (the tail's wait for its next "
            "read, parsing, the engine, the wait for the API's next snapshot build)",
            [x.taken_at - x.in_file for x in s]),
        row("record in the file -> last snapshot without it (the agent took it in after this; "
            "0 when that snapshot was older than the record)",
            [max(0.0, x.previous - x.in_file) for x in s]),
        row("last snapshot without the reader -> first with it (the API builds one at most every "
            + (f"{reuse * 1000:.0f} ms" if reuse is not None else "SNAPSHOT_REUSE_SECONDS") + ")",
            [x.taken_at - x.previous for x in s]),
        row("first snapshot with it -> the bench's GET that saw it",
            [x.seen - x.taken_at for x in s]),
        "",
        f"- seen: {len(s)} of {a.selects}"
        + (f"; not seen within {SEE_TIMEOUT_S:.0f} s: {', '.join(a.missed[:10])}"
           if a.missed else "")
        + f"; agent CPU over the run {100 * a.agent_cpu_s / a.span_s:.1f}% of one core; "
        f"agent exit status {a.status}",
        f"- p99 under {LATENCY_TARGET_S:.0f} s ({p99 * 1000:,.0f} ms): "
        + ("MET" if ok else "MISSED"),
        "",
        "What bounds it: the tail sleeps a whole poll interval whenever it reaches the end of the "
        f"file ({a.poll_interval}), so a record waits 0 to one interval before it is read; the "
        "API then re-uses an encoded snapshot for "
        + (f"{reuse * 1000:.0f} ms" if reuse is not None else "a while")
        + " (SNAPSHOT_REUSE_SECONDS), so a poller sees a new reader up to that much later; the "
        "bench's own polling adds up to 10 ms. The server's part (execution, pgaudit, the "
        "logging collector writing the csvlog) is the first two rows.",
    ]  # fmt: skip
    if a.troubles:
        lines += ["", f"The agent's warnings and errors ({len(a.troubles)}), the first few:", ""]
        lines += [f"- `{t}`" for t in a.troubles[:5]]
    return lines


# --------------------------------------------------------------------------------------------
# Part B: the poll sources
# --------------------------------------------------------------------------------------------


@dataclass
class QueryCost:
    query: str
    calls: int
    plan_ms: float
    exec_ms: float
    max_exec_ms: float
    rows: int


@dataclass
class SourceRun:
    name: str
    module: str
    status: str
    """"measured", "not built yet", or why it could not be measured."""
    items_first: str = ""
    items: list[str] = field(default_factory=list)
    first_wall_ms: float = float("nan")
    first_cpu_ms: float = float("nan")
    first_server_cpu_ms: float = float("nan")
    first_pgss_ms: float = float("nan")
    first_calls: int = 0
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    server_cpu_ms: float = float("nan")
    """The monitoring backend's CPU over the later polls, per poll."""
    pgss_ms: float = float("nan")
    """pg_stat_statements plan + exec time of the later polls, per poll."""
    calls: float = float("nan")
    queries: list[QueryCost] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    code: str = ""
    """Which version of the module was measured (they are being written)."""


@dataclass
class PartB:
    statements: int = 0
    entries: int = 0
    watched_entries: int = 0
    dealloc: int = 0
    polls: int = 0
    generate_s: float = float("nan")
    load_before: str = ""
    load_after: str = ""
    runs: list[SourceRun] = field(default_factory=list)


MONITOR_QUERIES = """
SELECT queryid, query, calls, total_plan_time, total_exec_time, max_exec_time, rows
  FROM pg_stat_statements WHERE userid = $1::oid
"""


async def monitor_costs(admin: Any, oid: int) -> dict[int, QueryCost]:
    """The monitoring role's entries in pg_stat_statements, by queryid (read as the superuser,
    whose own statements are left out by the userid)."""
    rows = await admin.fetch(MONITOR_QUERIES, oid)
    return {r["queryid"]: QueryCost(r["query"], r["calls"], r["total_plan_time"],
                                    r["total_exec_time"], r["max_exec_time"], r["rows"])
            for r in rows}  # fmt: skip


def since(before: dict[int, QueryCost], after: dict[int, QueryCost]) -> list[QueryCost]:
    """What each entry grew by between two reads (max_exec_time: as of the second), costliest
    first. Differences, not pg_stat_statements_reset(): a reset is what the sources watch for."""
    out = []
    for queryid, a in after.items():
        b = before.get(queryid)
        if b is None:
            out.append(a)
        elif a.calls > b.calls:
            grew = QueryCost(a.query, a.calls - b.calls, a.plan_ms - b.plan_ms,
                             a.exec_ms - b.exec_ms, a.max_exec_ms, a.rows - b.rows)  # fmt: skip
            out.append(grew)
    return sorted(out, key=lambda c: -(c.plan_ms + c.exec_ms))


def totals(costs: list[QueryCost]) -> tuple[int, float]:
    return sum(c.calls for c in costs), sum(c.plan_ms + c.exec_ms for c in costs)


def fingerprint(module: Any) -> str:
    """The module's file, the start of its SHA-256 and when it was last changed."""
    path = Path(module.__file__)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    changed = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return f"{path.relative_to(ROOT)} sha256 {digest}…, changed {changed:%Y-%m-%d %H:%M} UTC"


def describe(found: object) -> str:
    """What a poll handed out: a count, or the sizes of a result's non-empty parts."""
    if isinstance(found, Sized):
        return str(len(found))
    if dataclasses.is_dataclass(found):
        parts = [(f.name, getattr(found, f.name)) for f in dataclasses.fields(found)]
        sized = [f"{name} {len(v)}" for name, v in parts if isinstance(v, tuple | list) and v]
        return ", ".join(sized) or "nothing"
    return type(found).__name__


async def measure(
    pg: PgCluster,
    admin: Any,
    oid: int,
    name: str,
    module_name: str,
    polls: int,
    workload: Callable[[], Awaitable[None]],
) -> SourceRun:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return SourceRun(name, module_name, "not built yet")
        return SourceRun(name, module_name, f"does not import: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - someone else's file, maybe mid-edit
        return SourceRun(name, module_name, f"does not import: {type(exc).__name__}: {exc}")
    cls = getattr(module, name, None)
    if cls is None:
        return SourceRun(name, module_name, f"not built yet (no {name} in {module_name})")
    tables = [TableName.parse(WATCHED, ROWS)]
    link = DatabaseLink(pg.dsn(MONITOR), application_name=f"twbench-{name}")
    try:
        try:
            if name == "AuditSetupSource":
                source = cls(link, tables, AUDIT_ROLE, 10.0)
            else:
                source = cls(link, tables, 10.0)
        except Exception as exc:  # noqa: BLE001
            return SourceRun(name, module_name, f"constructor: {type(exc).__name__}: {exc}")
        run = SourceRun(name, module_name, "measured", code=fingerprint(module))
        pid = (await link.fetch("SELECT pg_backend_pid() AS pid"))[0]["pid"]
        costs0 = await monitor_costs(admin, oid)

        async def timed() -> tuple[object, float, float] | None:
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                found = await source.poll()
            except Exception as exc:  # noqa: BLE001 - a failed poll is a figure too
                run.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return None
            return found, 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)

        s0 = cpu_seconds(pid)
        first = await timed()
        s1 = cpu_seconds(pid)
        costs1 = await monitor_costs(admin, oid)
        first_costs = since(costs0, costs1)
        if first is not None:
            run.items_first = describe(first[0])
            run.first_wall_ms, run.first_cpu_ms = first[1], first[2]
        run.first_server_cpu_ms = 1000 * (s1 - s0)
        run.first_calls, run.first_pgss_ms = totals(first_costs)
        server = 0.0
        for _ in range(polls):
            await workload()
            s0 = cpu_seconds(pid)
            got = await timed()
            server += cpu_seconds(pid) - s0
            if got is not None:
                found, wall, cpu = got
                run.wall_ms.append(wall)
                run.cpu_ms.append(cpu)
                run.items.append(describe(found))
        costs2 = await monitor_costs(admin, oid)
        later = since(costs1, costs2)
        calls, spent = totals(later)
        run.server_cpu_ms = 1000 * server / max(polls, 1)
        run.calls = calls / max(polls, 1)
        run.pgss_ms = spent / max(polls, 1)
        run.queries = since(costs0, costs2)
        return run
    finally:
        await link.close()


async def part_b(pg: PgCluster, args: argparse.Namespace) -> PartB:
    result = PartB(polls=args.polls, load_before=load())
    pg.psql(load_sql())
    statements = make_statements(STATEMENTS, args.seed)
    result.statements = len(statements)
    rng = random.Random(args.seed + 1)
    conns: list[Any] = []
    admin: Any = None
    try:
        admin = await asyncpg.connect(pg.dsn(), server_settings={"application_name": "twbench"})
        for role in APP_ROLES:
            app = {"application_name": "etl-gen"}
            conns.append(await asyncpg.connect(pg.dsn(role), server_settings=app))
        t0 = time.perf_counter()
        await asyncio.gather(*(c.execute(";\n".join(statements[i :: len(APP_ROLES)]))
                               for i, c in enumerate(conns)))  # fmt: skip
        result.generate_s = time.perf_counter() - t0
        for j in range(IDLE_CONNECTIONS):  # idle app connections whose last query read the table
            app = {"application_name": f"crm-web-{j}"}
            c = await asyncpg.connect(pg.dsn(APP_ROLES[j % len(APP_ROLES)]), server_settings=app)
            await c.fetch(LOOKUP.replace("email", "phone"), j + 1)
            conns.append(c)
        counts = await admin.fetchrow(
            "SELECT count(*) AS entries, count(*) FILTER (WHERE query LIKE '%crm.client_list%')"
            " AS watched, (SELECT dealloc FROM pg_stat_statements_info) AS dealloc"
            " FROM pg_stat_statements"
        )
        result.entries, result.watched_entries = counts["entries"], counts["watched"]
        result.dealloc = counts["dealloc"]
        oid = await admin.fetchval("SELECT oid FROM pg_roles WHERE rolname = $1", MONITOR)

        async def workload() -> None:  # a role runs its own statements again: no new entries
            r = rng.randrange(len(APP_ROLES))
            mine = statements[r :: len(APP_ROLES)]
            await conns[r].execute(";\n".join(rng.sample(mine, RERUN_PER_POLL)))

        for name, module_name in SOURCES:
            run = await measure(pg, admin, oid, name, module_name, args.polls, workload)
            print(f"part B: {name}: {run.status}", file=sys.stderr)
            result.runs.append(run)
    finally:
        for c in [*conns, admin]:
            if c is not None:
                c.terminate()
        result.load_after = load()
    return result


def report_b(b: PartB) -> list[str]:
    measured = [r for r in b.runs if r.status == "measured"]
    lines = [
        "## Part B: each database poll, with 10,000 distinct statements in pg_stat_statements",
        "",
        f"{b.statements:,} distinct statements run by {len(APP_ROLES)} roles in "
        f"{b.generate_s:.1f} s ({int(WATCHED_SHARE * 100)}% on {WATCHED}): pg_stat_statements "
        f"held **{b.entries:,} entries** ({b.watched_entries:,} naming {WATCHED}; "
        f"pg_stat_statements.max 20000, {b.dealloc} deallocations). {IDLE_CONNECTIONS} idle "
        f"application connections. Monitoring role `{MONITOR}`: LOGIN + pg_monitor only, one "
        f"DatabaseLink (a fresh backend) per source. Before each of the {b.polls} polls "
        f"(not timed) {RERUN_PER_POLL} of the statements ran again. Load average (1/5/15 min) "
        f"{b.load_before} before, {b.load_after} after.",
        "",
        "Client side (this process), ms:",
        "",
        "| source | first poll: wall / CPU | polls p50 | p95 | p99 | max | CPU per poll, mean / "
        "p95 | handed out: first poll / last poll |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in b.runs:
        if r.status != "measured":
            lines.append(f"| {r.name} | {r.status} | | | | | | |")
            continue
        w = r.wall_ms
        if not w:
            failed = f"every later poll failed ({len(r.errors)})"
            lines.append(f"| {r.name} | {r.first_wall_ms:.1f} / {r.first_cpu_ms:.1f} | {failed} "
                         f"| | | | | {r.items_first} / - |")  # fmt: skip
            continue
        lines.append(
            f"| {r.name} | {r.first_wall_ms:.1f} / {r.first_cpu_ms:.1f} | {pct(w, 50):.1f} | "
            f"{pct(w, 95):.1f} | {pct(w, 99):.1f} | {max(w, default=float('nan')):.1f} | "
            f"{sum(r.cpu_ms) / max(len(r.cpu_ms), 1):.2f} / {pct(r.cpu_ms, 95):.2f} | "
            f"{r.items_first} / {r.items[-1] if r.items else '-'} |"
        )
    lines += [
        "",
        "Database side, ms: the monitoring backend's CPU (/proc/PID/schedstat of "
        "`pg_backend_pid()`), and the monitoring role's own entries in pg_stat_statements "
        "(plan + exec time; track_planning on), next to the wall time seen by the client:",
        "",
        "| source | first poll: wall / backend CPU / pg_stat_statements | later polls, mean: "
        "wall / backend CPU / pg_stat_statements | statements per poll |",
        "|---|---:|---:|---:|",
    ]
    for r in measured:
        mean_wall = sum(r.wall_ms) / len(r.wall_ms) if r.wall_ms else float("nan")
        lines.append(
            f"| {r.name} | {r.first_wall_ms:.1f} / {r.first_server_cpu_ms:.1f} / "
            f"{r.first_pgss_ms:.1f} | {mean_wall:.1f} / {r.server_cpu_ms:.1f} / {r.pgss_ms:.1f} |"
            f" {r.calls:.1f} |"
        )
    lines += [
        "",
        "The monitoring role's statements, per source (first poll and later ones together):",
        "",
        "| source | query | calls | mean plan + exec, ms | max exec (entry's life), ms | "
        "rows per call |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in measured:
        for q in r.queries[:6]:
            lines.append(
                f"| {r.name} | {cell(q.query)} | {q.calls} | "
                f"{(q.plan_ms + q.exec_ms) / max(q.calls, 1):.2f} | {q.max_exec_ms:.2f} | "
                f"{q.rows / max(q.calls, 1):,.0f} |"
            )
    lines.append("")
    lines += ["The code measured (being written: the figures hold for these versions):", ""]
    lines += [f"- {r.name}: {r.code}" for r in measured] + [""]
    for r in b.runs:
        if r.status != "measured":
            lines.append(f"- {r.name} ({r.module}): {r.status}")
            continue
        p99 = pct(r.wall_ms, 99)
        verdict = "MET" if p99 < POLL_TARGET_MS and not r.errors else "MISSED"
        lines.append(
            f"- {r.name}: p99 under {POLL_TARGET_MS:.0f} ms ({p99:.1f} ms; first poll "
            f"{r.first_wall_ms:.1f} ms): {verdict}"
            + (f"; {len(r.errors)} polls failed, e.g. `{r.errors[0]}`" if r.errors else "")
        )
    return lines


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _terminated(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


async def run(args: argparse.Namespace, pg: PgCluster, folder: Path) -> tuple[list[str], Any]:
    a = b = None
    if args.part in ("a", "both"):
        a = await part_a(pg, args, folder)
    if args.part in ("b", "both"):
        b = await part_b(pg, args)
    lines = [
        f"# Live sources bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} CPU ({cpu_model()}), Python {platform.python_version()}, "
        f"{pg_version(pg)}; load average (1/5/15 min) {args.load} at the start (the VM is "
        "shared with other engineers' test runs).",
        "Command: `"
        + " ".join([".venv/bin/python", "bench/pgstat_bench.py", *map(shlex.quote, sys.argv[1:])])
        + "`",
        "Cluster: tablewatch.pgcluster.PgCluster (fsync off), shared_preload_libraries = "
        "'pgaudit,pg_stat_statements', pg_stat_statements.max = 20000, track_planning = on; "
        f"object audit of {WATCHED} ({ROWS:,} rows) through `{AUDIT_ROLE}`, csvlog.",
        "",
    ]
    if a is not None:
        lines += [*report_a(a), ""]
    if b is not None:
        lines += report_b(b)
    return lines, {"a": asdict(a) if a else None, "b": asdict(b) if b else None}


def pg_version(pg: PgCluster) -> str:
    version = pg.psql("SHOW server_version").strip()
    pgaudit = pg.psql(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'pgaudit'"
    ).strip()
    return f"PostgreSQL {version} + pgaudit {pgaudit or '?'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 SELECTs and 20 polls")
    parser.add_argument("--part", choices=("a", "b", "both"), default="both")
    parser.add_argument("--selects", type=int, help="part A's SELECTs (default 300, quick 30)")
    parser.add_argument("--polls", type=int, help="part B's polls a source (100, quick 20)")
    parser.add_argument(
        "--poll-interval", default="", help="the agent's audit log poll interval (default: its own)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", type=Path, help="the report (default bench/results/pgstat-DATE.md)"
    )
    args = parser.parse_args()
    args.selects = args.selects or (30 if args.quick else 300)
    args.polls = args.polls or (20 if args.quick else 100)
    args.load = load()
    reason = available()
    if reason is not None:
        sys.exit(f"pgstat_bench: {reason}")
    signal.signal(signal.SIGTERM, _terminated)
    OUT.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="pgstat-bench-", dir=OUT))
    folder.chmod(0o755)
    pg = PgCluster(settings=CLUSTER_SETTINGS)
    try:
        pg.start()
        pg.psql(setup_sql())
        lines, raw = asyncio.run(run(args, pg, folder))
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or RESULTS / f"pgstat-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text(text)
    (OUT / "pgstat-bench.json").write_text(json.dumps(raw, default=str))
    print(f"written: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
