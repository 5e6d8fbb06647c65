#!/usr/bin/env python3
"""Resource bounds: 100,000 principals, a 1 MB statement, a 10,000-line statement.

    .venv/bin/python bench/bounds_bench.py [--seconds 20] [--size 100x30]

Two parts, one report (stdout and bench/results/bounds-<date>.md):

- **The dashboard** (bench/dashboard_bench.py, each case in a fresh process so its peak RSS is
  its own): 10,000 principals (the reference), 100,000 principals, and 10,000 principals plus a
  critical reader whose every read (one per 100 ms batch) is a 1 MB statement, or a statement of
  10,000 lines, full of markup and escape sequences: frame time (the refresh handler's wall time,
  CPU per refresh with rendering), `live.snapshot()`, key to screen, the longest full garbage
  collection, and the process's peak RSS.
- **The pipeline** (in this process): for each statement (a normal lookup, 1 MB, 10,000 lines)
  as a pgaudit record in each log format: parse time per record (split + parse, best of
  `--repeat`), then 1,000 such events from 1,000 distinct readers through `LiveEngine.feed` and
  one `snapshot()`: time per event and the memory they leave behind (tracemalloc: what stays
  allocated after the feed and a snapshot), per event. Bounded means: a hostile statement costs
  a bounded amount of memory however long it is (the engine keeps its shape, the live view a cut
  copy), and the screen's frame time does not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from dashboard_bench import hostile_statement  # noqa: E402
from replay_bench import cpu_model  # noqa: E402

from alerts.center import AlertCenter  # noqa: E402
from alerts.local import LocalSink  # noqa: E402
from alerts.outbox import OUTBOX_FILE, Outbox  # noqa: E402
from alerts.rules import Rules  # noqa: E402
from collectors.events import EventBuilder, ParseStats  # noqa: E402
from collectors.logformats import make_format  # noqa: E402
from core.engine import Engine, EngineConfig  # noqa: E402
from core.events import AccessEvent, EventKind  # noqa: E402
from core.tables import TableName, WatchedTables  # noqa: E402
from tablewatch.live import LiveEngine, wall_us  # noqa: E402
from tests.unit.pglog import FORMATS, READER, STDERR_PREFIX, audit_message  # noqa: E402

OUT = HERE / "out"
WATCHED, ROWS = "crm.client_list", 50_000
LOOKUP = "SELECT id, name, email FROM crm.client_list WHERE id = $1"
CASES = (
    ("10,000 principals (reference)", ["--principals", "10000"]),
    ("100,000 principals", ["--principals", "100000"]),
    ("10,000 principals + a 1 MB statement every 100 ms", ["--hostile", "1mb"]),
    ("10,000 principals + a 10,000-line statement every 100 ms", ["--hostile", "lines"]),
)


def dashboard(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each case in its own process: dashboard_bench's figures, with the case's label."""
    results = []
    for label, extra in CASES:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [
                sys.executable, str(HERE / "dashboard_bench.py"), "--seconds", str(args.seconds),
                "--presses", "21", "--size", args.size, "--json", out.name, *extra,
            ]  # fmt: skip
            started = time.monotonic()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            figures = json.loads(Path(out.name).read_text())
        figures["label"] = label
        figures["wall_s"] = time.monotonic() - started
        print(f"{label}: {json.dumps(figures)}", flush=True)
        results.append(figures)
    return results


def parse_seconds(fmt: str, statement: str, repeat: int) -> float:
    """Best time to split and parse one record holding `statement`."""
    record = FORMATS[fmt](audit_message(statement, rows=ROWS), READER)
    best = float("inf")
    for _ in range(repeat):
        parser = make_format(
            fmt,
            EventBuilder(WatchedTables([TableName.parse(WATCHED)]), ParseStats()),
            STDERR_PREFIX,
        )
        started = time.perf_counter()
        records, _ = parser.split(record, final=True)
        events = parser.parse(records)
        best = min(best, time.perf_counter() - started)
        assert len(events) == 1 and events[0].statement == statement, fmt
    return best


def live_engine(folder: Path) -> LiveEngine:
    engine = Engine(EngineConfig(tables=(TableName.parse(WATCHED, ROWS),)))
    center = AlertCenter(
        Outbox(folder / OUTBOX_FILE),
        [LocalSink(folder / "alerts.jsonl")],
        Rules(page_on=None),
        host="bench",
    )
    return LiveEngine(engine, center)


