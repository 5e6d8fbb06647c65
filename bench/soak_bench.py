#!/usr/bin/env python3
"""Soak bench: the agent for an hour on a rotating log, a flapping database and a flaky pager.

    .venv/bin/python bench/soak_bench.py [--minutes 60] [--rate 5000] [--rotate-every 300]
        [--flap-every 120] [--flap-down 20] [--fail-rate 0.2] [--seed 1]
    .venv/bin/python bench/soak_bench.py --quick      # 2 minutes, to try it out

What runs (each in its own process unless said):

- a private PostgreSQL 15 + pgaudit cluster (tablewatch.pgcluster.PgCluster, run as the postgres
  OS user; pg_stat_statements preloaded; crm.client_list with 50,000 rows; a monitoring role with
  pg_monitor), behind our own TCP proxy (tests/tcpproxy.py, a thread of this process). Every
  `--flap-every` s the proxy drops every connection and resets new ones for `--flap-down` s, then
  lets them through again; meanwhile /metrics is read every FLAP_POLL_S to see when each of the
  agent's database sources (`tablewatch_source_up{source=...}`) went to 0 and came back to 1.
- the writer: a synthetic PostgreSQL 15 csvlog at `--rate` records/s (agent_bench's Workload and
  pacing: key lookups, joins, searches, analysts, billing jobs, a whole-table read every 15 s by
  two known batch readers), rotated the logging collector's way every `--rotate-every` s (a new
  `postgresql-YYYY-MM-DD_HHMMSS.csv`, the old file kept). About every `--intruder-every` s
  (uniformly 0.5-1.5 times that) a never-seen principal (`contractorNNN` from 203.0.113.x)
  connects and runs `SELECT * FROM crm.client_list`: a critical finding that pages.
- the agent as deployed: `python -m tablewatch.cli --config SETTINGS run --log-format json`, its
  `[audit_log] path` the glob, `start = "beginning"`, `[database] dsn` through the proxy,
  /metrics and the API on free loopback ports, `[alerts] page_on = "critical"`, flood control
  raised (`flood_total` FLOOD_TOTAL, `flood_per_principal` FLOOD_PER_PRINCIPAL: the defaults, 20
  and 3 an hour, would hold back genuine pages of an hour with ~30 intruders), and the webhook
  sink pointing at the receiver;
- the receiver: a local HTTP endpoint (aiohttp, as bench/receiver.py) that answers 503 to a
  seeded `--fail-rate` of the requests and 200 to the rest, and writes down every request (time,
  alert key, action, status answered);
- a second consumer: `tablewatch tail --from-start` on the same glob (its own state dir), its
  JSON lines into a file, so that records can be checked one by one.

Every `--sample-every` s: the agent's RSS (VmRSS), open fds (/proc/PID/fd), CPU, and from
/metrics its events, lag, bytes behind, sources up, outbox depth and delivery attempts; the API
snapshot's alerts; the tail consumer's lines. When the writer stops: wait (bounded) until the
agent and the tail have everything, then until the outbox is empty, SIGTERM both (exit status).
The truth is then `tablewatch replay --events` over every file written, oldest first (same
parser, whole files), compared with the tail's lines as multisets of whole JSON lines (a record's
time, user, client, session_id, statement_id, substatement_id, audit_type, object_name, statement
and parameters: unique in this workload): lost = truth - tail, duplicates = tail - truth. The
agent's `tablewatch_events_total` counts every event the engine took (audit records about the
watched table, plus permission-denied and audit set-up records, which this workload has none of),
so it must equal the number of truth lines. Alerts: raised by the agent (its `alert_active` log
lines and the API) against delivered (distinct keys with a 2xx trigger at the receiver).

Report: stdout and `bench/results/soak-DATE.md` (`--quick`: `soak-quick-DATE.md`); raw samples
in `bench/out/soak-bench.json`.
Exit status 1 when anything was lost (a record, or an alert), counted twice, or the agent's count
is off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from itertools import zip_longest
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any, NoReturn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from agent_bench import (  # noqa: E402
    BULK_EVERY_MS,
    FLAT_MIB_PER_MIN,
    ROWS,
    WATCHED,
    Workload,
    cpu_seconds,
    pct,
    rss_mib,
    slope_per_minute,
)
from agent_bench import Written as AgentWritten  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from replay_bench import cpu_model  # noqa: E402

from collectors.csvlog_writer import Statement  # noqa: E402
from tablewatch.pgcluster import PgCluster, available, free_port  # noqa: E402
from tests.tcpproxy import TcpProxy  # noqa: E402

OUT = HERE / "out"
RESULTS = HERE / "results"
MONITOR = "tw_soak_monitor"
CLUSTER_SETTINGS = {"shared_preload_libraries": "pgaudit,pg_stat_statements"}
DB_SOURCES = ("pg_stat_user_tables", "pg_stat_statements", "pg_stat_activity", "audit_setup")
AUDIT_SOURCE = "audit_log"
FLAP_POLL_S = 0.5
RECOVER_MAX_S = 120.0
"""How long after a restore the bench watches for the sources to come back (or the next flap)."""
FD_SPREAD = 10
"""Open fds move with the database connections (4, all cut at each flap), the webhook's and the
scrapes' connections and the log file being switched; a leak per flap or rotation grows past."""
FLOOD_TOTAL = 1000
FLOOD_PER_PRINCIPAL = 10
WHOLE_TABLE = Statement(f"SELECT * FROM {WATCHED}", (WATCHED,), tag="SELECT")
FILE_TIME = "%Y-%m-%d_%H%M%S"
START_TIMEOUT_S = 90.0
SETUP_SQL = f"""
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (id int PRIMARY KEY, name text, email text, region text);
INSERT INTO crm.client_list
SELECT g, 'Client ' || g, 'c' || g || '@example.com', (ARRAY['emea', 'apac', 'amer'])[1 + g % 3]
  FROM generate_series(1, {ROWS}) g;
ANALYZE crm.client_list;
GRANT SELECT ON {WATCHED} TO auditor;
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
"""


@dataclass(frozen=True)
class Options:
    """What one soak does (the command line, or a test's choice)."""

    seconds: float = 3600.0
    rate: int = 5000
    rotate_every: float = 300.0
    flap_every: float = 120.0
    flap_down: float = 20.0
    fail_rate: float = 0.2
    seed: int = 1
    intruder_every: float = 120.0
    db_interval: str = ""
    """The agent's [database] poll intervals, all four ("": its own defaults)."""
    sample_every: float = 5.0
    warmup: float = 300.0
    chunk_ms: int = 20
    catchup_timeout: float = 300.0
    drain_timeout: float = 300.0

    def check(self) -> None:
        """Refuse what cannot work (rotation names are by the second; a flap must end)."""
        if self.rotate_every < 2:
            raise ValueError("--rotate-every: at least 2 s (file names are by the second)")
        if not 0 < self.flap_down < self.flap_every:
            raise ValueError("--flap-down must be positive and shorter than --flap-every")
        if not 0 <= self.fail_rate < 1:
            raise ValueError("--fail-rate: from 0 to below 1")


