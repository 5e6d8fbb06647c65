"""The Alertmanager sink: alerts posted to Alertmanager's API v2 (`POST <url>/api/v2/alerts`).

Alertmanager knows an alert by its label set (the fingerprint), so the labels are fixed per alert
and the stable `alert_key` is one of them: a re-send, an acknowledge and a resolve all land on the
same alert. A trigger carries no `endsAt`: Alertmanager then resolves the alert by itself after
its `resolve_timeout` unless it is re-sent, hence `resend_seconds`. Alertmanager has no
acknowledge: the alert is re-sent, still firing, with `acknowledged_by`/`acknowledged_note`
annotations. A resolve is the same alert with `endsAt` set.

Label and annotation values are attacker-controlled (user names, application_name, statement
text): they are escaped of control characters, kept valid UTF-8 and bounded, so a hostile value
never makes Alertmanager refuse the alert nor reaches a notification template raw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from alerts.verdict import judge, unreachable
from core.safetext import safe
from core.settings import AlertmanagerSink
from core.sinks import Action, Alert, Outcome, RateLimit, Step, Verdict

__all__ = ["ALERTNAME", "Alertmanager", "rfc3339"]

ALERTNAME = "TablewatchReader"
"""The `alertname` label of every alert (what Alertmanager routes and groups by first)."""
LABEL_CHARS = 200
"""A label value is cut here (labels are indexed and shown in every notification)."""
TEXT_CHARS = 1000
"""An annotation (summary, notes) is cut here..."""
LONG_CHARS = 4000
"""...except the description and the statement."""
BODY_BYTES = 64 * 1024
"""At most this much of a response is read (only its start is kept with a verdict)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(time_us: int) -> str:
    """Microseconds since the epoch as an RFC 3339 UTC time, as Alertmanager reads it.

    >>> rfc3339(1_795_942_800_123_456)
    '2026-11-29T09:00:00.123456Z'
    """
    when = _EPOCH + timedelta(microseconds=time_us)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _text(value: str, limit: int, *, keep_newlines: bool = False) -> str:
    """`value` escaped, bounded and valid UTF-8 (a lone surrogate shown as `\\udcxx`)."""
    # Escaping only lengthens, so the first limit+1 characters decide the result: a 2 MB
    # statement costs no more than a short one.
    head = value[: limit + 1].encode("utf-8", "backslashreplace").decode("utf-8")
    return safe(head, limit, keep_newlines=keep_newlines)


def _labels(alert: Alert, host: str) -> dict[str, str]:
    p = alert.principal
    labels = {
        "alertname": ALERTNAME,
        "alert_key": alert.key,
        "rule": alert.rule,
        "severity": alert.severity.label,
        "table": p.table,
        "user": p.user,
        "client_addr": p.client_addr,
        "application_name": p.application_name,
        "instance": alert.host or host,
    }
    # Alertmanager drops empty labels itself; leaving them out keeps what we send equal to what
    # it stores (and its fingerprint).
    return {name: _text(value, LABEL_CHARS) for name, value in labels.items() if value}


def _trigger_labels(trigger: bytes | None) -> dict[str, str] | None:
    """The labels of the trigger payload, when it is one of ours."""
    if trigger is None:
        return None
    try:
        sent = json.loads(trigger)
    except ValueError:
        return None
    if not isinstance(sent, list) or not sent or not isinstance(sent[0], dict):
        return None
    labels = sent[0].get("labels")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        return None
    return labels


def _annotations(alert: Alert, step: Step) -> dict[str, str]:
    reasons = "\n".join(_text(f"{r.code}: {r.detail}", TEXT_CHARS) for r in alert.reasons)
    notes = {
        "summary": _text(alert.summary, TEXT_CHARS),
        "description": _text(reasons, LONG_CHARS, keep_newlines=True),
        "findings": str(alert.findings),
        "suppressed": str(alert.suppressed),
        "statement": _text(alert.statement or "", LONG_CHARS, keep_newlines=True),
        "note": _text(alert.note, TEXT_CHARS, keep_newlines=True),
        "operator": _text(alert.operator, LABEL_CHARS),
    }
    if step.action is Action.ACKNOWLEDGE:
        notes["acknowledged_by"] = _text(step.actor, LABEL_CHARS)
        notes["acknowledged_note"] = _text(step.note, TEXT_CHARS, keep_newlines=True)
    return {name: value for name, value in notes.items() if value}


class Alertmanager:
    """Posts alerts to an Alertmanager (`[alerts.alertmanager]`)."""

    def __init__(self, config: AlertmanagerSink, *, host: str) -> None:
        self._url = config.url.rstrip("/") + "/api/v2/alerts"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())
        self._resend = config.resend.total_seconds()
        self._host = host
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        """`alertmanager`."""
        return "alertmanager"

    @property
    def limit(self) -> RateLimit | None:
        """None: Alertmanager documents no rate limit (it is ours to run)."""
        return None

    @property
    def resend_seconds(self) -> float | None:
        """The configured `resend`: active alerts are re-posted this often."""
        return self._resend

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """One postable alert (a JSON array of one) for a trigger, acknowledge or resolve.

        Acknowledge and resolve take their labels from `trigger` when given, so they reach the
        alert Alertmanager holds even if the alert's severity has moved since.
        """
        posted: dict[str, Any] = {
            "labels": _trigger_labels(trigger) or _labels(alert, self._host),
            "annotations": _annotations(alert, step),
            "startsAt": rfc3339(alert.started_us),
        }
        if step.action is Action.RESOLVE:
            # Alertmanager refuses an end before the start (a clock stepped back): end at start.
            posted["endsAt"] = rfc3339(max(step.time_us, alert.started_us))
        return json.dumps([posted], ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def bucket(self, payload: bytes) -> str:
        """One bucket: there is no limit to share out."""
        return ""

    def aggregate(self, payloads: Sequence[bytes]) -> bytes | None:
        """None: never needed without a rate limit."""
        return None

    async def deliver(self, payload: bytes) -> Verdict:
        """POST the payload; the answer (or the network error) judged for the outbox."""
        if self._session is None or self._session.closed:
            # Created here, inside the running loop that will use it.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self._url,
                data=payload,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                body = await _read_at_most(response.content, BODY_BYTES)
                return judge(response.status, body, response.headers.get("Retry-After"))
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            # A settings mistake that no retry mends. The URL itself is not echoed: it may
            # carry basic-auth credentials.
            kind = type(exc).__name__
            return Verdict(Outcome.FAILED, f"{kind}: check [alerts.alertmanager] url")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return unreachable(exc)

    async def close(self) -> None:
        """Close the HTTP session (a later deliver opens a new one)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a response body: a huge or endless answer is cut, not buffered."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
