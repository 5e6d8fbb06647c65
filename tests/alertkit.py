"""Building blocks for alert tests: what the sinks are given, delivering it, waiting for it.

`make_alert`/`make_step` build what the rules hand a sink (`HOSTILE` is the worst name a reader
can choose) and `lifecycle` renders an alert's three actions; `deliver_all` sends payloads
through a sink, then closes it. `delivering` runs an alert center's delivery and rules as
`LiveEngine.run` does, `drained` waits for its outbox to empty, and `until` polls any condition
with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import pytest

from alerts.center import AlertCenter
from core.findings import PrincipalKey, Reason, Severity
from core.sinks import Action, Alert, AlertSink, Step, Verdict

HOSTILE = "<!channel> *bold* <https://evil.example|click> & \x1b[31m\u202e\udcff\U0001f600`"
"""A name with Slack markup, a terminal escape, a bidi override, a lone surrogate, an emoji."""


def make_alert(
    *,
    key: str = "critical|alice|10.0.0.5|psql|crm.client_list",
    severity: Severity = Severity.CRITICAL,
    user: str = "alice",
    client_addr: str = "10.0.0.5",
    application_name: str = "psql",
    table: str = "crm.client_list",
    statement: str | None = "SELECT * FROM crm.client_list WHERE id > ?",
    summary: str = "",
    reasons: tuple[Reason, ...] | None = None,
    note: str = "",
    operator: str = "",
) -> Alert:
    """An alert as the rules raise it, with every field overridable."""
    principal = PrincipalKey(user, client_addr, application_name, table)
    if reasons is None:
        reasons = (
            Reason("volume", Severity.WARNING, 55, "read 3x its usual rows"),
            Reason("bulk_read", severity, 92, "one statement read 48,000 of 50,000 rows (96%)"),
        )
    return Alert(
        key=key,
        rule="critical",
        origin="rule",
        severity=severity,
        principal=principal,
        summary=summary or f"{severity.label}: {user} read {table}: bulk_read",
        reasons=reasons,
        started_us=1_764_387_664_994_000,
        statement=statement,
        note=note,
        operator=operator,
        findings=2,
        suppressed=1,
        host="db1.example",
    )


def make_step(action: Action = Action.TRIGGER, actor: str = "tablewatch", note: str = "") -> Step:
    """One step, at a fixed time."""
    return Step(action, 1_764_387_700_000_000, actor, note)


def lifecycle(sink: AlertSink, alert: Alert) -> list[bytes | None]:
    """The payloads of `alert` triggered, acknowledged by bob ("on it") and resolved by bob, the
    last two rendered with the trigger's payload as the center renders them."""
    trigger = sink.render(alert, make_step(), None)
    return [
        trigger,
        sink.render(alert, make_step(Action.ACKNOWLEDGE, "bob", "on it"), trigger),
        sink.render(alert, make_step(Action.RESOLVE, "bob"), trigger),
    ]


async def deliver_all(sink: AlertSink, payloads: Iterable[bytes | None]) -> list[Verdict]:
    """Each payload delivered in turn (none may be None), then the sink closed."""
    verdicts = []
    try:
        for payload in payloads:
            assert payload is not None, "the sink rendered nothing"
            verdicts.append(await sink.deliver(payload))
    finally:
        await sink.close()
    return verdicts


@asynccontextmanager
async def delivering(center: AlertCenter | None, *, close: bool = False) -> AsyncIterator[None]:
    """The center's delivery and rules running (`center.run()`), as `LiveEngine.run` runs them;
    with `close`, the center (its sinks, its outbox) closed on the way out."""
    assert center is not None, "no alert center"
    task = asyncio.create_task(center.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if close:
            await center.close()


async def drained(center: AlertCenter, left: int = 0) -> None:
    """Return once only `left` deliveries are queued in the center's outbox."""
    await until(lambda: center.outbox.depth() == left)


async def until(condition: Callable[[], object], seconds: float = 20.0) -> None:
    """Return once `condition()` holds; fail when it still does not after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not so within {seconds:g}s"
        await asyncio.sleep(0.02)
