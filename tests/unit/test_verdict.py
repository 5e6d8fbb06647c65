"""A sink's HTTP answer decides the outbox's next step: the table every paging API documents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.verdict import DETAIL_CHARS, Outcome, judge, retry_after, unreachable

NOW = datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (202, Outcome.SENT),  # PagerDuty Events v2, Opsgenie
        (204, Outcome.SENT),
        (301, Outcome.FAILED),  # not followed
        (400, Outcome.FAILED),  # bad payload: retrying cannot fix it
        (401, Outcome.FAILED),
        (403, Outcome.FAILED),
        (404, Outcome.FAILED),
        (408, Outcome.RETRY),
        (413, Outcome.FAILED),
        (422, Outcome.FAILED),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (504, Outcome.RETRY),
    ],
)
def test_status_decides(status: int, outcome: Outcome) -> None:
    assert judge(status, b"").outcome is outcome


def test_the_retry_after_of_a_429_or_a_503_is_kept() -> None:
    assert judge(429, b"", "30").retry_after == 30.0
    assert judge(503, b"", "Sun, 29 Nov 2099 09:00:30 GMT").retry_after is not None
    assert judge(500, b"").retry_after is None
    assert judge(400, b"", "30").retry_after is None  # a refusal is not retried at all


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("3600", 3600.0),
        ("Sun, 29 Nov 2026 09:01:00 GMT", 60.0),
        ("Sunday, 29-Nov-26 09:01:00 GMT", 60.0),  # RFC 850, still allowed to be sent
        ("Sun Nov 29 09:01:00 2026", 60.0),  # asctime
        ("Sun, 29 Nov 2026 08:00:00 GMT", 0.0),  # in the past: now
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("soon", None),
        ("٣", None),  # a non-ASCII digit is no delta-seconds
    ],
)
def test_retry_after_forms(header: str, seconds: float | None) -> None:
    assert retry_after(header, NOW) == seconds


def test_the_detail_is_one_safe_bounded_line() -> None:
    body = b'{"message": "bad \x1b]52;c;eA==\x07 key"}\n' + b"x" * 10_000
    verdict = judge(400, body)
    assert verdict.detail.startswith('HTTP 400: {"message": "bad \\x1b]52;c;eA==\\x07 key"}')
    assert "\x1b" not in verdict.detail and "\n" not in verdict.detail
    assert len(verdict.detail) <= DETAIL_CHARS


def test_network_errors_are_retried() -> None:
    verdict = unreachable(ConnectionRefusedError(111, "Connection refused"))
    assert verdict.outcome is Outcome.RETRY and "Connection refused" in verdict.detail
