#!/usr/bin/env python3
"""Agent bench: `tablewatch run` on a csvlog growing at 20,000 records/s: CPU, RSS, lag, scrape.

    .venv/bin/python bench/agent_bench.py [--seconds 300] [--rate 20000] [--warmup 30]

The agent runs as deployed (`python -m tablewatch.cli --config SETTINGS run --log-format json`,
csvlog, `start = "beginning"`, the default poll interval, /metrics on a free local port, the
default local alert sink) in a temp dir under `bench/out/`. A writer in its own process appends
PostgreSQL 15 csvlog records stamped with the clock, `--rate` per second in `--chunk-ms` chunks:
key lookups (BIND) from a pool of app connections, joins, name searches, reads of an unwatched
table, analysts' SELECTs (SESSION + OBJECT), short-lived billing connections, a whole-table read
every 15 s, and the server's connection and `duration:` lines. Every second this process reads
the agent's CPU and RSS from /proc and times a GET of /metrics (lag, bytes behind, events).
The lag is also measured without the agent's word: the writer keeps (write time, records about
crm.client_list so far), so the newest record `tablewatch_events_total` counts has a write time.
When the writer stops, the catch-up time is how long the agent takes to count every record.
For reference, the floors: the writer's own CPU, a `tail -F FILE > /dev/null` over the same run,
and Python's csv.reader over the log afterwards (as in replay_bench: how fast the machine was).

Targets (project issue): lag under 1 s (p99 of the samples) and RSS flat after the warm-up.
Report: stdout and `bench/results/agent-DATE.md`; raw samples in `bench/out/agent-bench.json`.
"""

from __future__ import annotations

import argparse
import csv
import io
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
import time
import urllib.request
from bisect import bisect_left
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from replay_bench import cpu_model  # noqa: E402

from collectors.csvlog_writer import (  # noqa: E402
    Backend,
    Pids,
    Stamps,
    Statement,
    audit_params,
    lit,
    row,
)
from tablewatch.pgcluster import free_port  # noqa: E402

OUT = HERE / "out"
RESULTS = HERE / "results"
WATCHED, ORDERS, ROWS = "crm.client_list", "crm.orders", 50_000
TICKS = os.sysconf("SC_CLK_TCK")
FLAT_MIB_PER_MIN = 1.0
"""RSS counts as flat when its least-squares slope after the warm-up stays under this."""

# --------------------------------------------------------------------------------------------
# The writer (its own process)
# --------------------------------------------------------------------------------------------

LOOKUP = Statement("SELECT id, name, email, phone FROM crm.client_list WHERE id = $1", (WATCHED,))
JOIN = Statement(
    "SELECT c.id, c.name, o.total FROM crm.client_list c JOIN crm.orders o ON o.client_id = c.id"
    " WHERE c.id = $1 ORDER BY o.created_at DESC LIMIT $2",
    (WATCHED, ORDERS),
)
SEARCH = Statement(
    "SELECT id, name FROM crm.client_list WHERE name ILIKE $1 AND region = $2 LIMIT 20", (WATCHED,)
)
ORDERS_BY_CLIENT = Statement(
    "SELECT id, total, status FROM crm.orders WHERE client_id = $1 ORDER BY created_at DESC",
    (ORDERS,),
)
ANALYST = [
    Statement(text, (WATCHED,), tag="SELECT")
    for text in (
        "SELECT id, name, email FROM crm.client_list WHERE region = 'emea' AND created_at > "
        "now() - interval '7 days'",
        "SELECT region, count(*)\n  FROM crm.client_list\n WHERE country = 'Österreich'\n"
        " GROUP BY 1",
        'SELECT "id", "name" FROM "crm"."client_list" WHERE email LIKE \'%@example.com\' LIMIT 50',
    )
]
BULK = [
    ("reporting", "10.0.4.5", "hourly-agg", Statement("SELECT * FROM crm.client_list", (WATCHED,),
                                                       tag="SELECT")),
    ("etl", "10.0.4.9", "airflow", Statement("SELECT id, name, email, region FROM crm.client_list",
                                             (WATCHED,), tag="SELECT")),
]  # fmt: skip
BULK_EVERY_MS = 15_000
SEARCH_TERMS = ["%smith%", "%O'Brien%", '%"Acme, Inc."%', "%Müller%", "%garcía%", "%ltd%"]
REGIONS = ["emea", "apac", "amer", "latam"]
ANALYSTS = [("alice", "psql"), ("zoë", "DBeaver"), ("bob", "psql"), ("chen", "pgAdmin 4")]


