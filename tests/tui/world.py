"""A real engine, fed with real access events at fixed times, for the dashboard's tests."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.app import App

from alerts.center import AlertCenter
from alerts.local import LocalSink
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.rules import Rules
from core.dbside import Backend
from core.engine import Engine, EngineConfig
from core.events import AccessEvent
from core.sinks import AlertSink
from core.sources import EventBatch, SourceHealth
from core.tables import TableName
from core.view import EngineView
from tablewatch.live import LiveEngine
from tablewatch.trail import OperatorTrail
from tests.unit.enginekit import at, ev
from tui.app import DashboardApp

FIXED_US = at(0, 10, 30)
"""The frozen clock: Monday 10:30:00 UTC of the engine kit's calendar."""
TABLE = TableName("crm", "client_list", 2000)


def engine() -> Engine:
    """An engine watching crm.client_list (2,000 rows)."""
    return Engine(EngineConfig(tables=(TABLE,)))


def center(
    tmp_path: Path,
    *,
    sinks: bool = True,
    rules: Rules | None = None,
    more: Sequence[AlertSink] = (),
) -> AlertCenter:
    """An alert center with a LocalSink (`tmp_path/alerts.jsonl`) and the sinks in `more` over
    an outbox in `tmp_path/state`; by default no rule pages (only operators do)."""
    return AlertCenter(
        Outbox(tmp_path / "state" / OUTBOX_FILE),
        [LocalSink(tmp_path / "alerts.jsonl"), *more] if sinks else [],
        rules or Rules(page_on=None),
        host="db-host",
        clock=lambda: FIXED_US,
    )


def live(
    tmp_path: Path,
    *,
    sinks: bool = True,
    rules: Rules | None = None,
    more: Sequence[AlertSink] = (),
) -> LiveEngine:
    """A LiveEngine with an alert center (`center`) and an operator trail in `tmp_path`, clock
    frozen."""
    return LiveEngine(
        engine(),
        center(tmp_path, sinks=sinks, rules=rules, more=more),
        trail=OperatorTrail(tmp_path / "state"),
        clock=lambda: FIXED_US,
    )


DELIVERY = "alert delivery"
"""The name of the worker that runs the alert center (it never completes on its own)."""


class _DeliveringApp(DashboardApp):
    """The dashboard with its engine's alert delivery running, as `tablewatch dashboard` runs
    it (there, `LiveEngine.run` does it, with the sources)."""

    def on_mount(self) -> None:
        super().on_mount()
        alerts = getattr(self.view, "alerts", None)
        if isinstance(alerts, AlertCenter):
            self.run_worker(alerts.run(), name=DELIVERY, exit_on_error=False)


async def settle(app: App[Any]) -> None:
    """Let the app's workers finish (all but the alert delivery, which runs until the app
    exits) and the screen catch up."""
    for _ in range(2):
        busy = [w.wait() for w in app.workers if w.name != DELIVERY]
        # a cancelled worker (an exclusive pull replaced by the next) or a failed one is done too
        await asyncio.gather(*busy, return_exceptions=True)
        await asyncio.sleep(0)


def normal_traffic() -> list[AccessEvent]:
    """The app's key lookups, a reporting aggregate and a nightly-style backup."""
    out = [
        ev(at(0, 10, 0, i * 40), params=(str((i * 7919 + 13) % 2000),), rows=1, session="web")
        for i in range(30)
    ]
    out.append(
        ev(
            at(0, 10, 6),
            "SELECT count(*) FROM crm.client_list WHERE created > '2026-01-01'",
            user="report",
            addr="10.0.0.5",
            app="metabase",
            rows=1,
            session="rep",
        )
    )
    return sorted(out, key=lambda e: e.time_us)


def exfiltration() -> list[AccessEvent]:
    """mallory pulls 95% of the table with psql from an unknown address."""
    return [
        ev(
            at(0, 10, 25),
            "SELECT name, email FROM crm.client_list WHERE region <> 'none'",
            user="mallory",
            addr="203.0.113.9",
            app="psql",
            rows=1900,
            session="mal",
        ),
        ev(
            at(0, 10, 26),
            "SELECT * FROM crm.client_list WHERE id = $1 AND email = $2",
            user="mallory",
            addr="203.0.113.9",
            app="psql",
            params=("42", "ann@example.com"),
            rows=1,
            session="mal",
        ),
    ]


COPY = Backend(
    4242, "mallory", "crm", "203.0.113.9", "psql", "active", "copy", ("crm.client_list",),
    "COPY crm.client_list TO STDOUT", FIXED_US - 600_000_000, FIXED_US - 123_000_000,
    FIXED_US - 123_000_000,
)  # fmt: skip
"""mallory's COPY of the table, running for 2m 03s."""
CURSOR = Backend(
    4243, "mallory", "crm", "203.0.113.9", "psql", "idle in transaction", "cursor",
    ("crm.client_list",), "FETCH 1000 FROM c", FIXED_US - 900_000_000, FIXED_US - 420_000_000,
    FIXED_US - 5_000_000,
)  # fmt: skip
"""mallory's cursor over the table, its transaction open for 7 minutes."""


def caught(view: LiveEngine, *backends: Backend) -> LiveEngine:
    """mallory's backends as the activity poll hands them to the engine (that source is
    tested against PostgreSQL elsewhere: here the engine's table of them is filled)."""
    view.engine._backends[("mallory", "203.0.113.9", "psql", "crm.client_list")] = backends
    return view


def app_for(view: EngineView, **kwargs: Any) -> DashboardApp:
    """The dashboard over `view` (a slow timer: tests pull snapshots themselves), delivering
    the alerts of its alert center (`view.alerts`) when it has one."""
    kwargs.setdefault("refresh_seconds", 30.0)
    return _DeliveringApp(view, operator="alice", **kwargs)


def screen_console(app: App[Any], color_system: str | None = None) -> tuple[Console, Any]:
    """A console the size of the app's terminal, and the app's whole screen (with any dialog)
    as the compositor would send it, to print or render there."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        record=True,
        legacy_windows=False,
        color_system=color_system,
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return console, update


def notices(app: App[Any]) -> list[str]:
    """The notifications shown so far."""
    return [n.message for n in app._notifications]


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, as plain text (the screen and any dialog on it)."""
    console, update = screen_console(app)
    console.print(update)
    return console.export_text()


def alerts_file(tmp_path: Path) -> list[dict[str, Any]]:
    """The LocalSink's records."""
    path = tmp_path / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class BrokenSource:
    """A real EventSource whose log cannot be read: batches() raises, health says so."""

    name = "pgaudit-log"

    def __init__(self, error: str = "PermissionError: [Errno 13] /var/log/postgresql") -> None:
        self.error = error

    async def batches(self) -> AsyncIterator[EventBatch]:
        raise PermissionError(13, "Permission denied", "/var/log/postgresql/pg.csv")
        yield EventBatch([], {})  # pragma: no cover (makes this an async generator)

    def health(self) -> SourceHealth:
        return SourceHealth(self.name, "error", self.error)


def feed(view: LiveEngine, events: Iterable[AccessEvent]) -> None:
    """Events into the engine, in time order."""
    view.feed(sorted(events, key=lambda e: e.time_us))
