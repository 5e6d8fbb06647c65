#!/usr/bin/env python3
"""Dashboard bench: CPU per refresh and key-to-screen latency, 10,000 principals, 1,000 events/s.

    .venv/bin/python bench/dashboard_bench.py [--seconds 30] [--size 120x40] [--profile]

As `tablewatch dashboard` runs, in one event loop: an `Engine` (crm.client_list, 50,000 rows,
learning over) in a `LiveEngine` (alert center with the local sink, operator trail, temp dir),
pre-fed `--principals` principals, fed `--rate` events/s in 100 ms batches by an attached
`EventSource`, under the real `DashboardApp` (refresh 1 s) run headless by the pilot. After a 5 s
warm-up: `--seconds` of refreshes without keys (handler wall and thread CPU, `live.snapshot()`,
process CPU per refresh interval minus building and feeding events), 5 s paused (Textual's upkeep
alone), then `--presses` presses of down/up/o 0.37 s apart (key to the first frame showing it).
Targets: 150 ms CPU per refresh, 100 ms key to screen. Report: stdout and
`bench/out/dashboard-bench.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import math
import os
import platform
import pstats
import random
import resource
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from time import perf_counter, process_time, thread_time
from typing import Any

os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")  # what a modern terminal is sent
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from replay_bench import cpu_model  # noqa: E402
from rich.console import RenderableType  # noqa: E402
from textual._compositor import ChopsUpdate, CompositorUpdate, LayoutUpdate  # noqa: E402
from textual.pilot import Pilot  # noqa: E402
from textual.screen import Screen  # noqa: E402

from alerts.center import AlertCenter  # noqa: E402
from core.engine import Engine, EngineConfig  # noqa: E402
from core.events import AccessEvent, EventKind  # noqa: E402
from core.findings import Finding  # noqa: E402
from core.settings import AlertsSettings  # noqa: E402
from core.snapshot import Snapshot  # noqa: E402
from core.sources import EventBatch, SourceHealth  # noqa: E402
from core.tables import TableName  # noqa: E402
from tablewatch.alerting import alert_center  # noqa: E402
from tablewatch.live import LiveEngine, wall_us  # noqa: E402
from tablewatch.trail import OperatorTrail  # noqa: E402
from tui.app import DashboardApp  # noqa: E402
from tui.readers import ReadersTable  # noqa: E402

OUT = HERE / "out"
WATCHED, ROWS, HOUR = "crm.client_list", 50_000, 3_600_000_000
LOOKUP = "SELECT id, name, email FROM crm.client_list WHERE id = $1"
PAGE = "SELECT * FROM crm.client_list WHERE region = $1 ORDER BY id LIMIT 100"
BULK = "SELECT * FROM crm.client_list"
APPS = ("crm-web", "billing-worker", "hourly-agg", "exporter")
TOOLS = ("psql", "DBeaver", "pgAdmin")


def principal(i: int) -> tuple[str, str, str]:
    """Principal `i`: (user, client address, application_name), distinct by address."""
    if i % 10 == 0:  # people at their workstations
        return f"analyst{i // 10 % 300}", f"192.168.{i >> 8 & 255}.{i & 255}", TOOLS[i % 3]
    return f"svc_{i % 40}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", APPS[i % 4]


def hostile_statement(kind: str) -> str | None:
    """`--hostile`: a 1 MB statement, or one of 10,000 lines (with markup and escapes)."""
    if kind == "1mb":
        filler = "'[red]x[/] \x1b[31mred\x1b]0;pwned\x07 Zoë 🙂' || "
        return BULK + " WHERE note = " + filler * (1_000_000 // len(filler)) + "''"
    if kind == "lines":
        return BULK + " WHERE id IN (\n" + ",\n".join(str(i) for i in range(10_000)) + "\n)"
    return None


class Traffic:
    """An EventSource: key lookups (95%), pages of 100 rows (5%), bulk reads (0.1%); known
    principals and a few new ones (0.5%); `rate` events/s in 100 ms batches. With `hostile`,
    every batch also carries one whole-table read by `mallory` whose statement is that text
    (critical: the top row, its statement in the detail pane)."""

    name = "bench-traffic"

    def __init__(self, principals: int, rate: int, seed: int = 7, hostile: str = "none") -> None:
        self.rng, self.principals, self.rate = random.Random(seed), principals, rate
        self.fresh, self.events, self.build_cpu = principals, 0, 0.0
        self.ids: dict[int, int] = {}
        self.hostile = hostile_statement(hostile)

    def event(self, i: int, time_us: int, roll: float) -> AccessEvent:
        user, addr, app = principal(i)
        params: tuple[str, ...] | None = (str(self.rng.randrange(ROWS)),)
        statement, rows = LOOKUP, 1
        if roll < 0.001:
            statement, params, rows = BULK, None, self.rng.randrange(5_000, 48_000)
        elif roll < 0.051:
            statement, params, rows = PAGE, ("EU",), 100
        sid = self.ids[i] = self.ids.get(i, 0) + 1
        return AccessEvent(
            time_us, EventKind.AUDIT, user, "crm", addr, app, f"{i:x}.1", "OBJECT", sid, 1,
            "READ", "SELECT", "TABLE", WATCHED, statement, params, rows,
        )  # fmt: skip

    def batch(self, now_us: int, count: int) -> list[AccessEvent]:
        out = []
        for k in range(count):
            i = self.rng.randrange(self.principals)
            if self.rng.random() < 0.005:
                i, self.fresh = self.fresh, self.fresh + 1
            out.append(self.event(i, now_us - (count - k) * 100_000 // count, self.rng.random()))
        if self.hostile is not None:
            sid = self.ids[-1] = self.ids.get(-1, 0) + 1
            out.append(
                AccessEvent(
                    now_us,
                    EventKind.AUDIT,
                    "mallory",
                    "crm",
                    "10.66.6.6",
                    "psql",
                    "m.1",
                    "OBJECT",
                    sid,
                    1,
                    "READ",
                    "SELECT",
                    "TABLE",
                    WATCHED,
                    f"{self.hostile} -- {sid}",  # a new copy each time, as parsed
                    None,
                    ROWS,
                )  # fmt: skip
            )
        return out

    def prefeed(self, live: LiveEngine) -> None:
        """A learning day where every principal reads once; then the last 30 minutes: two reads
        each, 30 bulk reads (warnings, criticals) and 50 newcomers."""
        now, n, rng, ev = wall_us(), self.principals, self.rng, self.event
        day = [ev(i, now - 26 * HOUR + i * (22 * HOUR // n), 1) for i in range(n)]
        ago = [rng.randrange(HOUR // 2) for _ in range(2 * n)]
        recent = [ev(i // 2, now - a, rng.uniform(0.001, 1)) for i, a in enumerate(ago)]
        recent += [ev(rng.randrange(n), now - rng.randrange(HOUR // 6), 0) for _ in range(30)]
        recent += [ev(10**6 + j, now - rng.randrange(HOUR // 6), 1) for j in range(50)]
        recent.sort(key=lambda e: e.time_us)
        for events in (day, recent):
            for at in range(0, len(events), 1000):
                live.feed(events[at : at + 1000])

    async def batches(self) -> AsyncIterator[EventBatch]:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += 0.1
            await asyncio.sleep(max(0.0, due - loop.time()))
            started = thread_time()
            events = self.batch(wall_us(), self.rate // 10)
            self.build_cpu += thread_time() - started
            self.events += len(events)
            yield EventBatch(events, {})

    def health(self) -> SourceHealth:
        return SourceHealth(self.name, "ok", events=self.events, records=self.events)


class TimedLive(LiveEngine):
    """The real LiveEngine; the CPU its feed takes, and each snapshot's wall time."""

    def __init__(self, engine: Engine, alerts: AlertCenter, **kwargs: Any) -> None:
        super().__init__(engine, alerts, **kwargs)
        self.feed_cpu = 0.0
        self.snapshots: list[float] = []

    def feed(self, events: Sequence[AccessEvent]) -> list[Finding]:
        started = thread_time()
        found = super().feed(events)
        self.feed_cpu += thread_time() - started
        return found

    async def snapshot(self) -> Snapshot:
        started = perf_counter()
        snap = await super().snapshot()
        self.snapshots.append(perf_counter() - started)
        return snap