QUICK = Options(
    seconds=120.0,
    rate=1000,
    rotate_every=20.0,
    flap_every=30.0,
    flap_down=8.0,
    intruder_every=20.0,
    db_interval="1s",
    warmup=30.0,
    catchup_timeout=120.0,
    drain_timeout=120.0,
)


# --------------------------------------------------------------------------------------------
# The writer (its own process)
# --------------------------------------------------------------------------------------------


@dataclass
class Written(AgentWritten):
    """What the writer reports when it stops: agent_bench's figures, and the files."""

    files: list[str] = field(default_factory=list)
    """The files written, oldest first (names in the log folder)."""
    rotations: list[float] = field(default_factory=list)
    """When each new file was opened (wall time)."""
    intruders: list[tuple[float, str, str]] = field(default_factory=list)
    """(wall time, user, client address) of each whole-table read by a never-seen principal."""


def log_name(when: float) -> str:
    """The file name PostgreSQL's default log_filename gives (csvlog: .csv)."""
    return f"postgresql-{time.strftime(FILE_TIME, time.gmtime(when))}.csv"


def intrude(work: Workload, n: int, now_ms: int) -> tuple[str, str]:
    """A principal never seen before connects and reads the whole table, then leaves."""
    user, host = f"contractor{n:03d}", f"203.0.113.{1 + n % 250}"
    work.stamp = work.stamps(now_ms)
    s = work.connect(user, host, "psql", now_ms)
    work.audit(s, WHOLE_TABLE, "<none>")
    work.disconnect(s, now_ms)
    return user, host


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def write_log(options: Options, first: str, pipe: Any) -> None:
    """Append `options.rate` records/s to `first` for `options.seconds`, rotating to a new file
    every `rotate_every` s, with an intruder now and then; report a `Written` on `pipe`.
    The pacing is agent_bench.write_log's: every chunk_ms, the records due since the start,
    their stamps spread over the interval, as the server wrote them."""
    chunk = options.chunk_ms / 1000
    path = Path(first)
    fd = _open_log(path)
    start = time.time()
    work = Workload(options.seed, int(start * 1000))
    rng = random.Random(options.seed + 1)
    pipe.send(start)
    w = Written(start, start, 0, 0, 0, 0.0, 0.0, timeline=[], files=[path.name])
    next_rotation = start + options.rotate_every
    next_intruder = start + options.intruder_every * rng.uniform(0.5, 1.5)
    last_ms, tick = int(start * 1000), start
    cpu0 = time.process_time()
    while (now := time.time()) < start + options.seconds:
        now_ms = int(now * 1000)
        target = int(options.rate * (now - start))
        todo = target - work.records
        first_record = work.records
        while work.records < target:
            work.stamp = work.stamps(
                last_ms + (now_ms - last_ms) * (work.records - first_record) // todo
            )
            work.step(now_ms)
        if now_ms >= work.next_bulk:
            work.bulk()
            work.next_bulk += BULK_EVERY_MS
        if now >= next_intruder:
            w.intruders.append((now, *intrude(work, len(w.intruders), now_ms)))
            next_intruder += options.intruder_every * rng.uniform(0.5, 1.5)
        data = "".join(work.buf).encode()
        work.buf.clear()
        _write_all(fd, data)
        w.bytes += len(data)
        w.timeline.append((time.time(), work.watched))
        if now >= next_rotation:  # the logging collector's way: a new file, the old one kept
            os.close(fd)
            path = path.with_name(log_name(now))
            if path.exists():
                raise RuntimeError(f"{path} exists: rotations less than a second apart?")
            fd = _open_log(path)
            w.files.append(path.name)
            w.rotations.append(time.time())
            next_rotation += options.rotate_every
        last_ms = now_ms
        tick += chunk
        late = time.time() - tick
        w.max_late_s = max(w.max_late_s, late)
        if late < 0:
            time.sleep(-late)
    os.close(fd)
    w.stopped, w.records, w.watched = time.time(), work.records, work.watched
    w.cpu_s = time.process_time() - cpu0
    pipe.send(w)


# --------------------------------------------------------------------------------------------
# The alert receiver (its own process)
# --------------------------------------------------------------------------------------------


def serve_receiver(record: str, fail_rate: float, seed: int, pipe: Any) -> None:
    """Answer 503 to a seeded `fail_rate` of the POSTs and 200 to the rest; one JSON line per
    request in `record` (written and flushed before answering); the port on `pipe`."""
    with open(record, "a", encoding="utf-8") as out:
        asyncio.run(_receive(out, fail_rate, seed, pipe))


async def _receive(out: IO[str], fail_rate: float, seed: int, pipe: Any) -> None:
    from aiohttp import web

    rng = random.Random(seed)

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            data = json.loads(body)
            key, action = str(data.get("key", "")), str(data.get("action", ""))
        except (ValueError, AttributeError):
            key, action = "", ""
        status = 503 if rng.random() < fail_rate else 200
        out.write(json.dumps({"t": time.time(), "key": key, "action": action, "status": status}))
        out.write("\n")
        out.flush()  # before the answer: what the agent was told is on record
        return web.Response(status=status, text="ok" if status == 200 else "try later")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    pipe.send(runner.addresses[0][1])
    await asyncio.Event().wait()  # until terminated


def read_requests(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line]


# --------------------------------------------------------------------------------------------
# The processes under test
# --------------------------------------------------------------------------------------------


def agent_settings(
    folder: Path, pattern: str, dsn: str, metrics: int, api: int, hook: str, db_interval: str
) -> str:
    intervals = "".join(
        f'{key} = "{db_interval}"\n'
        for key in ("poll_interval", "statements_interval", "activity_interval", "setup_interval")
        if db_interval
    )
    return (
        f'[[tables]]\nname = "{WATCHED}"\nrows = {ROWS}\n\n'
        f'[database]\ndsn = "{dsn}"\n{intervals}\n'
        f'[audit_log]\npath = "{pattern}"\nformat = "csvlog"\nstart = "beginning"\n\n'
        f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n\n'
        f'[api]\nlisten = "127.0.0.1:{api}"\n\n'
        f'[state]\ndir = "{folder / "agent-state"}"\n\n'
        f'[alerts]\npage_on = "critical"\nflood_total = {FLOOD_TOTAL}\n'
        f"flood_per_principal = {FLOOD_PER_PRINCIPAL}\n\n"
        f'[alerts.webhook]\nurl = "{hook}"\n'
    )


