"""`tablewatch run`: the headless agent. The audit log tailed, the engine, alert delivery and
Prometheus /metrics, until SIGTERM or SIGINT; then the sources stop, and the log position
(checkpoint), the learned habits (baselines) and the alerts' state are saved: exit 0.

While it runs, the checkpoint is saved after each batch the engine has processed, with the
engine's counters (events; statements and rows read per table and severity) in the same atomic
write; the baselines every BASELINES_SAVE_SECONDS. So after a kill -9 or a power cut it resumes
at the last checkpoint with the counters as they were there: no audit record is lost or counted
twice, and the /metrics counters continue exact across restarts. The habits learned since the
last baselines save are lost (never counted twice: the checkpoint is never older than the saved
baselines). An alert is committed to the durable outbox as it opens, so none is lost.

It logs one line per happening to stderr (`--log-format json`: one JSON object per line, for a
log shipper): start, each source going down or coming back, each alert opened, acknowledged or
resolved and each delivery that failed, stop. Every value from the database is made safe first.
SIGHUP reads the settings again: the alert rules and the sinks change at once (deliveries already
queued for a sink keep their payloads); a change elsewhere (tables, audit log, listeners, state)
is logged as needing a restart. Settings that do not load are refused in one log line and the
running ones stay. The agent API (`tablewatch.api`) serves remote dashboards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from alerts.center import AlertCenter
from alerts.registry import SinkConfigError, build_sinks
from alerts.rules import Rules
from collectors.checkpoint import CheckpointError, CheckpointStore
from collectors.events import EventBuilder
from collectors.tail import LogTail
from core.baselines import Baselines, StateError
from core.engine import Engine, EngineConfig
from core.safetext import safe
from core.settings import Settings, SettingsError
from core.sources import EventBatch, SourceHealth
from core.tables import TableName, WatchedTables
from tablewatch.alerting import ALERTS_FILE, AlertingError, alert_center, host_name
from tablewatch.api import MAX_BODY as API_MAX_BODY
from tablewatch.api import PREFIX as API_PREFIX
from tablewatch.api import AgentApi
from tablewatch.dbsources import database_feeds
from tablewatch.live import LiveEngine
from tablewatch.metrics import EngineCollector
from tablewatch.trail import OperatorTrail, TrailError
from tablewatch.web import (
    Address,
    ListenError,
    WebServer,
    is_loopback,
    metrics_handler,
    tls_context,
)

CHECKPOINT = "audit_log.checkpoint.json"
"""The same file `tablewatch tail` keeps."""
RESTART_SECTIONS = ("tables", "expected", "detection", "database", "audit_log", "metrics", "api",
                    "state")  # fmt: skip
"""Sections a reload cannot apply to a running agent."""
WATCH_SECONDS = 1.0
CHECKPOINT_SECONDS = 1.0
"""The log position (and the counters with it) is saved at most this often, and at stop."""
BASELINES_SAVE_SECONDS = 300.0
"""How often the running agent saves the learned habits (and once more at stop)."""


class Log:
    """One line per happening on `out`: `time level event key=value...` or JSON."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        self.out = out
        self.json = fmt == "json"

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        clean = {k: safe(str(v), 500) if isinstance(v, str) else v for k, v in fields.items()}
        if self.json:
            line = json.dumps({"time": now, "level": level, "event": event, **clean})
        else:
            pairs = " ".join(
                f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in clean.items()
            )
            line = f"{now} {level} {event} {pairs}".rstrip()
        print(line, file=self.out, flush=True)


