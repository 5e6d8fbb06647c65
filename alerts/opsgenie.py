"""Opsgenie Alert API: create an alert whose `alias` is our alert key, acknowledge and close it.

https://docs.opsgenie.com/docs/alert-api — create is `POST /v2/alerts` with `message` (<= 130
characters), `alias` (<= 512), `description` (<= 15000), `details` (a flat string map, <= 8000
characters in all), `priority` P1-P5, `source` and `user` (<= 100), `tags` (<= 50 each);
acknowledge and close are `POST /v2/alerts/<alias>/acknowledge|close?identifierType=alias`.

The outbox keeps only bytes, and acknowledge and close go to another path than create, so the
payload this sink renders is an envelope `{"path": "", "body": {...}}`: `deliver` POSTs `body`
to the configured URL + `path` (`""` for create, `/<alias>/close?identifierType=alias`...).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from alerts.base import reveal
from alerts.http import HttpSink
from alerts.render import bounded_key, clip, encode, iso
from core.findings import Severity
from core.safetext import safe
from core.settings import OpsgenieSink
from core.sinks import Action, Alert, Outcome, Step, Verdict

MESSAGE_CHARS = 130
ALIAS_CHARS = 512
DESCRIPTION_CHARS = 15_000
DETAILS_CHARS = 8_000
SOURCE_CHARS = 100
PRIORITIES = {
    Severity.CRITICAL: "P1",
    Severity.WARNING: "P3",
    Severity.INFO: "P5",
    Severity.NONE: "P5",
}
_VERBS = {Action.ACKNOWLEDGE: "acknowledge", Action.RESOLVE: "close"}


class Opsgenie(HttpSink[OpsgenieSink]):
    """The Opsgenie sink, built from `[alerts.opsgenie]`."""

    name = "opsgenie"

    def __init__(self, config: OpsgenieSink, *, host: str) -> None:
        self._api_key = reveal(config.api_key)
        super().__init__(config, host=host, secrets=[self._api_key])

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The envelope `{"path", "body"}` for the action (see the module's docstring)."""
        alias = _alias(trigger) or bounded_key(alert.key, ALIAS_CHARS)
        source = clip(f"tablewatch@{self.host}", SOURCE_CHARS)
        if step.action is not Action.TRIGGER:
            path = f"/{quote(alias, safe='')}/{_VERBS[step.action]}?identifierType=alias"
            body: dict[str, Any] = {"user": clip(step.actor, 100), "source": source}
            if step.note:
                body["note"] = clip(step.note, 25_000)
            return encode({"path": path, "body": body})
        # every field is bounded in characters by construction: no size to fit
        return encode({"path": "", "body": _create(alert, step, alias, source)})

    async def deliver(self, payload: bytes) -> Verdict:
        """POST the envelope's body to the URL + its path; Opsgenie answers 202."""
        try:
            envelope = json.loads(payload)
            path, body = str(envelope["path"]), encode(envelope["body"])
        except (ValueError, KeyError, TypeError):
            return Verdict(
                Outcome.FAILED, "not an Opsgenie envelope (rendered by another version?)"
            )
        url = self.config.url.rstrip("/") + path
        return await self.post(url, body, {"Authorization": f"GenieKey {self._api_key}"})


def _alias(trigger: bytes | None) -> str:
    """The alias the trigger used (so acknowledge and close find that very alert), or ""."""
    try:
        alias = json.loads(trigger or b"")["body"]["alias"]
    except (ValueError, KeyError, TypeError):
        return ""
    return alias if isinstance(alias, str) else ""


def _create(alert: Alert, step: Step, alias: str, source: str) -> dict[str, Any]:
    principal = alert.principal
    body: dict[str, Any] = {
        "message": safe(alert.summary, MESSAGE_CHARS) or f"tablewatch {alert.severity.label}",
        "alias": alias,
        "description": _description(alert),
        "priority": PRIORITIES[alert.severity],
        "details": _details(alert),
        "source": source,
        "tags": ["tablewatch", alert.severity.label],
        "user": clip(step.actor, 100),
    }
    if principal.table:
        body["entity"] = clip(principal.table, 512)
    if step.note:
        body["note"] = clip(step.note, 25_000)
    return body


def _description(alert: Alert) -> str:
    """Plain text for people: the summary, each reason, the (redacted) statement."""
    lines = [safe(alert.summary, 1024)]
    lines += [f"- {safe(r.code, 64)}: {safe(r.detail, 500)}" for r in alert.reasons[:20]]
    if alert.note:
        lines.append(f"note: {safe(alert.note, 1000)}")
    head = "\n".join(lines)
    if alert.statement is None:
        return clip(head, DESCRIPTION_CHARS)
    room = DESCRIPTION_CHARS - len(head) - len("\n\nstatement:\n")
    statement = safe(alert.statement, max(room, 0), keep_newlines=True)
    return clip(f"{head}\n\nstatement:\n{statement}", DESCRIPTION_CHARS)


def _details(alert: Alert) -> dict[str, str]:
    """A flat string map, under the 8000 characters Opsgenie allows keys and values together."""
    fields = {
        "key": alert.key,
        "rule": alert.rule,
        "origin": alert.origin,
        "severity": alert.severity.label,
        **alert.principal.fields(),
        "reasons": ", ".join(r.code for r in alert.reasons[:20]),
        "findings": str(alert.findings),
        "suppressed": str(alert.suppressed),
        "operator": alert.operator,
        "started": iso(alert.started_us),
        "host": alert.host,
    }
    # 15 keys of at most 20 characters and values of at most 400: about 6300 characters
    return {k: clip(v, 400) for k, v in fields.items()}
