"""What a sink's HTTP answer means for the outbox: sent, retry (and when), or failed for good.

The rules every paging API documents the same way (PagerDuty Events v2, Opsgenie, Slack,
Alertmanager): 2xx is taken; 429 and 408 are "later" (after Retry-After when given); 5xx and
network errors are "later"; any other 4xx is a refusal that retrying cannot fix, kept with the
response so the operator sees why. A 3xx is a refusal too: redirects are not followed (a paging
endpoint that redirects is a misconfigured URL, and following it could send an alert elsewhere).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from core.safetext import safe
from core.sinks import Outcome, Verdict

__all__ = ["DETAIL_CHARS", "Outcome", "Verdict", "judge", "retry_after", "unreachable"]

DETAIL_CHARS = 300
"""The response body kept with a failed delivery is cut here."""


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110);
    None when absent or unreadable (the outbox's backoff applies then).

    >>> retry_after("120"), retry_after(" 0 "), retry_after("soon"), retry_after(None)
    (120.0, 0.0, None, None)
    >>> now = datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC)
    >>> retry_after("Sun, 29 Nov 2026 09:00:30 GMT", now)
    30.0
    >>> retry_after("Sun, 29 Nov 2026 08:00:00 GMT", now)
    0.0
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


def judge(status: int, body: bytes, retry_after_header: str | None = None) -> Verdict:
    """The verdict on an HTTP answer.

    >>> judge(202, b"").outcome, judge(503, b"").outcome, judge(400, b"bad key").outcome
    (<Outcome.SENT: 'sent'>, <Outcome.RETRY: 'retry'>, <Outcome.FAILED: 'failed'>)
    >>> judge(429, b"", "7")
    Verdict(outcome=<Outcome.RETRY: 'retry'>, detail='HTTP 429', retry_after=7.0)
    """
    said = f"HTTP {status}"
    text = body.decode("utf-8", "replace").strip()
    if text:
        said = f"{said}: {text}"
    detail = safe(said, DETAIL_CHARS)
    if 200 <= status < 300:
        return Verdict(Outcome.SENT, detail)
    if status in (408, 429):
        return Verdict(Outcome.RETRY, detail, retry_after(retry_after_header))
    if status >= 500:
        return Verdict(Outcome.RETRY, detail, retry_after(retry_after_header))
    return Verdict(Outcome.FAILED, detail)


def unreachable(error: BaseException) -> Verdict:
    """The verdict on a network failure (refused, reset, timed out, TLS): try again later."""
    return Verdict(Outcome.RETRY, safe(f"{type(error).__name__}: {error}", DETAIL_CHARS))
