"""What every sink's payload is made of: bounded text, the alert's details, compact JSON.

Payloads are JSON encoded as ASCII (`\\uXXXX` escapes): whatever the raw names hold, the bytes can
never be invalid UTF-8, and a C1 control or a bidi override travels escaped, not as a byte a
terminal downstream might act on. Sizes are therefore counted on the encoded bytes, and
character limits (the services count characters) on the decoded strings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.findings import Reason, Severity
from core.safetext import ELLIPSIS
from core.sinks import Alert, Step

__all__ = [
    "Bounds",
    "LEVELS",
    "bounded_key",
    "clip",
    "details",
    "document",
    "encode",
    "fit",
    "iso",
    "MAX_DOCUMENT",
    "render_document",
    "top_reason",
    "worst",
]

T = TypeVar("T")

MAX_DOCUMENT = 1024 * 1024
"""The generic document's size bound (webhook body, command stdin)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much of the alert's free text a payload keeps; `fit` tries smaller ones in turn."""

    statement: int = 16_000
    text: int = 1_000
    """A note, a reason's detail."""
    name: int = 256
    """user, client_addr, application_name, table, operator."""
    reasons: int = 20


LEVELS: tuple[Bounds, ...] = (
    Bounds(),
    Bounds(statement=2_000, text=300, name=128, reasons=8),
    Bounds(statement=200, text=100, name=64, reasons=3),
)
"""From generous to minimal; the last one fits every service's limit by construction."""


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters (an ellipsis marks the cut), lone surrogates
    (undecodable bytes smuggled through a log) replaced so the text is valid Unicode.

    >>> clip("abcdef", 4), clip("abc", 4), clip("a\\udcff", 4)
    ('abc…', 'abc', 'a?')
    """
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + ELLIPSIS if limit > 0 else ""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def bounded_key(key: str, limit: int) -> str:
    """A dedup key within `limit` characters that stays unique: a long key keeps its head and
    gains a hash of the whole (cutting alone could merge two alerts into one incident).

    >>> bounded_key("k" * 10, 10)
    'kkkkkkkkkk'
    >>> len(bounded_key("k" * 300, 255)), bounded_key("k" * 300, 255)[-17:-16]
    (255, '~')
    """
    key = clip(key, len(key))  # lone surrogates only
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return key[: limit - 17] + "~" + digest


def encode(document: Any) -> bytes:
    """Compact ASCII JSON of valid Unicode: a lone surrogate (which JSON would carry as an
    escape that strict parsers refuse) becomes `?`.

    >>> encode({"user": "ann\\udcff", "n": [1]})
    b'{"user":"ann?","n":[1]}'
    """
    text = json.dumps(_valid(document), ensure_ascii=True, separators=(",", ":"))
    return text.encode("ascii")


def _valid(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_valid(k): _valid(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid(v) for v in value]
    return value


def iso(time_us: int) -> str:
    """ISO 8601 in UTC, milliseconds.

    >>> iso(1_764_387_664_994_000)
    '2025-11-29T03:41:04.994Z'
    """
    when = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def top_reason(alert: Alert) -> Reason | None:
    """The reason that weighs most (the first of equals)."""
    if not alert.reasons:
        return None
    return max(alert.reasons, key=lambda r: (r.severity, r.score))


def worst(severities: Sequence[Severity]) -> Severity:
    """The most urgent of them (NONE for none)."""
    return max(severities, default=Severity.NONE)


def details(alert: Alert, bounds: Bounds = LEVELS[0]) -> dict[str, Any]:
    """The alert as structured details: who read what, why, what was run (already redacted),
    and the alert's bookkeeping. Every text is bounded."""
    fields = {k: clip(v, bounds.name) for k, v in alert.principal.fields().items()}
    reasons = [
        {"code": clip(r.code, 64), "detail": clip(r.detail, bounds.text)}
        for r in alert.reasons[: bounds.reasons]
    ]
    return {
        "key": clip(alert.key, 1024),
        "rule": clip(alert.rule, 128),
        "origin": clip(alert.origin, 32),
        "severity": alert.severity.label,
        "summary": clip(alert.summary, 1024),
        **fields,
        "reasons": reasons,
        "reasons_not_listed": len(alert.reasons) - len(reasons),
        "statement": None if alert.statement is None else clip(alert.statement, bounds.statement),
        "findings": alert.findings,
        "suppressed": alert.suppressed,
        "note": clip(alert.note, bounds.text),
        "operator": clip(alert.operator, bounds.name),
        "started": iso(alert.started_us),
        "host": clip(alert.host, bounds.name),
    }


def document(alert: Alert, step: Step, bounds: Bounds = LEVELS[0]) -> dict[str, Any]:
    """The generic JSON document (webhook body, command stdin): version, action, key, the alert's
    details and the step taken."""
    return {
        "version": 1,
        "action": step.action.value,
        "key": clip(alert.key, 1024),
        "alert": details(alert, bounds),
        "step": {
            "action": step.action.value,
            "time": iso(step.time_us),
            "actor": clip(step.actor, bounds.name),
            "note": clip(step.note, bounds.text),
        },
    }


def render_document(alert: Alert, step: Step, limit: int = MAX_DOCUMENT) -> bytes:
    """`document` encoded, within `limit` bytes."""
    return fit(lambda bounds: encode(document(alert, step, bounds)), len, limit)


def fit(build: Callable[[Bounds], T], size: Callable[[T], int], limit: int) -> T:
    """The first of `build(level)` for LEVELS whose size is within `limit`.

    Raises:
        ValueError: not even the smallest fits (a bug in the sink: its last level must fit).
    """
    for bounds in LEVELS:
        built = build(bounds)
        if size(built) <= limit:
            return built
    raise ValueError(f"payload exceeds {limit} even at the smallest bounds")