class BenchApp(DashboardApp):
    """The real dashboard, timed: its refresh handler, and every frame it writes."""

    CSS_PATH = str(ROOT / "tui" / "app.tcss")

    def __init__(self, live: TimedLive, traffic: Traffic) -> None:
        super().__init__(live, operator="bench", refresh_seconds=1.0)
        self.live, self.traffic = live, traffic
        self.handler: list[tuple[float, float]] = []  # (wall, thread CPU) of each refresh
        self.marks: list[tuple[float, float]] = []  # (process CPU, feeding CPU) at each start
        self.frames = self.bytes_out = 0
        self.probe: tuple[str, int] | None = None  # (key, state before) while a key is timed
        self.shown = asyncio.Event()
        self.shown_at = 0.0

    def feeding_cpu(self) -> float:
        return self.live.feed_cpu + self.traffic.build_cpu

    async def refresh_snapshot(self) -> None:
        self.marks.append((process_time(), self.feeding_cpu()))
        wall, cpu = perf_counter(), thread_time()
        await super().refresh_snapshot()  # its awaits never suspend: one uninterrupted run
        self.handler.append((perf_counter() - wall, thread_time() - cpu))

    def state(self, key: str) -> int:
        return self.order if key == "o" else self.query_one(ReadersTable).cursor_row

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        # A frame's way out. Screen._compositor_refresh hands App._display the compositor's update
        # (render_update: the changed lines, composited from the widgets' state now), at most
        # TEXTUAL_FPS (60) times a second. Headless, App._display returns before turning it into
        # escape sequences for the driver: we do that (render_segments; bytes dropped), so a frame
        # costs what it costs on a terminal. A key is on screen at the first frame rendered after
        # its change that repaints the cursor's line: a frame that comes between the change and
        # the table's repaint does not count. pilot.pause() would say "idle", not "drawn".
        super()._display(screen, renderable)
        if not isinstance(renderable, CompositorUpdate) or self._batch_count:
            return
        self.bytes_out += len(renderable.render_segments(self.console))
        self.frames += 1
        if not self.probe or self.shown.is_set() or self.state(self.probe[0]) == self.probe[1]:
            return
        table = self.query_one(ReadersTable)  # rows are one line high, under a one-line header
        line = table.content_region.y + table.header_height + table.cursor_row - table.scroll_y
        if isinstance(renderable, LayoutUpdate):
            drawn = line - renderable.region.y in range(len(renderable.strips))
        else:
            drawn = isinstance(renderable, ChopsUpdate) and any(
                y == line for y, _, _ in renderable.spans
            )
        if drawn:
            self.shown_at = perf_counter()
            self.shown.set()


