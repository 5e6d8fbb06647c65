"""The alert rules: which severities page, quiet hours, flood control with exact counts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.rules import MINUTE_US, FloodGate, Rules
from core.findings import PrincipalKey, Severity
from core.settings import AlertsSettings

HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
MIDNIGHT = 20_000 * DAY_US
"""A UTC midnight."""


def who(user: str, table: str = "crm.client_list") -> PrincipalKey:
    return PrincipalKey(user, "10.0.0.9", "psql", table)


def test_settings_become_rules_in_microseconds() -> None:
    rules = Rules.from_settings(
        AlertsSettings(
            page_on="warning",
            renotify=timedelta(minutes=30),
            resolve_after=timedelta(minutes=10),
            flood_window=timedelta(minutes=5),
            flood_per_principal=2,
            flood_total=7,
            quiet_hours="22:00-06:30",
        )
    )
    assert rules.page_on is Severity.WARNING and rules.name == "warning"
    assert rules.renotify_us == 30 * MINUTE_US and rules.resolve_after_us == 10 * MINUTE_US
    assert rules.flood_window_us == 5 * MINUTE_US
    assert (rules.flood_per_principal, rules.flood_total) == (2, 7)
    assert rules.quiet == (22 * 60, 6 * 60 + 30)


@pytest.mark.parametrize(
    ("page_on", "paged"),
    [
        ("critical", [Severity.CRITICAL]),
        ("warning", [Severity.WARNING, Severity.CRITICAL]),
        ("none", []),
    ],
)
def test_which_severities_page(page_on: str, paged: list[Severity]) -> None:
    rules = Rules.from_settings(AlertsSettings(page_on=page_on))  # type: ignore[arg-type]
    assert [s for s in Severity if rules.pages(s)] == paged


@pytest.mark.parametrize("bad", ["22-07", "25:00-07:00", "07:00-07:00", "nightly", "7:00"])
def test_bad_quiet_hours_are_refused_in_settings(bad: str) -> None:
    with pytest.raises(ValueError, match="quiet_hours"):
        AlertsSettings(quiet_hours=bad)


@pytest.mark.parametrize(
    ("quiet", "at_minute", "until_minute"),
    [
        ((22 * 60, 7 * 60), 23 * 60, (24 + 7) * 60),  # before midnight: ends tomorrow 07:00
        ((22 * 60, 7 * 60), 3 * 60, 7 * 60),  # after midnight: ends today 07:00
        ((22 * 60, 7 * 60), 22 * 60, (24 + 7) * 60),  # the first minute is quiet
        ((22 * 60, 7 * 60), 7 * 60, None),  # the end minute is not
        ((22 * 60, 7 * 60), 12 * 60, None),
        ((12 * 60, 14 * 60), 13 * 60 + 30, 14 * 60),  # a daytime span
        ((12 * 60, 14 * 60), 11 * 60, None),
    ],
)
def test_quiet_hours_hold_pages_until_they_end(
    quiet: tuple[int, int], at_minute: int, until_minute: int | None
) -> None:
    rules = Rules(quiet=quiet)
    until = rules.quiet_until(MIDNIGHT + at_minute * MINUTE_US + 5_000_000)
    assert until == (None if until_minute is None else MIDNIGHT + until_minute * MINUTE_US)


def test_no_quiet_hours_by_default() -> None:
    assert Rules.from_settings(AlertsSettings()).quiet is None
    assert Rules().quiet_until(MIDNIGHT + 3 * HOUR_US) is None


def test_flood_control_bounds_pages_per_reader_whatever_the_table() -> None:
    gate = FloodGate(Rules(flood_per_principal=2, flood_total=100))
    t = MIDNIGHT
    assert gate.admit(who("mallory", "crm.a"), t)
    assert gate.admit(who("mallory", "crm.b"), t + 1)
    assert not gate.admit(who("mallory", "crm.c"), t + 2)
    assert not gate.admit(who("mallory", "crm.a"), t + 3)
    assert gate.admit(who("bob"), t + 4)  # another reader is not held back
    assert gate.suppressed == 2
    assert gate.release(who("mallory", "crm.z")) == 2  # handed to mallory's next page
    assert gate.release(who("mallory")) == 0


def test_flood_control_bounds_pages_overall_and_counts_every_one_held_back() -> None:
    gate = FloodGate(Rules(flood_per_principal=3, flood_total=20))
    admitted = sum(gate.admit(who(f"user{i}"), MIDNIGHT + i) for i in range(10_000))
    assert admitted == 20
    assert gate.suppressed == 9_980
    assert sum(gate.held.values()) == 9_980


def test_the_flood_window_slides() -> None:
    rules = Rules(flood_window_us=HOUR_US, flood_per_principal=1, flood_total=2)
    gate = FloodGate(rules)
    assert gate.admit(who("a"), MIDNIGHT)
    assert gate.admit(who("b"), MIDNIGHT + 10 * MINUTE_US)
    assert not gate.admit(who("c"), MIDNIGHT + 59 * MINUTE_US)  # two in the last hour
    assert gate.admit(who("c"), MIDNIGHT + 61 * MINUTE_US)  # a's page left the window
    assert not gate.admit(who("c"), MIDNIGHT + 62 * MINUTE_US)  # c: one per hour
    assert gate.admit(who("a"), MIDNIGHT + HOUR_US + 11 * MINUTE_US)
    assert gate.suppressed == 2


def test_the_suppressed_total_carries_over_a_restart() -> None:
    gate = FloodGate(Rules(), suppressed=41)
    assert gate.suppressed == 41


def test_a_million_readers_flooding_keep_the_gate_bounded_and_the_count_exact() -> None:
    # application_name is the reader's to choose: one per connection costs an attacker nothing
    rules = Rules(flood_window_us=MINUTE_US, flood_per_principal=3, flood_total=20)
    gate = FloodGate(rules)
    admitted = largest = 0
    for i in range(1_000_000):
        p = PrincipalKey("mallory", "10.0.0.66", f"app-{i}", "crm.client_list")
        admitted += gate.admit(p, MIDNIGHT + i * 1_000)  # one a millisecond: 16 windows
        if i % 997 == 0:
            largest = max(largest, len(gate.held), len(gate._by_reader))
    assert largest <= FloodGate.HELD_READERS
    assert len(gate._by_reader) <= 2 * rules.flood_total  # the window's pages, little more
    assert gate.suppressed == 1_000_000 - admitted
    assert sum(gate.held.values()) + gate.held_others == gate.suppressed  # none lost


def test_window_entries_of_readers_gone_quiet_are_swept() -> None:
    rules = Rules(flood_window_us=HOUR_US, flood_per_principal=1, flood_total=100)
    gate = FloodGate(rules)
    for i in range(50):
        assert gate.admit(who(f"user{i}"), MIDNIGHT + i)
    assert len(gate._by_reader) == 50
    gate.sweep(MIDNIGHT + HOUR_US + 10)  # user0..user10's pages left the window
    assert len(gate._by_reader) == 39
    assert not gate.admit(who("user49"), MIDNIGHT + HOUR_US + 11)  # still counted
    assert gate.admit(who("user0"), MIDNIGHT + HOUR_US + 12)


def test_held_back_counts_stay_per_reader_within_the_cap() -> None:
    gate = FloodGate(Rules(flood_per_principal=1, flood_total=1))
    assert gate.admit(who("first"), MIDNIGHT)
    extra = FloodGate.HELD_READERS + 500
    for i in range(extra):
        assert not gate.admit(who(f"user{i}"), MIDNIGHT + 1 + i)
    assert not gate.admit(who("user0"), MIDNIGHT + extra + 1)
    assert len(gate.held) <= FloodGate.HELD_READERS
    assert gate.suppressed == extra + 1
    assert sum(gate.held.values()) + gate.held_others == extra + 1