def retained(statement: str, readers: int) -> tuple[float, float]:
    """(µs per event through LiveEngine.feed, bytes per event still allocated after the feed
    and a snapshot), for one read by each of `readers` distinct readers. Each read has its own
    copy of the statement (as the parser makes), made inside the measured window and dropped
    once fed: what stays is what the engine and the live view keep."""
    now = wall_us()

    def event(i: int) -> AccessEvent:
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        return AccessEvent(
            now - (readers - i) * 1000, EventKind.AUDIT, f"user{i}", "crm", address, "psql",
            f"s{i}", "OBJECT", 1, 1, "READ", "SELECT", "TABLE", WATCHED, f"{statement} -- {i}",
            None, ROWS,
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        live = live_engine(Path(tmp))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        took = 0.0
        for at in range(0, readers, 100):
            batch = [event(i) for i in range(at, min(at + 100, readers))]
            started = time.perf_counter()
            live.feed(batch)
            took += time.perf_counter() - started
            del batch
        asyncio.run(live.snapshot())
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del live
    return took / readers * 1e6, (after - before) / readers


def pipeline(args: argparse.Namespace) -> list[str]:
    statements = [
        ("a key lookup", LOOKUP),
        ("1 MB, markup and escapes", hostile_statement("1mb") or ""),
        ("10,000 lines", hostile_statement("lines") or ""),
    ]
    lines = [
        "| statement | chars | csvlog parse ms | jsonlog parse ms | stderr parse ms | "
        "feed µs/event | retained bytes/event |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, text in statements:
        parse = [parse_seconds(fmt, text, args.repeat) * 1000 for fmt in FORMATS]
        feed_us, kept = retained(text, args.readers)
        print(f"{label}: parse {parse} ms, feed {feed_us:.0f} µs, kept {kept:,.0f} B", flush=True)
        lines.append(
            f"| {label} | {len(text):,} | "
            + " | ".join(f"{ms:,.2f}" for ms in parse)
            + f" | {feed_us:,.0f} | {kept:,.0f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="per dashboard case")
    parser.add_argument("--size", default="100x30")
    parser.add_argument("--repeat", type=int, default=5, help="parse: best of")
    parser.add_argument("--readers", type=int, default=1000, help="pipeline: distinct readers")
    parser.add_argument("--only", choices=("dashboard", "pipeline"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    stamp = datetime.now(UTC)
    lines = [
        f"# Resource bounds bench, {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} CPU, Python "
        f"{platform.python_version()}; load at start {os.getloadavg()[0]:.2f}",
        f"Command: .venv/bin/python bench/bounds_bench.py {' '.join(sys.argv[1:])}".rstrip(),
        "",
    ]
    if args.only != "pipeline":
        cases = dashboard(args)
        lines += [
            f"## The dashboard ({args.size}, 1,000 events/s, {args.seconds:g} s a case, "
            "each case a fresh process)",
            "",
            "| case | refreshes | refresh wall p50 / p95 ms | CPU per refresh p50 / p95 ms "
            "| snapshot p95 ms | key to screen p95 ms | longest full GC ms | readers "
            "| peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in cases:
            lines.append(
                f"| {c['label']} | {c['refreshes']} | {c['handler_wall_ms'][0]:.1f} / "
                f"{c['handler_wall_ms'][1]:.1f} | {c['cpu_per_refresh_ms'][0]:.1f} / "
                f"{c['cpu_per_refresh_ms'][1]:.1f} | {c['snapshot_ms'][1]:.1f} | "
                f"{c['key_ms'][1]:.1f} | {c['gc_pause_max_ms']:.0f} | {c['readers']:,} | "
                f"{c['peak_rss_mib']:.0f} |"
            )
        lines.append("")
    if args.only != "dashboard":
        lines += [
            f"## The pipeline (parse: best of {args.repeat}; feed: {args.readers:,} distinct "
            "readers, one read each, then a snapshot)",
            "",
            *pipeline(args),
            "",
        ]
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bounds-{stamp:%Y-%m-%d}.md"
    path.write_text(report)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