def tail_settings(folder: Path, pattern: str) -> str:
    return (
        f'[[tables]]\nname = "{WATCHED}"\nrows = {ROWS}\n\n'
        f'[audit_log]\npath = "{pattern}"\nformat = "csvlog"\nstart = "beginning"\n\n'
        f'[metrics]\nlisten = ""\n\n[api]\nlisten = ""\n\n'
        f'[state]\ndir = "{folder / "tail-state"}"\n'
    )


def tablewatch(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tablewatch.cli", "--config", str(config), *args]


class Proc:
    """A tablewatch subprocess, its stderr (and maybe stdout) in files; killed if left."""

    def __init__(self, command: list[str], err: Path, out: Path | None = None) -> None:
        self.command = command
        self.err = err
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
        with contextlib.ExitStack() as files:
            stderr = files.enter_context(err.open("wb"))
            stdout = files.enter_context(out.open("wb")) if out else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**clean, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def last_words(self) -> str:
        try:
            return self.err.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class Scrape:
    """One GET of /metrics: the samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.values[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name: str, default: float = float("nan"), **labels: str) -> float:
        return self.values.get(("tablewatch_" + name, tuple(sorted(labels.items()))), default)


def http_get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class LineCounter:
    """Lines of a growing file, counted from where the last call stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                while block := f.read(1 << 20):
                    self.lines += block.count(b"\n")
                    self.offset += len(block)
        except OSError:
            pass
        return self.lines


@dataclass
class Sample:
    t: float
    rss: float
    """The agent's VmRSS, MiB."""
    fds: int
    cpu: float
    """The agent's CPU seconds so far."""
    tail_rss: float
    tail_fds: int
    events: float
    lag: float
    """`tablewatch_source_lag_seconds{source="audit_log"}`."""
    behind: float
    up: dict[str, float]
    outbox: float
    sent: float
    retry: float
    failed: float
    suppressed: float
    tail_lines: int


@dataclass
class Flap:
    """One drop of the database connection and what the agent's sources made of it."""

    dropped_at: float
    cut: int
    """Connections open through the proxy that the drop reset."""
    restored_at: float = float("nan")
    down_at: dict[str, float] = field(default_factory=dict)
    """Per database source: the first scrape after the drop with source_up 0."""
    up_at: dict[str, float] = field(default_factory=dict)
    """Per source that went down: the first scrape after the restore with source_up 1."""


class Agent:
    """The agent subprocess and its two listeners."""

    def __init__(self, folder: Path, settings: str, metrics: int, api: int) -> None:
        config = folder / "agent.toml"
        config.write_text(settings)
        self.metrics, self.api = metrics, api
        self.proc = Proc(tablewatch(config, "run", "--log-format", "json"), folder / "agent.log")

    def scrape(self) -> Scrape:
        """/metrics now, or the agent's last words if it has gone."""
        try:
            return Scrape(http_get(f"http://127.0.0.1:{self.metrics}/metrics").decode())
        except OSError:
            if not self.proc.alive():
                raise RuntimeError(f"the agent exited:\n{self.proc.last_words()}") from None
            raise

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(http_get(f"http://127.0.0.1:{self.api}/api/v1/snapshot"))
        return data

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every database source is in state ok (has connected once) and the audit log
        is followed (ok, or waiting for its first record)."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"the agent exited:\n{self.proc.last_words()}")
            try:
                states = {s["name"]: s["state"] for s in self.snapshot()["sources"]}
            except (OSError, ValueError, KeyError):
                states = {}
            if all(states.get(name) == "ok" for name in DB_SOURCES) and states.get(
                AUDIT_SOURCE
            ) in ("ok", "waiting"):
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"the agent's sources are not all up: {states}\n{self.proc.last_words()}"
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.proc.err.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


class Flapper(threading.Thread):
    """Drops the proxy every `every` s for `down` s (none that would end after `until`) and
    watches /metrics meanwhile. Never raises: a failure is kept in `error`."""

    def __init__(
        self, proxy: TcpProxy, agent: Agent, start: float, until: float, every: float, down: float
    ) -> None:
        super().__init__(name="flapper", daemon=True)
        self.proxy, self.agent = proxy, agent
        self.start_t, self.until, self.every, self.down = start, until, every, down
        self.flaps: list[Flap] = []
        self.error = ""
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self._flap_on()
        except Exception as exc:  # noqa: BLE001 - kept for the report, never lost in a thread
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.proxy.down:
                self.proxy.restore()

    def _flap_on(self) -> None:
        k = 1
        while (at := self.start_t + k * self.every) + self.down <= self.until:
            if self.stopping.wait(max(0.0, at - time.time())):
                return
            flap = Flap(time.time(), self.proxy.drop())
            self.flaps.append(flap)
            self._watch(flap, flap.dropped_at + self.down, recovering=False)
            self.proxy.restore()
            flap.restored_at = time.time()
            k += 1
            self._watch(flap, min(self.start_t + k * self.every, time.time() + RECOVER_MAX_S),
                        recovering=True)  # fmt: skip

    def _watch(self, flap: Flap, until: float, *, recovering: bool) -> None:
        """Scrape every FLAP_POLL_S until `until` (recovering: or until every source has gone
        down and come back). A source that finds its connection dead only after the restore
        (its poll came later) noticed the drop too: then, later than `--flap-down`."""
        while (now := time.time()) < until:
            try:
                scrape = self.agent.scrape()
            except OSError:  # busy: try again at the next turn (dead: RuntimeError)
                time.sleep(FLAP_POLL_S)
                continue
            seen = time.time()
            for source in DB_SOURCES:
                up = scrape.get("source_up", source=source)
                if up == 0 and source not in flap.down_at:
                    flap.down_at[source] = seen
                elif recovering and up == 1 and source in flap.down_at:
                    flap.up_at.setdefault(source, seen)
            if recovering and set(flap.up_at) == set(flap.down_at) == set(DB_SOURCES):
                return
            time.sleep(max(0.0, FLAP_POLL_S - (time.time() - now)))


def sample(agent: Agent, tail: Proc, lines: LineCounter) -> Sample:
    m = agent.scrape()
    pid = agent.proc.pid
    return Sample(
        t=time.time(),
        rss=rss_mib(pid),
        fds=open_fds(pid),
        cpu=cpu_seconds(pid),
        tail_rss=rss_mib(tail.pid) if tail.alive() else float("nan"),
        tail_fds=open_fds(tail.pid),
        events=m.get("events_total", 0),
        lag=m.get("source_lag_seconds", source=AUDIT_SOURCE),
        behind=m.get("source_behind_bytes", 0, source=AUDIT_SOURCE),
        up={s: m.get("source_up", source=s) for s in (AUDIT_SOURCE, *DB_SOURCES)},
        outbox=m.get("outbox_depth", 0),
        sent=m.get("alert_deliveries_total", 0, sink="webhook", outcome="sent"),
        retry=m.get("alert_deliveries_total", 0, sink="webhook", outcome="retry"),
        failed=m.get("alert_deliveries_total", 0, sink="webhook", outcome="failed"),
        suppressed=m.get("alerts_suppressed_total", 0),
        tail_lines=lines.count(),
    )


# --------------------------------------------------------------------------------------------
# Checking the records
# --------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """The tail consumer's lines against the truth, as multisets."""

    truth: int = 0
    got: int = 0
    lost: int = 0
    duplicates: int = 0
    lost_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)