class CheckpointedTail:
    """The log tail, its position saved after each batch the engine has taken, with the
    engine's counters in the same write (position and counts never disagree)."""

    def __init__(self, tail: LogTail, store: CheckpointStore, engine: Engine) -> None:
        self.tail = tail
        self.store = store
        self.engine = engine
        self.name = tail.name
        self.unsaved = ""
        """Why the latest checkpoint could not be written ("" : it was)."""
        self._due: dict[str, Any] | None = None
        """The position after the batches the engine has processed, not saved yet."""
        self._saved_at = time.monotonic()
        self._retired = False

    async def batches(self) -> AsyncIterator[EventBatch]:
        """The tail's batches. Once the engine has processed one (when the next is asked for:
        nothing else runs in between), its checkpoint is due; due checkpoints are saved at most
        every CHECKPOINT_SECONDS (two fsyncs each: not for every batch at 20,000 records/s) and
        once more when the tail stops. A kill -9 in between re-reads the batches since the last
        save into counters restored from that same save: still each record counted once.
        A checkpoint that cannot be written is shown and the tail reads on (stopping would
        re-read, and count twice, what the engine already took); the next save tries again."""
        try:
            async for batch in self.tail.batches():
                yield batch
                self._due = batch.checkpoint
                if time.monotonic() - self._saved_at >= CHECKPOINT_SECONDS:
                    self.flush()
        finally:
            self.flush()

    def retire(self) -> None:
        """Replaced by a fresh tail: save what is due, then never save again (an abandoned
        generator's late clean-up must not put an older position back)."""
        self.flush()
        self._retired = True

    def flush(self) -> bool:
        """Save the due checkpoint now (a quiet log has no next batch to do it); whether the
        saved checkpoint is up to date. Safe from any task: a checkpoint is due only once the
        engine has processed its batch, so the counters saved with it always match it."""
        if self._due is not None and not self._retired:
            try:
                self.store.save(self._due, self.engine.counters())
            except OSError as exc:
                self.unsaved = safe(f"checkpoint not saved: {exc.strerror or exc}", 300)
            else:
                self.unsaved, self._due = "", None
            self._saved_at = time.monotonic()
        return not self.unsaved

    def health(self) -> SourceHealth:
        """The tail's health (in error while its checkpoint cannot be saved)."""
        health = self.tail.health()
        if self.unsaved:
            return dataclasses.replace(health, state="error", detail=self.unsaved)
        return health


def _tail(
    settings: Settings,
    tables: list[TableName],
    store: CheckpointStore,
    log: Log,
    engine: Engine,
    *,
    restore: bool = False,
) -> CheckpointedTail:
    """The tail from the saved position; with `restore` (at start only: a source restarted
    after a failure finds the engine's counts already at its position) the engine's counters
    continue from that position's."""
    audit = settings.audit_log
    try:
        saved = store.load()
    except CheckpointError as exc:
        log("warning", "checkpoint_unusable", detail=str(exc), start=audit.start)
        saved = None
    if restore and saved is not None:
        engine.restore_counters(saved[1])
    tail = LogTail(
        audit.path,
        EventBuilder(WatchedTables(tables), control=True),
        fmt=audit.format,
        log_line_prefix=audit.log_line_prefix,
        start=audit.start,
        checkpoint=saved[0] if saved is not None else None,
        poll_interval=audit.poll_interval.total_seconds(),
    )
    return CheckpointedTail(tail, store, engine)


async def _save_baselines(
    engine: Engine, settings: Settings, log: Log, tails: list[CheckpointedTail]
) -> None:
    """Save the baselines every BASELINES_SAVE_SECONDS (they are saved at stop too); a failure
    is logged and tried again at the next turn, never fatal. The log position is saved first:
    baselines that had learned from records the checkpoint does not cover would learn them
    again after a kill -9 (so while the checkpoint cannot be saved, neither are they)."""
    while True:
        await asyncio.sleep(BASELINES_SAVE_SECONDS)
        if tails and not tails[-1].flush():
            log("error", "baselines_not_saved", detail="the log position cannot be saved")
            continue
        try:
            engine.save(settings.state.path(), hand_over=False)
        except Exception as exc:  # the agent runs on without them; the next save may succeed
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log("error", "baselines_not_saved", detail=f"{type(exc).__name__}: {detail}")


async def _flushing(tails: list[CheckpointedTail]) -> None:
    """Save the log position of a quiet log too (batches save it only when the next comes)."""
    while True:
        await asyncio.sleep(CHECKPOINT_SECONDS)
        tails[-1].flush()