class Workload:
    """Statements of a busy CRM database, as PG15 csvlog rows (pgaudit object audit of
    crm.client_list and crm.orders; session audit of reads for the analysts)."""

    def __init__(self, seed: int, now_ms: int) -> None:
        self.rng = rng = random.Random(seed)
        self.pids = Pids(rng, 20_000)
        self.stamps = Stamps()
        self.stamp = self.stamps(now_ms)
        self.buf: list[str] = []
        self.records = self.watched = 0
        since = now_ms - 3_600_000
        self.app = [
            self._backend("crm_app", f"10.0.1.{11 + i % 12}", "crm-web", since) for i in range(240)
        ]
        self.orders = [
            self._backend("orders_svc", f"10.0.3.{11 + i % 4}", "orders-api", since)
            for i in range(60)
        ]
        self.left = {id(s): rng.randint(2_000, 20_000) for s in self.app}
        self.analysts = [
            self._backend(user, f"192.168.20.{10 + i}", app, since)
            for i, (user, app) in enumerate(ANALYSTS)
        ]
        self.next_bulk = now_ms + 5_000
        self.bulks = 0

    def _backend(self, user: str, host: str, app: str, start_ms: int) -> Backend:
        return Backend(user, host, app, start_ms, self.pids(), self.rng)

    def emit(self, s: Backend, tag: str, msg: str, **columns: Any) -> None:
        self.buf.append(row(self.stamp, s, tag, msg, **columns))
        self.records += 1

    def audit(self, s: Backend, st: Statement, params: str, *, session: bool = False) -> None:
        """pgaudit's records of one statement: one per relation (SESSION, then OBJECT)."""
        s.stmt_id += 1
        s.lxid += 1
        vx = s.vxid()
        for obj in st.objects:
            common = f"{s.stmt_id},1,{st.cls},{st.command},TABLE,{obj},{st.quoted},{params}"
            for kind in ("SESSION", "OBJECT") if session else ("OBJECT",):
                self.emit(s, st.tag, f"AUDIT: {kind},{common}", vxid=vx, qid=st.qid)
                self.watched += obj == WATCHED

    def connect(self, user: str, host: str, app: str, now_ms: int) -> Backend:
        s = self._backend(user, host, app, now_ms)
        head, tail = s.head, s.tail
        s.head, s.tail = f",,,{s.pid},{s.conn},{s.sid},", f',"",{lit("client backend")},,'
        self.emit(s, '""', f"connection received: host={host} port={s.port}")
        s.head = head
        self.emit(s, '"authentication"', f"connection authorized: user={user} database=crm "
                  f"application_name={app} SSL enabled (protocol=TLSv1.3, "
                  "cipher=TLS_AES_256_GCM_SHA384, bits=256)", vxid=f"{s.backend_id}/0")  # fmt: skip
        s.tail = tail
        return s

    def disconnect(self, s: Backend, now_ms: int) -> None:
        h, rem = divmod(now_ms - s.start_ms, 3_600_000)
        m, rem = divmod(rem, 60_000)
        self.emit(s, '"idle"', f"disconnection: session time: {h}:{m:02d}:{rem / 1000:06.3f} "
                  f"user={s.user} database=crm host={s.host} port={s.port}")  # fmt: skip

    def step(self, now_ms: int) -> None:
        """One statement (or one short billing job)."""
        rng = self.rng
        x = rng.random()
        if x < 0.077:
            s = rng.choice(self.orders)
            self.audit(s, ORDERS_BY_CLIENT, str(rng.randint(1, 400_000)))
            return
        if x < 0.078:
            s = rng.choice(self.analysts)
            self.audit(s, rng.choice(ANALYST), "<none>", session=True)
            return
        if x < 0.0785:  # a billing job: its own connection, a few lookups, parameters not logged
            s = self.connect("billing_svc", f"10.0.2.{21 + rng.randint(0, 1)}", "billing-worker",
                             now_ms)  # fmt: skip
            for _ in range(rng.randint(3, 8)):
                self.audit(s, LOOKUP, "<not logged>")
            self.disconnect(s, now_ms)
            return
        i = rng.randrange(len(self.app))
        s = self.app[i]
        self.left[id(s)] -= 1
        if self.left[id(s)] <= 0:  # the pool recycles a connection
            self.disconnect(s, now_ms)
            del self.left[id(s)]
            s = self.app[i] = self.connect("crm_app", s.host, "crm-web", now_ms)
            self.left[id(s)] = rng.randint(2_000, 20_000)
        if x < 0.93:
            key = str(rng.randint(1, ROWS))
            self.audit(s, LOOKUP, key)
            if x > 0.925:  # slow: log_min_duration_statement
                self.emit(s, '"SELECT"', f"duration: {rng.uniform(250, 900):.3f} ms  execute "
                          f"<unnamed>: {LOOKUP.text}", detail=f"parameters: $1 = '{key}'",
                          vxid=s.vxid(), qid=LOOKUP.qid)  # fmt: skip
        elif x < 0.97:
            self.audit(s, JOIN, audit_params([str(rng.randint(1, ROWS)), "20"]))
        else:
            self.audit(s, SEARCH, audit_params([rng.choice(SEARCH_TERMS), rng.choice(REGIONS)]))

    def bulk(self) -> None:
        user, host, app, st = BULK[self.bulks % len(BULK)]
        self.bulks += 1
        s = self._backend(user, host, app, self.next_bulk - 2_000)
        self.audit(s, st, "<none>")


