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
from textual.reactive import var
from textual.worker import Worker, WorkerState

from core.findings import PrincipalKey
from core.snapshot import AlertView, ReaderView, Snapshot
from core.view import EngineView, PageRequest
from tui import text as t
from tui.modals import ExpectModal, PageChoice, PageModal, SnoozeModal


def page_result(alert: AlertView) -> tuple[str, bool]:
    """The notification after a page, and whether every delivery went through."""
    parts = []
    for d in alert.deliveries:
        where = f" in {d.detail}" if d.state == "recorded" else f": {d.detail}" if d.detail else ""
        parts.append(f"{d.sink} {d.state}{where}")
    failed = not alert.deliveries or any(d.state == "failed" for d in alert.deliveries)
    said = ", ".join(parts) or "no sink took it"
    return t.notice("page failed: " if failed else "paged: ", said), not failed


class OperatorApp(App[None]):
    """An app attached to an engine through its `EngineView`."""

    snapshot: var[Snapshot | None] = var(None, always_update=True)
    """The snapshot on screen (kept while paused)."""
    paused = var(False)
    """Keep the snapshot on screen; the engine runs on."""
    problem = var("")
    """Why the last snapshot could not be pulled ("" when it could)."""

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

    def _with_reader(self, group: str, then: Callable[[ReaderView], None]) -> None:
        reader = self.reader()
        if reader is None:
            self.notify("no reader selected: move the cursor to a reader first", markup=False)
            return
        if any(w.group == group and w.is_running for w in self.workers):
            # exclusive workers cancel their predecessor: never a page cut off half-delivered
            self.notify("still waiting for the last one: try again in a moment", markup=False)
            return
        then(reader)

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

    @work(exclusive=True, group="page", exit_on_error=False, description="page on-call")
    async def _page(self, request: PageRequest) -> None:
        try:
            alert = await self.view.page(request)
        except Exception as exc:  # ActionRefused or a bug below: one line, never a crash
            self.notify(t.notice("page failed: ", exc), severity="error", markup=False)
            return
        said, ok = page_result(alert)
        self.notify(said, severity="information" if ok else "error", markup=False)
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