async def _watch(live: LiveEngine, log: Log) -> None:
    """Log what changed: sources going down or back, alerts and their deliveries."""
    states: dict[str, str] = {}
    alerts: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    while True:
        for h in live.source_health():
            before = states.get(h.name)
            if before != h.state and not (before is None and h.state != "error"):
                level = "error" if h.state == "error" else "info"
                log(level, "source_state", source=h.name, state=h.state, detail=h.detail)
            states[h.name] = h.state
        if live.alerts is not None:
            for a in live.alerts.views():
                seen = (a.state, tuple((d.sink, d.state) for d in a.deliveries))
                old = alerts.get(a.key)
                if old != seen:
                    if old is None or old[0] != a.state:
                        log("warning", f"alert_{a.state}", key=a.key, severity=a.severity.label,
                            user=a.principal.user, client_addr=a.principal.client_addr,
                            application_name=a.principal.application_name,
                            table=a.principal.table, origin=a.origin, by=a.by)  # fmt: skip
                    for d in a.deliveries:
                        if d.state == "failed" and (
                            old is None or (d.sink, "failed") not in old[1]
                        ):
                            log("error", "delivery_failed", key=a.key, sink=d.sink, detail=d.detail)
                    alerts[a.key] = seen
        await asyncio.sleep(WATCH_SECONDS)


async def reload(
    settings: Settings,
    load: Callable[[], Settings],
    center: AlertCenter,
    log: Log,
    started: Settings | None = None,
) -> Settings:
    """Read the settings again and apply what can be applied live; the settings now in force.
    What needs a restart is what differs from the settings the agent `started` with."""
    try:
        fresh = load()
        sinks = build_sinks(
            fresh.alerts, host=host_name(), local=settings.state.path() / ALERTS_FILE
        )
    except (SettingsError, SinkConfigError) as exc:
        log("error", "reload_refused", detail=str(exc))
        return settings
    changed = await center.reconfigure(Rules.from_settings(fresh.alerts), sinks)
    running = started or settings
    later = [name for name in RESTART_SECTIONS if getattr(fresh, name) != getattr(running, name)]
    log("info", "reloaded", applied=", ".join(changed) or "nothing changed",
        needs_restart=", ".join(later) or "nothing")  # fmt: skip
    return fresh


async def agent(
    settings: Settings,
    tables: list[TableName],
    log: Log,
    hangups: asyncio.Queue[None] | None = None,
    load: Callable[[], Settings] | None = None,
) -> int:
    """Run until cancelled (reloading the settings with `load` at each item of `hangups`);
    the exit status."""
    state = settings.state.path()
    try:
        baselines = Baselines.load(state)
    except StateError as exc:
        log("error", "refused", detail=str(exc))
        return 2
    try:
        center = alert_center(settings.alerts, state)
    except AlertingError as exc:
        log("error", "refused", detail=str(exc))
        return 2
    engine = Engine(EngineConfig.from_settings(settings, tables), baselines)
    database = database_feeds(settings, tables)
    try:  # the principals operators marked expected (from a dashboard) stay expected
        live = LiveEngine(
            engine, center, trail=OperatorTrail(state), name="agent", database=database.signals
        )
    except TrailError as exc:
        log("error", "refused", detail=str(exc))
        await center.close()
        return 2
    if not settings.audit_log.path and not database.sources:
        log("error", "refused", detail="nothing to watch: set [audit_log] path (the pgaudit "
            "trail) or [database] dsn (the database's own statistics), or both")  # fmt: skip
        await center.close()
        return 2
    store = CheckpointStore(state / CHECKPOINT)
    # no audit log ([audit_log] path = ""): pg_stat_statements tells the reads
    tails = (
        [_tail(settings, tables, store, log, engine, restore=True)]
        if settings.audit_log.path
        else []
    )

    def again() -> CheckpointedTail:  # a source restarted after a failure
        tails[-1].retire()
        tails.append(_tail(settings, tables, store, log, engine))
        del tails[:-1]
        return tails[-1]

    if tails:
        live.attach(tails[0], make=again)
    for source, make in database.sources:
        live.attach(source, make=make)
    try:
        servers = await _listen(settings, live)
    except ListenError as exc:
        log("error", "refused", detail=str(exc))
        await center.close()
        return 2
    log("info", "started", tables=", ".join(map(str, tables)),
        audit_log=settings.audit_log.path or "off",
        database=", ".join(s.name for s, _ in database.sources) or "off",
        sinks=", ".join(center.sinks), metrics=_url(servers.get("metrics"), "/metrics"),
        api=_url(servers.get("api"), API_PREFIX))  # fmt: skip
    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(live.run(), name="engine")
            group.create_task(_watch(live, log), name="log")
            group.create_task(_save_baselines(engine, settings, log, tails), name="baselines")
            if tails:
                group.create_task(_flushing(tails), name="checkpoint")
            if hangups is not None and load is not None:
                group.create_task(_reloading(settings, load, center, log, hangups), name="reload")
    except asyncio.CancelledError:
        pass
    finally:
        for server in servers.values():
            await server.stop()
        await center.close()
        try:
            engine.save(state)
        except OSError as exc:
            log("error", "baselines_not_saved", detail=f"{exc.strerror or exc}")
    log("info", "stopped", events=engine.events, seconds=round(time.monotonic() - started, 1))
    return 0


