"""`tablewatch dashboard` and `tablewatch demo`: sources, engine and the Textual app, wired.

The app runs in the same event loop as the sources (asyncio tasks); the engine is fed between
frames. On the way out the sources stop, and the learned habits are saved to the state dir (the
dashboard) or thrown away with the demo's temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from collectors.demo import DEMO_EXPECTED, DEMO_TABLE, DemoWorkload
from collectors.events import EventBuilder
from collectors.tail import LogTail
from core.baselines import Baselines, StateError
from core.engine import Engine, EngineConfig
from core.safetext import safe
from core.settings import AlertsSettings, Settings
from core.tables import TableName, WatchedTables
from core.windows import HOUR_US
from tablewatch.alerting import ALERTS_FILE, AlertingError, alert_center
from tablewatch.dbsources import DatabaseFeeds, database_feeds
from tablewatch.live import LiveEngine
from tablewatch.trail import OperatorTrail, TrailError
from tui.app import DashboardApp


class DashboardRefused(Exception):
    """The dashboard cannot start; the message is one line for stderr."""


def operator_name() -> str:
    """The operator's login name, for the trail and the pages they send."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _tail(pattern: str, tables: list[TableName], settings: Settings, start: str) -> LogTail:
    log = settings.audit_log
    return LogTail(
        pattern,
        EventBuilder(WatchedTables(tables), control=True),
        fmt=log.format,
        log_line_prefix=log.log_line_prefix,
        start=start,
        poll_interval=log.poll_interval.total_seconds(),
    )