def compare(truth: Iterable[bytes], got: Iterable[bytes], examples: int = 3) -> Comparison:
    """Multiset difference of two streams of lines, in bounded memory when they are nearly in
    the same order (as a faithful consumer's are): pairs that agree cancel at once; the others
    wait in a Counter (+1 truth, -1 got) until their match comes."""
    pending: Counter[bytes] = Counter()
    result = Comparison()

    def bump(line: bytes, by: int) -> None:
        n = pending[line] + by
        if n:
            pending[line] = n
        else:
            del pending[line]

    for a, b in zip_longest(truth, got):
        result.truth += a is not None
        result.got += b is not None
        if a == b:
            continue
        if a is not None:
            bump(a, 1)
        if b is not None:
            bump(b, -1)
    for line, n in pending.items():
        text = line.decode(errors="replace").strip()[:300]
        if n > 0:
            result.lost += n
            if len(result.lost_examples) < examples:
                result.lost_examples.append(text)
        else:
            result.duplicates -= n
            if len(result.duplicate_examples) < examples:
                result.duplicate_examples.append(text)
    return result


def check_records(
    config: Path, log_dir: Path, files: list[str], tail_out: Path, err: Path
) -> Comparison:
    """`tablewatch replay --events` over every file (the truth) against the tail's lines."""
    command = tablewatch(config, "replay", "--events", "--format", "csvlog", "--table",
                         f"{WATCHED}={ROWS}", *(str(log_dir / f) for f in files))  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
    with err.open("wb") as stderr, tail_out.open("rb") as got:
        replay = subprocess.Popen(command, cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.PIPE, stderr=stderr)  # fmt: skip
        assert replay.stdout is not None
        with replay.stdout:
            result = compare(replay.stdout, got)
        status = replay.wait()
    if status != 0:
        raise RuntimeError(f"replay --events exited {status}: {err.read_text()[-1000:]}")
    return result


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    options: Options
    written: Written
    samples: list[Sample]
    skipped: int
    """Samples missed because the agent did not answer in time."""
    flaps: list[Flap]
    flapper_error: str
    requests: list[dict[str, Any]]
    """Every request the receiver answered."""
    alerts: dict[str, dict[str, Any]]
    """Alerts the agent raised, by key (from its log and its API)."""
    comparison: Comparison
    agent_events: float
    """`tablewatch_events_total` once caught up (and a second later)."""
    agent_status: int
    tail_status: int
    caught_up_s: float
    """From the writer's stop until the agent and the tail had every record (NaN: not in time)."""
    drained_s: float
    """From then until the outbox was empty (NaN: not in time)."""
    final: dict[str, float]
    audit_source: dict[str, Any]
    """The audit log source as the API showed it at the end (rotations, lost bytes...)."""
    proxy: dict[str, int]
    troubles: list[str]
    source_errors: int
    """The agent's `source_state` error lines about its database sources (the flaps)."""
    replay_notes: str
    stopped_line: dict[str, Any]
    load: float
    pg_version: str


def prepare(pg: PgCluster) -> str:
    """The watched table and the monitoring role; the server's version line for the report."""
    pg.psql(SETUP_SQL)
    version = pg.psql("SHOW server_version").strip()
    pgaudit = pg.psql(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'pgaudit'"
    ).strip()
    return f"PostgreSQL {version} + pgaudit {pgaudit or '?'}"


def _quiet(text: str) -> None:
    """No progress lines (a test)."""


