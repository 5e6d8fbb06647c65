"""The dashboard's side of `core.view.EngineView`: pulling snapshots and the operator's actions.

`OperatorApp` holds the view, the snapshot on screen and the selected reader; it runs whatever
calls the view as workers, so a slow or failing engine never freezes or crashes the screen: a
failure is one line in a notification (and in the header for snapshots). `tui.app.DashboardApp`
builds the screen on top of it.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import App
from textual.notifications import SeverityLevel
from textual.reactive import var
from textual.worker import Worker, WorkerState

from core.findings import PrincipalKey
from core.snapshot import AlertView, Delivery, ReaderView, Snapshot
from core.view import ActionRefused, EngineView, PageRequest
from tui import text as t
from tui.alertlist import RESOLVED, for_reader
from tui.modals import (
    AlertModal,
    BackendChoice,
    BackendModal,
    ExpectModal,
    PageChoice,
    PageModal,
    SnoozeModal,
)

DONE_WORDS = {"page": "paged", "acknowledge": "acknowledged", "resolve": "resolved"}
"""What the notification after each action starts with."""
REFUSAL_SECONDS = 20.0
"""A refused signal stays on screen this long: it says what to grant, which takes reading."""


def said(item: Delivery) -> str:
    """One sink's fate for a notification: `local sent (/var/…/alerts.jsonl)`, `pagerduty
    queued (retry in 4s: HTTP 503)`, `slack failed: HTTP 400: invalid_token`."""
    if item.state == "failed":
        return f"{item.sink} failed: {item.detail or 'no reason given'}"
    if item.state == "queued":
        return f"{item.sink} queued ({item.detail or 'no answer yet, retrying'})"
    return f"{item.sink} {item.state}" + (f" ({item.detail[:120]})" if item.detail else "")


def outcome(action: str, alert: AlertView) -> tuple[str, SeverityLevel]:
    """The notification after a page, acknowledge or resolve, and its severity: `error` when a
    sink failed (or none took it), `warning` while one is still queued, else `information`."""
    states = {d.state for d in alert.deliveries}
    if not alert.deliveries or states == {"failed"}:
        head = f"{action} failed: "
    else:
        head = f"{DONE_WORDS[action]}: "
    text = t.notice(head, ", ".join(said(d) for d in alert.deliveries) or "no sink took it")
    if not alert.deliveries or "failed" in states:
        return text, "error"
    return text, "warning" if "queued" in states else "information"


class OperatorApp(App[None]):
    """An app attached to an engine through its `EngineView`."""

    snapshot: var[Snapshot | None] = var(None, always_update=True)
    """The snapshot on screen (kept while paused)."""
    paused = var(False)
    """Keep the snapshot on screen; the engine runs on."""
    problem = var("")
    """Why the last snapshot could not be pulled ("" when it could)."""
    reveal = var(False)
    """Show statement literals and parameters."""

    def __init__(self, view: EngineView, *, operator: str, refresh_seconds: float) -> None:
        super().__init__()
        self.view = view
        self.operator = operator
        self.refresh_seconds = refresh_seconds
        self.selected: PrincipalKey | None = None
        """The reader under the cursor, kept across refreshes and re-sorts."""
        self._pulling: Worker[None] | None = None
        self._told = ""
        """The last snapshot failure notified."""

    def start_pulling(self) -> None:
        """Pull a snapshot now and every `refresh_seconds`."""
        self.set_interval(self.refresh_seconds, self._tick, name="snapshot")
        self.pull_now()

    def pull_now(self) -> None:
        """Pull a snapshot in the background now."""
        self._pulling = self._pull()

    def _tick(self) -> None:
        if self.paused or (self._pulling is not None and self._pulling.is_running):
            return  # a slow view is not asked again before it answered
        self.pull_now()

    @work(exclusive=True, group="snapshot", exit_on_error=False, description="pull a snapshot")
    async def _pull(self) -> None:
        await self.refresh_snapshot()

    async def refresh_snapshot(self) -> None:
        """Pull a snapshot from the view now (the timer does it every `refresh_seconds`).

        A failure is shown in the header and, when it is a new one, as a notification.
        """
        try:
            snapshot = await self.view.snapshot()
        except Exception as exc:  # the view's failure is shown, never a crash
            problem = t.notice(f"{type(exc).__name__}: ", exc)
            if problem != self._told:  # a view failing every other pull is told once
                self.notify(
                    t.notice("cannot get a snapshot: ", problem), severity="error", markup=False
                )
                self._told = problem
            self.problem = problem
            return
        self.problem = ""
        if not self.paused:
            self.snapshot = snapshot

    def reader(self) -> ReaderView | None:
        """The selected reader as the snapshot on screen shows it."""
        if self.snapshot is None or self.selected is None:
            return None
        return next((r for r in self.snapshot.readers if r.principal == self.selected), None)

    # operator actions ---------------------------------------------------------------------------

    def _busy(self, group: str) -> bool:
        if any(w.group == group and w.is_running for w in self.workers):
            # exclusive workers cancel their predecessor: never a page cut off half-delivered
            self.notify("still waiting for the last one: try again in a moment", markup=False)
            return True
        return False

    def _with_reader(self, group: str, then: Callable[[ReaderView], None]) -> None:
        reader = self.reader()
        if reader is None:
            self.notify("no reader selected: move the cursor to a reader first", markup=False)
            return
        if not self._busy(group):
            then(reader)

    def alert_target(self, action: str) -> AlertView | None:
        """The alert `action` (acknowledge or resolve) is about: the selected reader's."""
        if self.snapshot is None or self.selected is None:
            return None
        return for_reader(self.snapshot.alerts, self.selected, action)

    def action_acknowledge(self) -> None:
        """Acknowledge the selected alert in every sink (after a confirmation with a note)."""
        self._alert_action("acknowledge")

    def action_resolve(self) -> None:
        """Resolve the selected alert in every sink (after a confirmation with a note)."""
        self._alert_action("resolve")

    def _alert_action(self, action: str) -> None:
        alert = self.alert_target(action)
        if alert is None:
            self.notify(
                t.notice(
                    f"cannot {action}: no alert selected (f: the alerts list, ↑ ↓ to pick one;"
                    " or select a reader marked !)"
                ),
                severity="warning",
                markup=False,
            )
            return
        if alert.state == RESOLVED or (action == "acknowledge" and alert.state != "active"):
            by = f" by {alert.by}" if alert.by else ""
            at = f" at {t.clock(alert.updated_us)}" if alert.updated_us else ""
            self.notify(
                t.notice(f"cannot {action}: this alert is already {alert.state}{by}{at}"),
                severity="warning",
                markup=False,
            )
            return
        if self._busy("alert"):
            return

        def confirmed(note: str | None) -> None:
            if note is not None:
                self._act_on_alert(action, alert.key, note)

        self.push_screen(AlertModal(action, alert), confirmed)

    @work(exclusive=True, group="alert", exit_on_error=False, description="acknowledge or resolve")
    async def _act_on_alert(self, action: str, key: str, note: str) -> None:
        act = self.view.acknowledge if action == "acknowledge" else self.view.resolve
        try:
            alert = await act(key, note, self.operator)
        except ActionRefused as exc:  # resolved meanwhile, by someone else or by the rules
            self.notify(t.notice(f"{action} refused: ", exc), severity="error", markup=False)
            await self.refresh_snapshot()
            return
        except Exception as exc:  # a bug below, or an agent gone: one line, never a crash
            self.notify(t.notice(f"{action} failed: ", exc), severity="error", markup=False)
            return
        text, severity = outcome(action, alert)
        self.notify(text, severity=severity, markup=False)
        await self.refresh_snapshot()

    def action_page(self) -> None:
        """Page on-call about the selected reader (after a confirmation)."""

        def confirm(reader: ReaderView) -> None:
            def paged(choice: PageChoice | None) -> None:
                if choice is not None:
                    p = reader.principal
                    self._page(
                        PageRequest(p, choice.severity, choice.note, self.operator, reader.reasons)
                    )

            self.push_screen(PageModal(reader), paged)

        self._with_reader("page", confirm)

    def action_expect(self) -> None:
        """Mark the selected reader as expected (after a confirmation with a note)."""

        def confirm(reader: ReaderView) -> None:
            def marked(note: str | None) -> None:
                if note is not None:
                    self._expect(reader.principal, note)

            self.push_screen(ExpectModal(reader), marked)

        self._with_reader("expect", confirm)

    def action_snooze(self) -> None:
        """Snooze the selected reader (15m / 1h / 4h / 24h, or lift)."""

        def choose(reader: ReaderView) -> None:
            def chosen(seconds: int | None) -> None:
                if seconds is not None:
                    self._snooze(reader.principal, seconds)

            self.push_screen(SnoozeModal(reader), chosen)

        self._with_reader("snooze", choose)

    def action_backend(self) -> None:
        """Cancel the query of, or terminate, one of the selected reader's backends, after a
        confirmation that lists them (a clear notice when it has none: no empty dialog)."""

        def confirm(reader: ReaderView) -> None:
            p = reader.principal
            if not reader.backends:
                self.notify(
                    t.notice(p.user, " has no backend reading ", p.table, " now"),
                    severity="warning",
                    markup=False,
                )
                return

            def chosen(choice: BackendChoice | None) -> None:
                if choice is not None:
                    self._signal(p, choice.pid, choice.terminate)

            now = self.snapshot.taken_us if self.snapshot is not None else reader.last_seen_us
            self.push_screen(BackendModal(reader, now, self.reveal), chosen)

        self._with_reader("backend", confirm)

    @work(exclusive=True, group="backend", exit_on_error=False, description="signal a backend")
    async def _signal(self, principal: PrincipalKey, pid: int, terminate: bool) -> None:
        action = "terminate" if terminate else "cancel"
        try:
            done = await self.view.signal_backend(principal, pid, terminate, self.operator)
        except ActionRefused as exc:  # no privilege, the backend ended, no database
            self.notify(
                t.notice(f"{action} refused: ", exc),
                severity="error",
                timeout=REFUSAL_SECONDS,
                markup=False,
            )
            await self.refresh_snapshot()
            return
        except Exception as exc:  # a bug below, or an agent gone: one line, never a crash
            self.notify(t.notice(f"{action} failed: ", exc), severity="error", markup=False)
            return
        self.notify(t.notice(done), markup=False)
        await self.refresh_snapshot()

    @work(exclusive=True, group="page", exit_on_error=False, description="page on-call")
    async def _page(self, request: PageRequest) -> None:
        try:
            alert = await self.view.page(request)
        except Exception as exc:  # ActionRefused or a bug below: one line, never a crash
            self.notify(t.notice("page failed: ", exc), severity="error", markup=False)
            return
        text, severity = outcome("page", alert)
        self.notify(text, severity=severity, markup=False)
        await self.refresh_snapshot()

    @work(exclusive=True, group="expect", exit_on_error=False, description="mark expected")
    async def _expect(self, principal: PrincipalKey, note: str) -> None:
        try:
            await self.view.mark_expected(principal, note, self.operator)
        except Exception as exc:
            self.notify(t.notice("mark expected failed: ", exc), severity="error", markup=False)
            return
        self.notify(t.notice("marked expected: ", principal.user), markup=False)
        await self.refresh_snapshot()

    @work(exclusive=True, group="snooze", exit_on_error=False, description="snooze")
    async def _snooze(self, principal: PrincipalKey, seconds: int) -> None:
        try:
            await self.view.snooze(principal, seconds, self.operator)
        except Exception as exc:
            self.notify(t.notice("snooze failed: ", exc), severity="error", markup=False)
            return
        said = f"snoozed for {t.ago(seconds * 1_000_000)}: " if seconds else "snooze lifted: "
        self.notify(t.notice(said, principal.user), markup=False)
        await self.refresh_snapshot()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed anyway (a bug): one line, never a crash."""
        if event.state is WorkerState.ERROR:
            what = event.worker.description or event.worker.name
            self.notify(
                t.notice(what, " failed: ", event.worker.error), severity="error", markup=False
            )