class GcPauses:
    """The wall time of each full (generation 2) garbage collection: a pause for everything."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2 and phase == "start":
            self.started = perf_counter()
        elif info["generation"] == 2:
            self.pauses.append(perf_counter() - self.started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def row(name: str, values: list[float], target: str = "") -> str:
    ms = [v * 1000 for v in values]
    figures = [pct(ms, 0.5), pct(ms, 0.95), max(ms, default=math.nan)]
    return f"| {name} | {len(ms)} | " + " | ".join(f"{x:.1f}" for x in figures) + f" | {target} |"


async def press(pilot: Pilot[None], app: BenchApp, n: int) -> tuple[dict[str, list[float]], int]:
    """Key-to-screen latencies for down/up and o, and how many never showed within 2 s."""
    latency: dict[str, list[float]] = {"down/up": [], "o": []}
    missed = 0
    loop = asyncio.get_running_loop()
    due = loop.time()
    for i in range(n):
        table = app.query_one(ReadersTable)
        up = table.cursor_row >= table.row_count - 1 or (i % 3 == 1 and table.cursor_row > 0)
        key = "o" if i % 3 == 2 else "up" if up else "down"
        app.probe, started = (key, app.state(key)), perf_counter()
        app.shown.clear()
        await pilot.press(key)  # posts the key as the terminal driver does, then waits for idle
        try:
            async with asyncio.timeout(2.0):
                await app.shown.wait()
            latency["o" if key == "o" else "down/up"].append(app.shown_at - started)
        except TimeoutError:
            missed += 1
        app.probe = None
        due += 0.37
        await asyncio.sleep(max(0.0, due - loop.time()))
    return latency, missed


async def bench(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        engine = Engine(EngineConfig(tables=(TableName.parse(WATCHED, ROWS),)))
        center = alert_center(AlertsSettings(), Path(tmp) / "state")  # the local sink
        live = TimedLive(engine, center, trail=OperatorTrail(Path(tmp) / "state"), name="bench")
        traffic = Traffic(args.principals, args.rate, hostile=args.hostile)
        traffic.prefeed(live)
        readers0, findings0 = len(engine._readers), len(engine._findings)
        live.attach(traffic)
        app = BenchApp(live, traffic)
        async with app.run_test(size=args.size) as pilot:
            feeding = asyncio.create_task(live.run())
            await asyncio.sleep(5)  # warm-up: the first snapshots, caches, the rate's window
            app.handler, app.marks, live.snapshots = [], [], []
            frames0, bytes0 = app.frames, app.bytes_out
            profile = cProfile.Profile() if args.profile else None
            cpu0, feed0, collections = process_time(), app.feeding_cpu(), GcPauses()
            gc.callbacks.append(collections)
            with profile if profile else contextlib.nullcontext():  # enabled inside the block
                await asyncio.sleep(args.seconds)
            cpu_s, feed_s = process_time() - cpu0, app.feeding_cpu() - feed0
            gc.callbacks.remove(collections)
            handler, snaps, marks = list(app.handler), list(live.snapshots), list(app.marks)
            frames, bytes_out = app.frames - frames0, app.bytes_out - bytes0
            readers1, findings1 = len(engine._readers), len(engine._findings)
            listed = len(app.snapshot.readers) if app.snapshot else 0
            app.paused = True
            await asyncio.sleep(1)
            cpu1, feed1 = process_time(), app.feeding_cpu()
            await asyncio.sleep(5)
            idle_s = (process_time() - cpu1 - (app.feeding_cpu() - feed1)) / 5
            app.paused = False
            await asyncio.sleep(1.5)
            latency, missed = await press(pilot, app, args.presses)
            feeding.cancel()
            app.paused = True  # the last refresh lands before the app shuts down
            await app.workers.wait_for_complete()
            await pilot.pause()
    per_refresh = [
        (c1 - c0) - (f1 - f0) for (c0, f0), (c1, f1) in zip(marks, marks[1:], strict=False)
    ]
    keys = latency["down/up"] + latency["o"]
    cpu_ok, keys_ok = pct(per_refresh, 0.95) < 0.150, pct(keys, 0.95) < 0.100 and not missed
    mean = (cpu_s - feed_s) / max(len(handler), 1)
    width, height = args.size
    if args.json:  # written by main()
        args.figures = {
            "principals": args.principals,
            "hostile": args.hostile,
            "size": f"{width}x{height}",
            "refreshes": len(handler),
            "handler_wall_ms": [pct([h[0] for h in handler], q) * 1000 for q in (0.5, 0.95)],
            "snapshot_ms": [pct(snaps, q) * 1000 for q in (0.5, 0.95)],
            "cpu_per_refresh_ms": [pct(per_refresh, q) * 1000 for q in (0.5, 0.95)],
            "key_ms": [pct(keys, q) * 1000 for q in (0.5, 0.95)],
            "keys_missed": missed,
            "gc_pause_max_ms": max(collections.pauses, default=0.0) * 1000,
            "readers": readers1,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    return [
        f"### {args.principals:,} principals, {args.rate:,} events/s, {width}x{height}, "
        f"{'' if args.hostile == 'none' else f'hostile statement {args.hostile}, '}"
        f"{args.seconds:g} s{' (under cProfile: inflated)' if profile else ''}",
        "",
        "| measure | n | p50 ms | p95 ms | max ms | target ms |",
        "|---|---:|---:|---:|---:|---|",
        row("refresh handler, wall (`refresh_snapshot`: pull + widgets)", [h[0] for h in handler]),
        row("refresh handler, thread CPU", [h[1] for h in handler]),
        row("of which `live.snapshot()`, wall", snaps),
        row("handler + rendering: process CPU per refresh, feeding off", per_refresh, "< 150"),
        row("full (generation 2) garbage collections, wall", collections.pauses),
        row("key `down`/`up` to the frame showing the cursor moved", latency["down/up"], "< 100"),
        row("key `o` (next sort order) to the frame showing it", latency["o"], "< 100"),
        "",
        f"- Mean handler + rendering: {mean * 1000:.1f} ms CPU per refresh ({cpu_s:.2f} s process "
        f"CPU over {len(handler)} refreshes, minus {feed_s:.2f} s building and feeding events). "
        f"Textual's upkeep alone (paused, no refreshes): {idle_s * 1000:.1f} ms CPU/s.",
        f"- {frames} frames in the cpu phase, {bytes_out / max(frames, 1) / 1024:.1f} KiB of "
        f"escape sequences each. Readers {readers0:,} -> {readers1:,} (the table lists the top "
        f"{listed}), findings kept {findings0} -> {findings1}; {traffic.events:,} events fed live; "
        f"{len(gc.get_objects()):,} objects tracked by the GC at the end.",
        f"- CPU per refresh, p95 < 150 ms: {'MET' if cpu_ok else 'MISSED'}. Key to screen, p95 "
        f"of all {len(keys)} keys {pct(keys, 0.95) * 1000:.1f} ms < 100 ms, {missed} not shown "
        f"within 2 s: {'MET' if keys_ok else 'MISSED'}.",
        *(report_profile(profile) if profile else []),
    ]


def report_profile(profile: cProfile.Profile) -> list[str]:
    path = OUT / "dashboard-profile.txt"
    with path.open("w") as out:
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("cumulative").print_stats(80)
        stats.sort_stats("tottime").print_stats(40)
    return ["", f"cProfile of the cpu phase (read shares, not ms): `{path.relative_to(ROOT)}`"]


def machine() -> str:
    return (
        f"{cpu_model()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · Textual "
        f"{version('textual')} · Rich {version('rich')} · {os.environ['TEXTUAL_COLOR_SYSTEM']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--principals", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000, help="events/s")
    parser.add_argument("--size", type=lambda s: tuple(map(int, s.split("x"))), default=(120, 40))
    parser.add_argument("--presses", type=int, default=51)
    parser.add_argument("--profile", action="store_true", help="cProfile the cpu phase")
    parser.add_argument(
        "--hostile",
        choices=("none", "1mb", "lines"),
        default="none",
        help="a critical reader whose every read is a 1 MB or a 10,000-line statement",
    )
    parser.add_argument("--json", help="also write the key figures to this JSON file")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python bench/dashboard_bench.py", *sys.argv[1:]])
    started = perf_counter()
    lines = [f"## Dashboard bench ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "", machine(), ""]
    lines += [f"`{command}`", "", *asyncio.run(bench(args))]
    lines += ["", f"(bench took {perf_counter() - started:.0f} s)"]
    text = "\n".join(lines)
    print(text)
    (OUT / "dashboard-bench.md").write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(args.figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
