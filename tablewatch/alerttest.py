"""`tablewatch alert test`: one clearly marked test alert through the configured sinks.

The alert goes the way real ones go (rendered by each sink, queued, delivered with the outbox's
retries) but through a throwaway outbox, so a running agent's queue is never touched. Each sink
gets a trigger and, once that is through, a resolve, so no test incident stays open. What became
of each is reported per sink; any failure (or no answer within the wait) exits 1. The run ends
within the wait and a short grace for the resolves, however the sinks behave. The output never
holds a secret: the sinks scrub them from what they report, and every configured secret is
masked again here, with the parts of the sinks' URLs that may carry one (credentials, query
string, a Slack webhook's path).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import tempfile
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote

from pydantic import BaseModel, SecretStr

from alerts.center import AlertCenter
from alerts.http import credentials
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.registry import SinkConfigError, build_sinks
from alerts.rules import Rules
from core.findings import PrincipalKey, Reason, Severity
from core.safetext import safe
from core.settings import Settings
from tablewatch.alerting import host_name

EXIT_FAILED = 1
EXIT_USAGE = 2
RESOLVE_WAIT = 15.0
"""Seconds granted to the resolves at most once the triggers are through..."""
RESOLVE_GRACE = 5.0
"""...and at least, beyond the wait, when the triggers took all of it."""
MIN_SECRET = 4
"""Shorter pieces of a URL are not masked apiece (they would mask ordinary words)."""
TEST_REASON = Reason(
    "test",
    Severity.INFO,
    0,
    "a test alert sent by `tablewatch alert test`: no action needed",
)


def _secrets(settings: Settings) -> list[str]:
    """Every configured secret, and the parts of the sinks' URLs that may hold one."""
    found: list[str] = []
    for name in type(settings.alerts).model_fields:
        section = getattr(settings.alerts, name)
        if not isinstance(section, BaseModel):
            continue
        for field, value in section.__dict__.items():
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
                if field.endswith("url"):  # a secret URL (Slack's webhook): its path too
                    found += _url_secrets(value.get_secret_value(), path=True)
            elif isinstance(value, str) and field.endswith("url"):
                found += _url_secrets(value, path=False)
    return found


def _url_secrets(url: str, *, path: bool) -> list[str]:
    """What of `url` may be a credential: its userinfo (and the Basic header made of it), its
    query string and each value in it, and, when `path`, its path and last segment.

    >>> _url_secrets("http://am:pw-1234@h:80/hook?a=1&token=s3cret#x", path=False)
    ['am:pw-1234', 'pw-1234', 'YW06cHctMTIzNA==', 'a=1&token=s3cret#x', 's3cret']
    """
    found = credentials(url)
    if found:  # what goes out is the Authorization header, which an answer may quote
        found.append(base64.b64encode(unquote(found[0]).encode("utf-8")).decode("ascii"))
    query = url.partition("?")[2]
    if query:
        found.append(query)
        found += [pair.partition("=")[2] for pair in query.partition("#")[0].split("&")]
    if path:
        rest = url.partition("://")[2] or url
        tail = "/" + rest.partition("/")[2].partition("?")[0].partition("#")[0]
        found += [tail, tail.rstrip("/").rpartition("/")[2]]
    found += [unquote(part) for part in found]  # as a server may quote them back, decoded
    return list(dict.fromkeys(part for part in found if len(part) >= MIN_SECRET))


def _masked(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # a secret holding another: whole
        text = text.replace(secret, "***")
    return safe(text, 400)


async def _run(center: AlertCenter, principal: PrincipalKey, wait: float) -> list[str]:
    """Trigger, then resolve where the trigger went through; one report line per sink."""
    deadline = time.monotonic() + wait
    delivering = asyncio.create_task(center.dispatcher.run())
    try:
        alert = center.page(
            principal,
            Severity.INFO,
            (TEST_REASON,),
            note="TEST: no action needed",
            operator="tablewatch alert test",
            origin="test",
        )
        triggered = await center.settle(alert.key, wait, retries=True)
        sent = {d.sink: d for d in triggered.deliveries} if triggered else {}
        through = {name for name, d in sent.items() if d.state == "sent"}
        resolved: dict[str, str] = {}
        if through:
            # only the sinks that have the incident are waited for: a resolve queued behind a
            # trigger still retrying would never go
            center.resolve(alert.key, "test over", "tablewatch alert test")
            left = deadline - time.monotonic()
            grace = min(RESOLVE_WAIT, max(RESOLVE_GRACE, left))
            after = await center.settle(alert.key, grace, sinks=through, retries=True)
            if after is not None:
                resolved = {d.sink: d.state for d in after.deliveries if d.sink in through}
    finally:
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
    lines = []
    for name in center.sinks:
        d = sent.get(name)
        if d is None:
            lines.append(f"{name}: FAILED: nothing was sent (the sink rendered no payload)")
        elif d.state == "sent":
            then = resolved.get(name, "")
            after_text = " (then resolved)" if then == "resolved" else f" (resolve: {then})"
            lines.append(f"{name}: ok: {d.detail or 'sent'}{after_text if then else ''}")
        elif d.state == "queued":
            lines.append(f"{name}: FAILED: no answer within {wait:.0f} s: {d.detail}")
        else:
            lines.append(f"{name}: FAILED: {d.detail}")
    return lines


def run_alert_test(
    settings: Settings, sink: str | None, out: TextIO, err: TextIO, *, wait: float = 60.0
) -> int:
    """Send the test alert; 0 when every sink took it, 1 when one did not, 2 on bad usage."""
    host = host_name()
    try:
        sinks = build_sinks(settings.alerts, host=host, local=None)
    except SinkConfigError as exc:
        print(f"tablewatch alert test: {exc}", file=err)
        return EXIT_USAGE
    names = [s.name for s in sinks]
    if not sinks:
        print(
            "tablewatch alert test: no alert sink is configured: add an [alerts.<sink>] table "
            "(pagerduty, alertmanager, opsgenie, slack, webhook, command) to the settings",
            file=err,
        )
        return EXIT_USAGE
    if sink is not None:
        sinks = [s for s in sinks if s.name == sink]
        if not sinks:
            print(
                f"tablewatch alert test: no sink named {safe(sink, 60)!r} is configured "
                f"(configured: {', '.join(names)})",
                file=err,
            )
            return EXIT_USAGE
    table = settings.tables[0].name if settings.tables else "-"
    principal = PrincipalKey("tablewatch", "", "tablewatch alert test", table)
    secrets = _secrets(settings)
    with tempfile.TemporaryDirectory(prefix="tablewatch-alert-test-") as tmp:
        center = AlertCenter(Outbox(Path(tmp) / OUTBOX_FILE), sinks, Rules(page_on=None), host=host)

        async def session() -> list[str]:
            try:
                return await _run(center, principal, wait)
            finally:
                await center.close()

        print(f"tablewatch alert test: sending a test alert to {', '.join(center.sinks)}", file=out)
        lines = asyncio.run(session())
    for line in lines:
        print(_masked(line, secrets), file=out)
    return EXIT_FAILED if any(": FAILED" in line for line in lines) else 0