class Soak:
    """One soak's moving parts: `start` them, `write` (the writer, the flapper and the
    sampling), `finish` (catch up, drain, stop); a `with` block stops whatever is left."""

    def __init__(
        self, options: Options, pg: PgCluster, folder: Path, progress: Callable[[str], None]
    ) -> None:
        self.options, self.pg, self.folder, self.say = options, pg, folder, progress
        self.stack = contextlib.ExitStack()
        self.ctx = multiprocessing.get_context("spawn")
        self.mine, self.theirs = self.ctx.Pipe()
        self.stack.callback(self.mine.close)
        self.stack.callback(self.theirs.close)
        self.log_dir = folder / "log"
        self.first = self.log_dir / log_name(time.time())
        self.tail_config = folder / "tail.toml"
        self.tail_out = folder / "tail.jsonl"
        self.requests = folder / "requests.jsonl"
        self.lines = LineCounter(self.tail_out)
        self.samples: list[Sample] = []
        self.alerts: dict[str, dict[str, Any]] = {}
        self.skipped = 0
        """Samples missed because /metrics or the API did not answer in time."""

    def __enter__(self) -> Soak:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def start(self) -> None:
        """The log's first (empty) file, the proxy, the receiver, the agent and the tail; back
        once the agent's database sources have connected."""
        self.log_dir.mkdir()
        self.first.touch()
        pattern = str(self.log_dir / "postgresql-*.csv")
        self.tail_config.write_text(tail_settings(self.folder, pattern))
        self.proxy = self.stack.enter_context(TcpProxy(self.pg.host, self.pg.port))
        o = self.options
        self._child(serve_receiver, str(self.requests), o.fail_rate, o.seed)
        hook = f"http://127.0.0.1:{self._receive('the alert receiver', 30)}/tablewatch"
        dsn = f"postgresql://{MONITOR}@{self.proxy.host}:{self.proxy.port}/postgres"
        metrics, api = free_port(), free_port()
        settings = agent_settings(self.folder, pattern, dsn, metrics, api, hook, o.db_interval)
        self.agent = Agent(self.folder, settings, metrics, api)
        self.stack.callback(self.agent.proc.kill)
        command = tablewatch(self.tail_config, "tail", "--from-start")
        self.tail = Proc(command, self.folder / "tail.log", self.tail_out)
        self.stack.callback(self.tail.kill)
        self.agent.wait_ready()
        self.say("agent up, database sources connected; writing")

    def _child(self, target: Callable[..., None], *args: Any) -> BaseProcess:
        """A process of ours (spawned: it shares nothing with the measuring), stopped at the
        end; it answers on the pipe."""
        child = self.ctx.Process(target=target, args=(*args, self.theirs), daemon=True)
        child.start()
        self.stack.callback(_end_process, child)
        return child

    def _receive(self, who: str, timeout: float) -> Any:
        if not self.mine.poll(timeout):
            raise RuntimeError(f"{who} did not answer in {timeout:g} s")
        return self.mine.recv()

    def write(self) -> tuple[Written, Flapper]:
        """Run the writer and the flapper; a sample every `sample_every` s until the writer
        stops."""
        o = self.options
        writer = self._child(write_log, o, str(self.first))
        started: float = self._receive("the writer", 60)
        flapper = Flapper(self.proxy, self.agent, started, started + o.seconds, o.flap_every,
                          o.flap_down)  # fmt: skip
        flapper.start()
        self.stack.callback(_end_flapper, flapper)
        tick, said = started, started
        while True:
            tick += o.sample_every
            if self.mine.poll(max(0.0, tick - time.time())):
                written: Written = self.mine.recv()
                writer.join()
                flapper.stopping.set()
                return written, flapper
            if not writer.is_alive() and not self.mine.poll():
                raise RuntimeError(f"the writer died (exit code {writer.exitcode})")
            self.sample()
            if self.samples and time.time() - said >= 60:
                said, s = time.time(), self.samples[-1]
                self.say(f"{(s.t - started) / 60:.0f} min: {s.events:,.0f} events, lag "
                         f"{s.lag:.2f} s, RSS {s.rss:.1f} MiB, {s.fds} fds, "
                         f"{len(flapper.flaps)} flaps")  # fmt: skip

    def sample(self) -> None:
        """One sample and the API's alerts; a slow answer (the agent busy) skips it."""
        try:
            self.samples.append(sample(self.agent, self.tail, self.lines))
            _note_alerts(self.alerts, self.agent.snapshot())
        except OSError:
            if not self.agent.proc.alive():
                raise
            self.skipped += 1

    def finish(self, w: Written, flapper: Flapper) -> Ending:
        """Wait (bounded) for the agent and the tail to have every record, then for the
        outbox to empty; take the last figures; SIGTERM the tail and the agent."""
        o, agent = self.options, self.agent
        self.say(f"writer done: {w.records:,} records; catching up")
        caught = _wait(lambda: _caught_up(agent, self.lines, w), o.catchup_timeout)
        caught_up_s = time.time() - w.stopped if caught else float("nan")
        drain_from = time.time()
        drained = _wait(lambda: agent.scrape().get("outbox_depth", 0) == 0, o.drain_timeout)
        drained_s = time.time() - drain_from if drained else float("nan")
        flapper.join(RECOVER_MAX_S + 10)
        time.sleep(1.0)  # nothing counted twice: the counts must stay where they are
        self.samples.append(sample(agent, self.tail, self.lines))
        snap = agent.snapshot()
        _note_alerts(self.alerts, snap)
        final = final_figures(agent.scrape())
        tail_status = self.tail.stop()
        agent_status = agent.proc.stop()
        log = agent.lines()
        for line in log:
            if line.get("event") == "alert_active":
                self.alerts.setdefault(line["key"], {}).update(
                    user=line.get("user"), client_addr=line.get("client_addr"), logged=line["time"]
                )
        return Ending(
            caught_up_s=caught_up_s,
            drained_s=drained_s,
            final=final,
            audit_source=next((s for s in snap["sources"] if s["name"] == AUDIT_SOURCE), {}),
            agent_status=agent_status,
            tail_status=tail_status,
            log=log,
            proxy={"accepted": self.proxy.accepted, "dropped": self.proxy.dropped,
                   "refused": self.proxy.refused, "failed": self.proxy.failed},
        )  # fmt: skip


@dataclass
class Ending:
    """How the run ended (Soak.finish)."""

    caught_up_s: float
    drained_s: float
    final: dict[str, float]
    audit_source: dict[str, Any]
    agent_status: int
    tail_status: int
    log: list[dict[str, Any]]
    proxy: dict[str, int]


def final_figures(m: Scrape) -> dict[str, float]:
    """The agent's counters at the end."""
    return {
        "events": m.get("events_total", 0),
        "records": m.get("source_records_total", 0, source=AUDIT_SOURCE),
        "parse_errors": m.get("source_parse_errors_total", 0, source=AUDIT_SOURCE),
        "lost_bytes": m.get("source_lost_bytes_total", 0, source=AUDIT_SOURCE),
        "sent": m.get("alert_deliveries_total", 0, sink="webhook", outcome="sent"),
        "retry": m.get("alert_deliveries_total", 0, sink="webhook", outcome="retry"),
        "failed": m.get("alert_deliveries_total", 0, sink="webhook", outcome="failed"),
        "suppressed": m.get("alerts_suppressed_total", 0),
        "outbox": m.get("outbox_depth", 0),
    }


def troubles(log: list[dict[str, Any]]) -> tuple[list[str], int]:
    """The agent's warnings and errors, but for what the flaps are expected to cause (its
    database sources going down: counted apart) and the alerts it raised."""
    flapped = 0
    out: list[str] = []
    for x in log:
        if x.get("level") not in ("warning", "error") or x.get("event") == "alert_active":
            continue
        if x.get("event") == "source_state" and x.get("source") in DB_SOURCES:
            flapped += 1
            continue
        out.append(json.dumps(x, ensure_ascii=False)[:300])
    return out, flapped