async def _serve(
    app: DashboardApp,
    *background: Awaitable[None],
    closing: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run the app; the background tasks run until it exits (a crash of one is shown by the
    app through the sources' health, never silently ends the dashboard); then `closing`."""
    tasks = [asyncio.ensure_future(job) for job in background]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a closed SSH session: leave as with `q`
        loop.add_signal_handler(sig, app.exit)
    try:
        await app.run_async()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if closing is not None:
            await closing()


def run_dashboard(settings: Settings, tables: list[TableName], err: TextIO = sys.stderr) -> int:
    """The live dashboard over the audit log of the settings."""
    state = settings.state.path()
    try:
        baselines = Baselines.load(state)
    except StateError as exc:
        print(f"tablewatch dashboard: {exc}", file=err)
        return 2
    engine = Engine(EngineConfig.from_settings(settings, tables), baselines)
    database = database_feeds(settings, tables)
    try:
        center = alert_center(settings.alerts, state)
        live = LiveEngine(
            engine,
            center,
            trail=OperatorTrail(state),
            name="in-process",
            database=database.signals,
        )
    except (AlertingError, TrailError) as exc:
        print(f"tablewatch dashboard: {exc}", file=err)
        return 2
    pattern, start = settings.audit_log.path, settings.audit_log.start
    if not pattern and not database.sources:
        print(
            "tablewatch dashboard: nothing to watch: set [audit_log] path or [database] dsn",
            file=err,
        )
        return 2
    if pattern:  # "": no audit log, pg_stat_statements tells the reads
        live.attach(
            _tail(pattern, tables, settings, start),
            make=lambda: _tail(pattern, tables, settings, "end"),
        )
    for source, make in database.sources:
        live.attach(source, make=make)
    app = DashboardApp(live, operator=operator_name())
    asyncio.run(_serve(app, live.run(), closing=center.close))
    try:
        engine.save(state)
    except OSError as exc:
        print(f"tablewatch dashboard: cannot save the baselines: {exc}", file=err)
        return 1
    return 0


def run_remote_dashboard(settings: Settings, agents: list[str], err: TextIO = sys.stderr) -> int:
    """The dashboard attached to one agent's API, or to several (a fleet view)."""
    from tablewatch.remote import AgentAddress, AgentAddressError, FleetView, RemoteView, client_tls

    api = settings.api
    token = api.token.get_secret_value() if api.token is not None else None
    try:
        tls = client_tls(api.ca_file)
        views = [RemoteView(AgentAddress.parse(a), token, tls=tls) for a in agents]
        view: RemoteView | FleetView = views[0] if len(views) == 1 else FleetView(views)
    except AgentAddressError as exc:
        print(f"tablewatch dashboard: {exc}", file=err)
        return 2
    app = DashboardApp(view, operator=operator_name())
    asyncio.run(_serve(app, view.run()))
    return 0


DEMO_LEGEND = "demo: an intruder in ~10 s, critical by ~30 s: select it (↑) and press a"
PG_DEMO_LEGEND = (
    "demo: an intruder in ~10 s, critical by ~30 s (↑, a pages); at ~40 s an unaudited COPY: "
    "▶ while it runs (c cancels it), then audit_gap"
)
"""`demo --postgres` adds the export the audit log never sees, caught by the database sources."""


def run_demo(*, postgres: bool = False, err: TextIO = sys.stderr) -> int:
    """The demo: a simulated workload (or real SQL on a throwaway cluster) in the dashboard."""
    with tempfile.TemporaryDirectory(prefix="tablewatch-demo-") as tmp:
        folder = Path(tmp)
        if postgres:
            return _demo_postgres(folder, err)
        workload = DemoWorkload(folder / "log")
        workload.write_history()
        config = EngineConfig(
            tables=(DEMO_TABLE,), expected=DEMO_EXPECTED, learning_period_us=HOUR_US
        )
        return _demo(folder, workload.log_path, config, workload.run, err)


def _demo_postgres(folder: Path, err: TextIO) -> int:
    """The demo on a throwaway cluster: its audit log tailed, and the four database sources
    polling it as the monitoring role (short intervals), whose link `c` signals through."""
    from tablewatch.pgdemo import PgDemo, PgDemoUnavailable

    demo = PgDemo()
    try:
        demo.start()
    except PgDemoUnavailable as exc:
        print(f"tablewatch demo --postgres: {exc}", file=err)
        return 2
    except RuntimeError as exc:  # the server itself failed: its log says why
        first = str(exc).strip().splitlines() or ["the server did not start"]
        print(f"tablewatch demo --postgres: {safe(first[0], 300)}", file=err)
        demo.stop()
        return 1
    with demo:
        settings = demo.settings()
        config = EngineConfig.from_settings(settings)
        database = database_feeds(settings, config.tables)
        return _demo(
            folder, demo.csvlog, config, demo.traffic, err, database=database, legend=PG_DEMO_LEGEND
        )


def demo_engine(
    state: Path, log: Path, config: EngineConfig, database: DatabaseFeeds | None = None
) -> LiveEngine:
    """The demo's live engine: the csvlog `log` tailed from its beginning, the database
    sources when given (and their link for `c`), the local sink only (nobody is paged), its
    trail and alerts in `state`.

    Raises:
        AlertingError: the local sink cannot be set up in `state`.
    """
    center = alert_center(AlertsSettings(), state)
    signals = database.signals if database is not None else None
    live = LiveEngine(Engine(config), center, trail=OperatorTrail(state), database=signals)
    tail = LogTail(
        str(log),
        EventBuilder(WatchedTables(list(config.tables)), control=True),
        fmt="csvlog",
        start="beginning",
        poll_interval=0.2,
        idle_flush=0.3,
    )
    live.attach(tail)
    for source, make in database.sources if database is not None else ():
        live.attach(source, make=make)
    return live


def _demo(
    folder: Path,
    log: Path,
    config: EngineConfig,
    traffic: Callable[[], Awaitable[None]],
    err: TextIO,
    *,
    database: DatabaseFeeds | None = None,
    legend: str = DEMO_LEGEND,
) -> int:
    state = folder / "state"
    try:
        live = demo_engine(state, log, config, database)
    except AlertingError as exc:
        print(f"tablewatch demo: {exc}", file=err)
        return 2
    closing = live.alerts.close if live.alerts is not None else None
    app = DashboardApp(live, operator=operator_name(), legend=legend)
    asyncio.run(_serve(app, live.run(), traffic(), closing=closing))
    _tell_alerts(state / ALERTS_FILE, err)
    return 0


def _tell_alerts(path: Path, err: TextIO) -> None:
    """What the demo's local sink recorded (its folder goes away with the demo)."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return
    print(f"tablewatch demo: {len(lines)} alert action(s) recorded by the local sink:", file=err)
    for line in lines[-10:]:
        try:
            a = json.loads(line)
            trigger = a["action"] == "trigger"
            by = f"paged by {a['operator']}" if trigger and a["origin"] == "operator" else ""
            note = a["note"] if trigger else a["step_note"]
            text = (
                f"{a['time'][11:19]} {a['action']} {a['severity']} {a['user']}@{a['client_addr']} "
                f"({a['application_name']}) on {a['table']}, {by or 'by ' + a['actor']}"
                + (f": {note}" if note else "")
            )
        except (ValueError, KeyError, TypeError):
            text = line.decode("ascii", "replace")
        print("  " + safe(text, 200), file=err)