def _url(server: WebServer | None, path: str) -> str:
    if server is None:
        return "off"
    return (
        f"{'https' if server.tls else 'http'}://{Address(server.address.host, server.port)}{path}"
    )


async def _listen(settings: Settings, live: LiveEngine) -> dict[str, WebServer]:
    """Start /metrics and the agent API as configured; ListenError (all stopped) otherwise."""
    servers: dict[str, WebServer] = {}
    metrics, api = settings.metrics, settings.api
    try:
        if metrics.listen:
            registry = CollectorRegistry()
            registry.register(EngineCollector(live, metrics.top_k))
            servers["metrics"] = WebServer(
                Address.parse(metrics.listen),
                {"/metrics": metrics_handler(registry)},
                tls=_tls(metrics.tls_cert_file, metrics.tls_key_file),
                users=metrics.basic_auth_users,
            )
            await servers["metrics"].start()
        if api.listen:
            address = Address.parse(api.listen)
            token = api.token.get_secret_value() if api.token is not None else None
            if token is None and not is_loopback(address.host):
                raise ListenError(
                    f"[api] listen = {api.listen!r} is reachable from other machines: set a "
                    "token (TABLEWATCH_API__TOKEN), or listen on a loopback address"
                )
            handlers = AgentApi(live)
            servers["api"] = WebServer(
                address,
                handlers.routes(),
                tls=_tls(api.tls_cert_file, api.tls_key_file),
                middlewares=handlers.middlewares(token),
                max_body=API_MAX_BODY,
            )
            servers["api"].app.on_shutdown.append(handlers.close)
            await servers["api"].start()
    except ListenError:
        for server in servers.values():
            await server.stop()
        raise
    return servers


def _tls(cert_file: str, key_file: str) -> ssl.SSLContext | None:
    return tls_context(cert_file, key_file) if cert_file else None


async def _reloading(
    settings: Settings,
    load: Callable[[], Settings],
    center: AlertCenter,
    log: Log,
    hangups: asyncio.Queue[None],
) -> None:
    started = settings
    while True:
        await hangups.get()
        settings = await reload(settings, load, center, log, started)


def run_agent(
    settings: Settings,
    tables: list[TableName],
    *,
    load: Callable[[], Settings] | None = None,
    log_format: str = "text",
    err: TextIO = sys.stderr,
) -> int:
    """`tablewatch run`: until SIGTERM or SIGINT (exit 0); SIGHUP reloads with `load`."""
    log = Log(err, log_format)

    async def main() -> int:
        hangups: asyncio.Queue[None] = asyncio.Queue()
        task = asyncio.ensure_future(agent(settings, tables, log, hangups, load))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        loop.add_signal_handler(signal.SIGHUP, hangups.put_nowait, None)
        with contextlib.suppress(asyncio.CancelledError):
            return await task
        return 0

    return asyncio.run(main())