def soak(
    options: Options, pg: PgCluster, folder: Path, progress: Callable[[str], None] = _quiet
) -> Result:
    """One soak run on a started cluster; everything else is started here (in `folder`) and
    stopped before returning."""
    options.check()
    load = os.getloadavg()[0]
    version = prepare(pg)
    with Soak(options, pg, folder, progress) as run:
        run.start()
        written, flapper = run.write()
        end = run.finish(written, flapper)
    progress("comparing with tablewatch replay --events")
    replay_err = folder / "replay.err"
    comparison = check_records(run.tail_config, run.log_dir, written.files, run.tail_out,
                               replay_err)  # fmt: skip
    trouble, flapped = troubles(end.log)
    return Result(
        options=options,
        written=written,
        samples=run.samples,
        skipped=run.skipped,
        flaps=flapper.flaps,
        flapper_error=flapper.error,
        requests=read_requests(run.requests),
        alerts=run.alerts,
        comparison=comparison,
        agent_events=run.samples[-1].events,
        agent_status=end.agent_status,
        tail_status=end.tail_status,
        caught_up_s=end.caught_up_s,
        drained_s=end.drained_s,
        final=end.final,
        audit_source=end.audit_source,
        proxy=end.proxy,
        troubles=trouble,
        source_errors=flapped,
        replay_notes=replay_err.read_text(errors="replace")[-2000:],
        stopped_line=next((x for x in end.log if x.get("event") == "stopped"), {}),
        load=load,
        pg_version=version,
    )


def _note_alerts(alerts: dict[str, dict[str, Any]], snap: dict[str, Any]) -> None:
    for a in snap.get("alerts", []):
        alerts.setdefault(a["key"], {}).update(
            user=a["user"], client_addr=a["client_addr"], state=a["state"],
            deliveries=a["deliveries"],
        )  # fmt: skip


def _caught_up(agent: Agent, lines: LineCounter, w: Written) -> bool:
    return agent.scrape().get("events_total", 0) >= w.watched and lines.count() >= w.watched