@dataclass
class Written:
    """What the writer reports when it stops."""

    started: float
    stopped: float
    records: int
    watched: int
    bytes: int
    cpu_s: float
    max_late_s: float
    timeline: list[tuple[float, int]]
    """(wall time after the write, records about crm.client_list written so far), per chunk."""


def write_log(path: str, rate: int, seconds: float, chunk_ms: int, seed: int, pipe: Any) -> None:
    """Append `rate` records/s to `path` for `seconds`; report a `Written` on `pipe`."""
    chunk = chunk_ms / 1000
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start = time.time()
    work = Workload(seed, int(start * 1000))
    pipe.send(start)
    timeline: list[tuple[float, int]] = []
    size = max_late = 0.0
    last_ms, tick = int(start * 1000), start
    cpu0 = time.process_time()
    while (now := time.time()) < start + seconds:
        now_ms = int(now * 1000)
        target = int(rate * (now - start))
        todo = target - work.records
        first = work.records
        while work.records < target:  # stamps spread over the interval, as the server wrote them
            work.stamp = work.stamps(last_ms + (now_ms - last_ms) * (work.records - first) // todo)
            work.step(now_ms)
        if now_ms >= work.next_bulk:
            work.bulk()
            work.next_bulk += BULK_EVERY_MS
        data = "".join(work.buf).encode()
        work.buf.clear()
        os.write(fd, data)
        size += len(data)
        timeline.append((time.time(), work.watched))
        last_ms = now_ms
        tick += chunk
        late = time.time() - tick
        max_late = max(max_late, late)
        if late < 0:
            time.sleep(-late)
    os.close(fd)
    pipe.send(
        Written(start, time.time(), work.records, work.watched, int(size),
                time.process_time() - cpu0, max_late, timeline)
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def floor_us(path: Path, limit: int = 64 << 20) -> float:
    """CPU µs per record of Python's csv.reader over the log's first `limit` bytes: the replay
    bench's floor, to tell how fast the machine was (a shared VM varies by 50%)."""
    with path.open(encoding="utf-8", newline="") as f:
        text = f.read(limit)
    started = time.process_time()
    records = sum(1 for _ in csv.reader(io.StringIO(text, newline="")))
    return 1e6 * (time.process_time() - started) / max(records, 1)


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS


def read_offset(checkpoint: Path) -> int | None:
    """Where the agent's saved checkpoint says it is in the file it reads."""
    try:
        source = json.loads(checkpoint.read_text())["source"]
    except (OSError, ValueError, KeyError):
        return None
    return next((f["offset"] for f in source["files"] if [f["dev"], f["ino"]] == source["current"]),
                None)  # fmt: skip


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


METRICS = {
    "tablewatch_events_total": "events",
    "tablewatch_source_lag_seconds": "lag",
    "tablewatch_source_behind_bytes": "behind",
    "tablewatch_source_records_total": "records",
    "tablewatch_source_parse_errors_total": "malformed",
}


def scrape(port: int) -> tuple[float, dict[str, float]]:
    """(seconds for the whole GET, the values of METRICS)."""
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    took = time.perf_counter() - started
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ") if "{" not in line else line.partition("{")
        if name in METRICS:
            values[METRICS[name]] = float(line.rsplit(" ", 1)[1])
    values["bytes"] = len(text)
    return took, values


@dataclass
class Sample:
    t: float
    """Wall time when the scrape's answer was in."""
    agent_cpu: float
    rss: float
    scrape: float
    events: float
    lag: float
    behind: float
    records: float
    writer_cpu: float
    tail_cpu: float
    machine: float
    """CPU seconds busy on all cores (cumulative)."""
    behind_own: float
    """File size minus the offset in the agent's saved checkpoint (NaN before the first)."""


class Agent:
    """`tablewatch run` on a settings file in `folder`, its JSON log in folder/agent.log."""

    def __init__(self, folder: Path, pattern: str, port: int, poll: str) -> None:
        self.config = folder / "settings.toml"
        self.config.write_text(
            f'[[tables]]\nname = "{WATCHED}"\nrows = {ROWS}\n'
            f'[audit_log]\npath = "{pattern}"\nformat = "csvlog"\nstart = "beginning"\n'
            + (f'poll_interval = "{poll}"\n' if poll else "")
            + f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
            f'[api]\nlisten = ""\n[state]\ndir = "{folder}/state"\n'
        )
        self.command = [sys.executable, "-m", "tablewatch.cli", "--config", str(self.config),
                        "run", "--log-format", "json"]  # fmt: skip
        self.log = folder / "agent.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT)}, stderr=err
            )
        self.port = port
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited: {self.log.read_text()[-2000:]}")
            try:
                scrape(port)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def scrape(self) -> tuple[float, dict[str, float]]:
        """`scrape()`, or the agent's last words if it has gone."""
        try:
            return scrape(self.port)
        except OSError:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited: {self.log.read_text()[-2000:]}") from None
            raise

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


STAGES = (
    ("reading and parsing the log (`LogTail._step`)", "LogTail._step"),
    ("of which the nested pgaudit CSV and events (`EventBuilder.audits`)", "EventBuilder.audits"),
    ("the engine and the live view (`LiveEngine.feed`)", "LiveEngine.feed"),
    ("of which detection (`Engine.process`)", "Engine.process"),
    ("saving the checkpoint, fsync included (`CheckpointStore.save`)", "CheckpointStore.save"),
    ("/metrics (`metrics_handler`)", "metrics_handler.<locals>.metrics"),
    ("idle: the event loop waiting (`select`)", "EpollSelector.select"),
)


def profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the agent's wall time (idle included) for `seconds`, raw stacks to `out`."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate",
         "100", "--idle", "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def profile_lines(raw: Path) -> list[str]:
    """The main thread's wall time by stage and the top functions by self time."""
    total = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[0].startswith("_run_module_as_main"):
            continue  # the worker threads of asyncio.to_thread, idle or reading
        n = int(count)
        total += n
        names = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")" for f in frames]
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + n
        own[names[-1]] = own.get(names[-1], 0) + n
    if not total:
        return ["", "(py-spy took no samples)"]

    def share(function: str) -> float:
        return 100 * sum(n for k, n in inclusive.items() if k.startswith(function + " (")) / total

    lines = [
        "",
        f"## Where the agent's time goes (py-spy, {total:,} samples of its main thread, "
        "wall time, idle included)",
        "",
        "| stage | share of wall time |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {share(function):.1f}% |" for label, function in STAGES]
    lines += ["", "| function (self time) | share |", "|---|---:|"]
    top = sorted(own.items(), key=lambda kv: -kv[1])[:15]
    lines += [f"| `{name}` | {100 * n / total:.1f}% |" for name, n in top]
    return lines  # fmt: skip


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def written_lag(sample: Sample, w: Written, stamps: list[float], counts: list[int]) -> float:
    """Seconds since the newest record the agent has counted was written."""
    i = bisect_left(counts, sample.events)
    return sample.t - stamps[min(i, len(stamps) - 1)] if sample.events else sample.t - w.started


def run(args: argparse.Namespace, folder: Path) -> tuple[list[str], dict[str, Any]]:
    log_dir = folder / "log"
    log_dir.mkdir()
    path = log_dir / "postgresql-bench.csv"
    path.touch()
    load = os.getloadavg()[0]
    agent = Agent(folder, str(log_dir / "*.csv"), free_port(), args.poll_interval)
    checkpoint = folder / "state" / "audit_log.checkpoint.json"
    tail = None
    if args.tail:
        tail = subprocess.Popen(["tail", "-F", str(path)], stdout=subprocess.DEVNULL)
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    writer = ctx.Process(
        target=write_log,
        args=(str(path), args.rate, args.seconds, args.chunk_ms, args.seed, theirs),
    )
    samples: list[Sample] = []
    spy: subprocess.Popen[bytes] | None = None
    catchup: list[tuple[float, float]] = []
    try:
        writer.start()
        assert writer.pid is not None
        started: float = mine.recv()
        if args.profile:
            spy = profiler(agent.proc.pid, args.seconds, OUT / "agent-profile.txt")
        tick = started
        written: Written | None = None
        while written is None:
            tick += 1.0
            if mine.poll(max(0.0, tick - time.time())):
                written = mine.recv()
                break
            took, m = agent.scrape()
            offset = read_offset(checkpoint)
            size = path.stat().st_size
            samples.append(
                Sample(time.time(), cpu_seconds(agent.proc.pid), rss_mib(agent.proc.pid), took,
                       m.get("events", 0), m.get("lag", float("nan")), m.get("behind", 0),
                       m.get("records", 0), cpu_seconds(writer.pid),
                       cpu_seconds(tail.pid) if tail else float("nan"), machine_busy(),
                       size - offset if offset is not None else float("nan"))
            )  # fmt: skip
        writer.join()
        deadline = written.stopped + args.catchup_timeout
        while time.time() < deadline:
            _, m = agent.scrape()
            catchup.append((time.time() - written.stopped, m.get("events", 0)))
            if m.get("events", 0) >= written.watched:
                break
            time.sleep(0.05)
        time.sleep(1.0)  # nothing counted twice: the count must stay where it is
        _, final = agent.scrape()
        final["rss"] = rss_mib(agent.proc.pid)
        tail_cpu = cpu_seconds(tail.pid) if tail else float("nan")
    finally:
        if writer.is_alive():
            writer.terminate()
        if tail is not None:
            tail.terminate()
            tail.wait()
        if spy is not None:
            spy.wait(60)
        status = agent.stop()
    final["floor_us"] = floor_us(path)
    return report(args, load, agent, status, written, samples, catchup, final, tail_cpu)


def report(
    args: argparse.Namespace,
    load: float,
    agent: Agent,
    status: int,
    w: Written,
    samples: list[Sample],
    catchup: list[tuple[float, float]],
    final: dict[str, float],
    tail_cpu: float,
) -> tuple[list[str], dict[str, Any]]:
    span = w.stopped - w.started
    warmup = min(args.warmup, args.seconds / 3)
    stamps = [t for t, _ in w.timeline]
    counts = [n for _, n in w.timeline]
    own_lag = [written_lag(s, w, stamps, counts) for s in samples]
    metric_lag = [s.lag for s in samples if s.lag == s.lag] or [float("nan")]
    behind_own = [s.behind_own for s in samples if s.behind_own == s.behind_own] or [float("nan")]
    steady = [(a, b) for a, b in zip(samples, samples[1:], strict=False)
              if a.t - w.started >= warmup]  # fmt: skip

    def per_second(field: str) -> list[float]:
        return [(getattr(b, field) - getattr(a, field)) / (b.t - a.t) for a, b in steady]

    def mean(field: str) -> float:  # over the whole steady part: sampling jitter cancels out
        first, last = steady[0][0], steady[-1][1]
        return float(getattr(last, field) - getattr(first, field)) / (last.t - first.t)

    cpu = [100 * x for x in per_second("agent_cpu")]
    rss = [(s.t - w.started, s.rss) for s in samples if s.t - w.started >= warmup]
    slope = slope_per_minute(rss)
    caught = next((t for t, n in catchup if n >= w.watched), None)
    events = final.get("events", 0)
    records_in = samples[-1].records - samples[0].records
    agent_cpu_s = samples[-1].agent_cpu - samples[0].agent_cpu
    log = agent.lines()
    stopped = next((x["events"] for x in log if x["event"] == "stopped"), "?")
    troubles = [x for x in log if x["level"] in ("warning", "error")]
    per_record = 1e6 * agent_cpu_s / max(records_in, 1)
    lag_p99 = max(pct(own_lag, 99), pct(metric_lag, 99))

    def spread(what: str, values: list[float], scale: float = 1) -> str:
        v = [x * scale for x in values]
        return (f"| {what} | {pct(v, 50):,.0f} | {pct(v, 95):,.0f} | {pct(v, 99):,.0f} | "
                f"{max(v):,.0f} |")  # fmt: skip

    shown = [".venv/bin/python", *agent.command[1:4], "SETTINGS", *agent.command[5:]]
    lines = [
        f"# Agent bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} CPU ({cpu_model()}), Python {platform.python_version()}, "
        f"load average {load:.2f} at the start.",
        "Command: `.venv/bin/python bench/agent_bench.py "
        + " ".join(shlex.quote(a) for a in sys.argv[1:]).strip()
        + "`",
        f"Agent: `{' '.join(shown)}` (csvlog, start at the beginning, poll interval "
        f"{args.poll_interval or '250ms (default)'}, "
        "/metrics on 127.0.0.1, the local alert sink).",
        "",
        f"Load: {w.records:,} csvlog records in {span:.1f} s, **{w.records / span:,.0f} "
        f"records/s** (asked {args.rate:,}), {w.bytes / span / 2**20:.1f} MiB/s; {w.watched:,} "
        f"about {WATCHED} ({100 * w.watched / w.records:.1f}%); written every {args.chunk_ms} ms "
        f"(at worst {w.max_late_s * 1000:,.0f} ms late). {len(samples)} samples, one a second; "
        f"CPU and RSS leave out the first {warmup:.0f} s.",
        "",
        "| per sample | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|",
        spread("lag, ms: `tablewatch_source_lag_seconds`", metric_lag, 1000),
        spread("lag, ms: since the newest counted record was written", own_lag, 1000),
        spread("/metrics scrape, ms (the whole GET)", [s.scrape for s in samples], 1000),
        spread(
            "behind, KiB: `tablewatch_source_behind_bytes`", [s.behind for s in samples], 1 / 1024
        ),
        spread("behind, KiB: file size - offset of the saved checkpoint", behind_own, 1 / 1024),
        spread("agent CPU, % of one core", cpu),
        "",
        "| what | figure |",
        "|---|---:|",
        f"| agent CPU, mean | {100 * mean('agent_cpu'):.0f}% of one core |",
        f"| agent CPU per csvlog record | {per_record:.1f} µs |",
        f"| busy cores on the machine, mean (everything running) | "
        f"{mean('machine'):.2f} of {os.cpu_count()} |",
        f"| agent RSS after the warm-up / at the end | {rss[0][1]:.1f} / {rss[-1][1]:.1f} MiB |",
        f"| agent RSS slope after the warm-up (least squares) | {slope:+.2f} MiB/min |",
        f"| events counted / records about {WATCHED} written | {events:,.0f} / {w.watched:,} |",
        f"| csvlog records read / written; parse errors | {final.get('records', 0):,.0f} / "
        f"{w.records:,}; {final.get('malformed', 0):,.0f} |",
        "| catch-up once the writer stopped | "
        + (f"{caught:.2f} s |" if caught is not None else f"not in {args.catchup_timeout:.0f} s |"),
        f"| agent exit status; events in its `stopped` line | {status}; {stopped:,} |",
        f"| floor: the writer's CPU | {100 * w.cpu_s / span:.0f}% of one core |",
        "| floor: Python's csv.reader over the log, after the run | "
        f"{final['floor_us']:.1f} µs per record |",
        "| floor: `tail -F FILE > /dev/null` CPU | "
        + (f"{100 * tail_cpu / span:.1f}% of one core |" if tail_cpu == tail_cpu else "not run |"),
        "",
        f"- lag under 1 s (p99 of both measures: {lag_p99:.2f} s): "
        f"{'MET' if lag_p99 < 1 else 'MISSED'}",
        f"- RSS flat after the warm-up (slope under {FLAT_MIB_PER_MIN} MiB/min: {slope:+.2f}): "
        f"{'MET' if abs(slope) < FLAT_MIB_PER_MIN else 'MISSED'}",
        f"- every record counted, once: {'MET' if events == w.watched else 'MISSED'}",
    ]
    if args.profile:
        lines += profile_lines(OUT / "agent-profile.txt")
    if troubles:
        lines += ["", f"The agent's warnings and errors ({len(troubles)}), the first few:", ""]
        lines += [f"- `{json.dumps(x, ensure_ascii=False)[:300]}`" for x in troubles[:5]]
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "own_lag": own_lag,
           "written": {**asdict(w), "timeline": None}, "samples": [asdict(s) for s in samples],
           "catchup": catchup, "final": final}  # fmt: skip
    return lines, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="how long the writer writes")
    parser.add_argument("--rate", type=int, default=20_000, help="csvlog records per second")
    parser.add_argument(
        "--warmup",
        type=float,
        default=30,
        help="seconds left out of CPU and RSS (at most a third of the run)",
    )
    parser.add_argument("--chunk-ms", type=int, default=20, help="how often the writer writes")
    parser.add_argument("--catchup-timeout", type=float, default=120)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--poll-interval", default="", help="the agent's, e.g. 50ms (default: its own)"
    )
    parser.add_argument(
        "--no-tail", dest="tail", action="store_false", help="leave out the tail -F reference"
    )
    parser.add_argument("--out", type=Path, help="the report (default bench/results/agent-DATE.md)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the agent while the writer writes (pip install py-spy)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (log, state)")
    args = parser.parse_args()  # fmt: skip
    OUT.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="agent-bench-", dir=OUT))
    try:
        lines, raw = run(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or RESULTS / f"agent-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text(text)
    (OUT / "agent-bench.json").write_text(json.dumps(raw))
    if args.keep:
        print(f"kept {folder}")


if __name__ == "__main__":
    main()