def _wait(done: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def _end_process(proc: BaseProcess) -> None:
    if proc.is_alive():
        proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _end_flapper(flapper: Flapper) -> None:
    flapper.stopping.set()
    flapper.join(RECOVER_MAX_S + 10)


# --------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------


@dataclass
class AlertFigures:
    raised: int
    delivered: int
    lost: list[str]
    unknown: list[str]
    """Keys the receiver got that the agent never said it raised."""
    requests: int
    answered_503: int
    retried_keys: int
    """Keys whose trigger was answered 503 at least once and then 2xx."""
    intruders: int
    intruders_paged: int


def alert_figures(r: Result) -> AlertFigures:
    delivered = {
        q["key"] for q in r.requests if q["action"] == "trigger" and 200 <= q["status"] < 300
    }
    failed = {q["key"] for q in r.requests if q["action"] == "trigger" and q["status"] >= 500}
    users = {a.get("user") for a in r.alerts.values()}
    return AlertFigures(
        raised=len(r.alerts),
        delivered=len(delivered & set(r.alerts)),
        lost=sorted(set(r.alerts) - delivered),
        unknown=sorted({q["key"] for q in r.requests} - set(r.alerts)),
        requests=len(r.requests),
        answered_503=sum(q["status"] == 503 for q in r.requests),
        retried_keys=len(failed & delivered),
        intruders=len(r.written.intruders),
        intruders_paged=sum(user in users for _, user, _ in r.written.intruders),
    )


def written_lag(t: float, count: float, w: Written) -> float:
    """Seconds since the newest record among the first `count` was written (the writer's
    timeline: the wall time after each chunk and the records about the table so far)."""
    if count <= 0:
        return t - w.started
    first = bisect_left(w.timeline, count, key=lambda chunk: chunk[1])  # its count reaches it
    return max(0.0, t - w.timeline[min(first, len(w.timeline) - 1)][0])


def flap_seen(f: Flap) -> bool:
    return set(f.down_at) == set(DB_SOURCES)


def flap_recovered(f: Flap) -> bool:
    return bool(f.down_at) and set(f.up_at) == set(f.down_at)


def fd_spread(r: Result) -> int:
    """max - min of the agent's open fds after the warm-up."""
    fds = [s.fds for s in steady(r)]
    return max(fds) - min(fds) if fds else 0


def rss_slope(r: Result) -> float:
    """Least-squares slope of the agent's RSS after the warm-up, MiB/min."""
    return slope_per_minute([(s.t - r.written.started, s.rss) for s in steady(r)])


def steady(r: Result) -> list[Sample]:
    """The samples after the warm-up (at most a third of the run)."""
    warmup = min(r.options.warmup, r.options.seconds / 3)
    return [s for s in r.samples if s.t - r.written.started >= warmup]


def verdicts(r: Result) -> list[tuple[str, bool, bool]]:
    """(what, met, is a loss: fails the run)."""
    a = alert_figures(r)
    c = r.comparison
    written = r.written.watched
    return [
        (f"the replay of the files has every record written ({c.truth:,} of {written:,}; the "
         "tail and the agent are held against it)", c.truth == written, True),
        (f"no record lost by the tail consumer ({c.lost:,})", c.lost == 0, True),
        (f"no record twice ({c.duplicates:,})", c.duplicates == 0, True),
        (f"the agent counted every record once ({r.agent_events:,.0f} of {c.truth:,})",
         r.agent_events == c.truth, True),
        (f"no alert lost ({len(a.lost)} of {a.raised})", not a.lost, True),
        (f"every intruder paged ({a.intruders_paged} of {a.intruders})",
         a.intruders_paged == a.intruders, False),
        (f"every flap seen by every database source ({sum(map(flap_seen, r.flaps))} of "
         f"{len(r.flaps)})", all(map(flap_seen, r.flaps)), False),
        (f"every source back after each flap ({sum(map(flap_recovered, r.flaps))} of "
         f"{len(r.flaps)})", all(map(flap_recovered, r.flaps)), False),
        (f"agent RSS flat after the warm-up (slope {rss_slope(r):+.2f} MiB/min, under "
         f"{FLAT_MIB_PER_MIN:g})", abs(rss_slope(r)) < FLAT_MIB_PER_MIN, False),
        (f"agent open fds bounded after the warm-up ({fd_spread(r)} apart, at most "
         f"{FD_SPREAD})", fd_spread(r) <= FD_SPREAD, False),
        (f"agent exit status 0 on SIGTERM ({r.agent_status})", r.agent_status == 0, False),
        (f"tail exit status 0 on SIGTERM ({r.tail_status})", r.tail_status == 0, False),
    ]  # fmt: skip


def failed(r: Result) -> bool:
    return any(loss and not met for _, met, loss in verdicts(r))


def _spread(what: str, values: list[float], unit: float = 1.0, fmt: str = ",.2f") -> str:
    v = [x * unit for x in values if x == x]
    if not v:
        return f"| {what} | - | - | - |"
    return f"| {what} | {pct(v, 50):{fmt}} | {pct(v, 99):{fmt}} | {max(v):{fmt}} |"


def report(r: Result, command: str) -> list[str]:
    w, o, c = r.written, r.options, r.comparison
    a = alert_figures(r)
    span = w.stopped - w.started
    during = [s for s in r.samples if s.t <= w.stopped]
    ready = steady(r)
    slope = rss_slope(r)
    cpu = (r.samples[-1].cpu - r.samples[0].cpu) / max(r.samples[-1].t - r.samples[0].t, 1e-9)
    fds = [s.fds for s in r.samples]
    lines = [
        f"# Soak bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} CPU ({cpu_model()}), Python {platform.python_version()}, "
        f"{r.pg_version}; load average {r.load:.2f} at the start.",
        f"Command: `{command}`",
        "",
        f"Agent: `tablewatch run --log-format json` on the glob `postgresql-*.csv` (csvlog, "
        f"start at the beginning), `[database]` through our TCP proxy (poll intervals: "
        f"{o.db_interval or 'the defaults'}), the webhook sink to a receiver answering 503 to "
        f"{o.fail_rate:.0%} of requests (seeded), `page_on = \"critical\"`; flood control "
        f"raised to `flood_total = {FLOOD_TOTAL}`, `flood_per_principal = {FLOOD_PER_PRINCIPAL}` "
        "(the defaults, 20 and 3 an hour, would hold back genuine pages of a long run). "
        f"Beside it, `tablewatch tail --from-start` on the same glob.",
        "",
        f"Load: {w.records:,} csvlog records in {span / 60:.1f} min, **{w.records / span:,.0f} "
        f"records/s** (asked {o.rate:,}), {w.bytes / 2**20:,.0f} MiB; {w.watched:,} about "
        f"{WATCHED}; {len(w.files)} files ({len(w.rotations)} rotations, every "
        f"{o.rotate_every:g} s); {len(w.intruders)} whole-table reads by never-seen principals; "
        f"{len(r.flaps)} database flaps ({o.flap_down:g} s down every {o.flap_every:g} s). "
        f"Writer at worst {w.max_late_s * 1000:,.0f} ms late. {len(r.samples)} samples, one "
        f"every {o.sample_every:g} s" + (f" ({r.skipped} skipped: the agent did not answer in "
        "time)." if r.skipped else "."),
        "",
        "## Records",
        "",
        "| what | figure |",
        "|---|---:|",
        f"| records about {WATCHED} written (the writer's count) | {w.watched:,} |",
        f"| truth: `tablewatch replay --events` over the {len(w.files)} files | {c.truth:,} |",
        f"| tail consumer: lines | {c.got:,} |",
        f"| **lost** (truth - tail, as multisets of whole lines) | **{c.lost:,}** |",
        f"| **duplicates** (tail - truth) | **{c.duplicates:,}** |",
        f"| agent: `tablewatch_events_total` | {r.agent_events:,.0f} "
        f"({r.agent_events - c.truth:+,.0f} against the truth) |",
        f"| agent: events in its `stopped` line | {r.stopped_line.get('events', '?')} |",
        f"| agent: csvlog records read; parse errors; bytes lost | "
        f"{r.final['records']:,.0f}; {r.final['parse_errors']:,.0f}; "
        f"{r.final['lost_bytes']:,.0f} |",
        f"| agent: rotations its tail followed (API) | {r.audit_source.get('rotations', '?')} |",
        "| caught up once the writer stopped (agent and tail) | "
        + (f"{r.caught_up_s:.1f} s |" if r.caught_up_s == r.caught_up_s
           else f"not in {o.catchup_timeout:g} s |"),
    ]  # fmt: skip
    for what, examples in (("lost", c.lost_examples), ("duplicated", c.duplicate_examples)):
        if examples:
            lines += ["", f"First records {what}:", ""]
            lines += [f"- `{x}`" for x in examples]
    lines += [
        "",
        "## Lag",
        "",
        "| while writing, s | p50 | p99 | max |",
        "|---|---:|---:|---:|",
        _spread("agent: `tablewatch_source_lag_seconds`", [s.lag for s in during]),
        _spread("agent: since the newest record it counted was written",
                [written_lag(s.t, s.events, w) for s in during]),
        _spread("tail consumer: since the newest line it printed was written",
                [written_lag(s.t, s.tail_lines, w) for s in during]),
        _spread("agent: `tablewatch_source_behind_bytes`, KiB", [s.behind for s in during],
                1 / 1024, ",.0f"),
        "",
        "## Memory, files, CPU",
        "",
        "| what | figure |",
        "|---|---:|",
        f"| agent RSS at the start / after the warm-up / at the end | {r.samples[0].rss:.1f} / "
        f"{ready[0].rss if ready else float('nan'):.1f} / {r.samples[-1].rss:.1f} MiB |",
        f"| agent RSS slope after the warm-up ({min(o.warmup, o.seconds / 3):g} s; least "
        f"squares) | {slope:+.3f} MiB/min |",
        f"| agent open fds: min / max (after the warm-up: {fd_spread(r)} apart) | "
        f"{min(fds)} / {max(fds)} |",
        f"| tail consumer: RSS at the end; open fds min / max | {r.samples[-1].tail_rss:.1f} MiB;"
        f" {min(s.tail_fds for s in r.samples)} / {max(s.tail_fds for s in r.samples)} |",
        f"| agent CPU, mean | {100 * cpu:.0f}% of one core |",
        "",
        "| minute | RSS MiB | fds | events | lag s | behind KiB | outbox |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    row_every = 300.0 if span >= 1800 else max(o.sample_every, span / 6)
    next_row = -1.0
    for s in r.samples:
        at = s.t - w.started
        if at >= next_row or s is r.samples[-1]:
            next_row = at + row_every - o.sample_every / 2
            when = f"{at / 60:.1f}" if s.t <= w.stopped else f"{at / 60:.1f} (caught up)"
            lines.append(f"| {when} | {s.rss:.1f} | {s.fds} | {s.events:,.0f} | "
                         f"{s.lag:.2f} | {s.behind / 1024:,.0f} | {s.outbox:.0f} |")  # fmt: skip
    lines += [
        "",
        "## Database flaps",
        "",
        f"Proxy: {r.proxy['accepted']} connections forwarded, {r.proxy['dropped']} cut by the "
        f"drops, {r.proxy['refused']} reset while down. /metrics read every {FLAP_POLL_S:g} s "
        "during a flap. Seconds to notice: from the drop to source_up 0 (first / last of the "
        "four database sources); to recover: from the restore to source_up 1.",
        "",
        "| # | minute | connections cut | noticed after, s | recovered after, s | not seen |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for i, f in enumerate(r.flaps, 1):
        down = sorted(t - f.dropped_at for t in f.down_at.values())
        up = sorted(t - f.restored_at for t in f.up_at.values())
        missing = [s for s in DB_SOURCES if s not in f.down_at]
        lines.append(
            f"| {i} | {(f.dropped_at - w.started) / 60:.1f} | {f.cut} | "
            + (f"{down[0]:.1f} / {down[-1]:.1f}" if down else "-")
            + " | "
            + (f"{up[0]:.1f} / {up[-1]:.1f}" if up else "-")
            + ("" if flap_recovered(f) or not down else " (not all back)")
            + f" | {', '.join(missing) or '-'} |"
        )
    if r.flapper_error:
        lines += ["", f"The flapper stopped: {r.flapper_error}"]
    lines += [
        "",
        "## Alerts",
        "",
        "| what | figure |",
        "|---|---:|",
        f"| alerts raised by the agent (distinct keys: log and API) | {a.raised} |",
        f"| of which about the {a.intruders} intruders | {a.intruders_paged} |",
        f"| delivered (distinct keys with a 2xx trigger at the receiver) | {a.delivered} |",
        f"| **alerts lost** | **{len(a.lost)}** |",
        f"| requests at the receiver; answered 503 | {a.requests}; {a.answered_503} |",
        f"| keys answered 503, then delivered on a retry | {a.retried_keys} |",
        f"| agent's delivery attempts (webhook): sent / retry / failed | {r.final['sent']:.0f} / "
        f"{r.final['retry']:.0f} / {r.final['failed']:.0f} |",
        f"| suppressed by flood control; outbox depth at the end | {r.final['suppressed']:.0f}; "
        f"{r.final['outbox']:.0f} |",
        "| outbox drained after the catch-up | "
        + (f"{r.drained_s:.1f} s |" if r.drained_s == r.drained_s
           else f"not in {o.drain_timeout:g} s |"),
        f"| agent exit status on SIGTERM; tail consumer's | {r.agent_status}; {r.tail_status} |",
    ]  # fmt: skip
    if a.lost:
        lines += ["", f"Lost alerts: {', '.join(a.lost[:10])}"]
    if a.unknown:
        lines += ["", f"Keys at the receiver the agent never reported: {', '.join(a.unknown)}"]
    lines += ["", "## Verdict", ""]
    lines += [f"- {what}: {'MET' if met else 'MISSED'}" for what, met, _ in verdicts(r)]
    lines += ["", f"The agent logged {r.source_errors} `source_state` errors of its database "
              f"sources (the flaps: {len(DB_SOURCES)} a flap when each one notices)"
              + (f"; its other warnings and errors ({len(r.troubles)}), the first few:"
                 if r.troubles else " and no other warning or error.")]  # fmt: skip
    if r.troubles:
        lines += [""] + [f"- `{x}`" for x in r.troubles[:8]]
    if r.replay_notes.strip():
        lines += ["", "`replay --events` said on stderr:", "", "```", r.replay_notes.strip(), "```"]
    return lines


def raw(r: Result) -> dict[str, Any]:
    data = asdict(r)
    data["written"]["timeline"] = None
    data["options"] = asdict(r.options)
    return data


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _terminated(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def parse_options(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 minutes at 1,000/s, rotating every 20 s, a flap every 30 s for "
                        "8 s, an intruder every ~20 s, database polls every 1 s")  # fmt: skip
    parser.add_argument("--minutes", type=float, help="how long the writer writes (60)")
    parser.add_argument("--rate", type=int, help="csvlog records per second (5000)")
    parser.add_argument("--rotate-every", type=float, help="seconds per log file (300)")
    parser.add_argument("--flap-every", type=float, help="seconds between drops (120)")
    parser.add_argument("--flap-down", type=float, help="seconds each drop lasts (20)")
    parser.add_argument("--fail-rate", type=float, help="share of webhook requests answered "
                        "503 (0.2)")  # fmt: skip
    parser.add_argument("--seed", type=int, help="the workload's and the receiver's (1)")
    parser.add_argument("--intruder-every", type=float,
                        help="mean seconds between whole-table reads by never-seen principals "
                        "(120; each gap 0.5-1.5 times it)")  # fmt: skip
    parser.add_argument("--db-interval", help="the agent's [database] poll intervals, e.g. 2s "
                        "(default: its own: 10s, 10s, 2s, 10s)")  # fmt: skip
    parser.add_argument("--sample-every", type=float, help="seconds between samples (5)")
    parser.add_argument("--warmup", type=float, help="seconds left out of the RSS slope (300; at "
                        "most a third of the run)")  # fmt: skip
    parser.add_argument("--catchup-timeout", type=float, help="seconds (300)")
    parser.add_argument("--drain-timeout", type=float, help="seconds (300)")
    parser.add_argument("--out", type=Path, help="the report (bench/results/soak-DATE.md)")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs, state)")
    args = parser.parse_args(argv)
    options = QUICK if args.quick else Options()
    given = {
        "seconds": None if args.minutes is None else args.minutes * 60,
        "rate": args.rate,
        "rotate_every": args.rotate_every,
        "flap_every": args.flap_every,
        "flap_down": args.flap_down,
        "fail_rate": args.fail_rate,
        "seed": args.seed,
        "intruder_every": args.intruder_every,
        "db_interval": args.db_interval,
        "sample_every": args.sample_every,
        "warmup": args.warmup,
        "catchup_timeout": args.catchup_timeout,
        "drain_timeout": args.drain_timeout,
    }
    options = replace(options, **{k: v for k, v in given.items() if v is not None})
    try:
        options.check()
    except ValueError as exc:
        parser.error(str(exc))
    return options, args


def main() -> None:
    options, args = parse_options()
    reason = available()
    if reason is not None:
        sys.exit(f"soak_bench: {reason}")
    signal.signal(signal.SIGTERM, _terminated)
    OUT.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="soak-bench-", dir=OUT))
    pg = PgCluster(settings=CLUSTER_SETTINGS)

    def say(text: str) -> None:
        print(f"soak_bench: {text}", file=sys.stderr, flush=True)

    try:
        pg.start()
        say(f"cluster up on port {pg.port}; folder {folder}")
        result = soak(options, pg, folder, say)
    finally:
        pg.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    command = " ".join([".venv/bin/python", "bench/soak_bench.py", *map(shlex.quote, sys.argv[1:])])
    text = "\n".join(report(result, command)) + "\n"
    print(text)
    name = "soak-quick" if args.quick else "soak"  # a try-out never overwrites the hour's
    out = args.out or RESULTS / f"{name}-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text(text)
    (OUT / "soak-bench.json").write_text(json.dumps(raw(result), default=str))
    say(f"written: {out}" + (f"; kept {folder}" if args.keep else ""))
    sys.exit(1 if failed(result) else 0)


if __name__ == "__main__":
    main()
