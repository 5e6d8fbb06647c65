"""The header's health line with the database sources: a source in trouble comes first with its
reason; of the sources that are well, the first (the audit log) is shown in full and the others
are counted, so that at 80 columns the line still says what matters."""

from __future__ import annotations

from core.snapshot import Snapshot
from core.sources import SourceHealth
from tui.header import header

NAMES = ("audit_log", "pg_stat_user_tables", "pg_stat_statements", "pg_stat_activity",
         "audit_setup")  # fmt: skip


def _second_line(sources: tuple[SourceHealth, ...]) -> str:
    snap = Snapshot(1_000_000, (), (), 0, False, sources=sources)
    return header(snap, name="in-process", operator="root").plain.splitlines()[1]


def test_sources_that_are_well_are_counted_after_the_first() -> None:
    line = _second_line(tuple(SourceHealth(n, "ok") for n in NAMES))
    assert line.startswith("audit_log ✓ ok")
    assert "│ +4 ok │" in line
    assert "pg_stat" not in line


def test_a_source_in_trouble_comes_first_with_its_reason() -> None:
    sources = tuple(
        SourceHealth(n, "error", "cannot connect: connection refused")
        if n == "pg_stat_statements"
        else SourceHealth(n, "ok")
        for n in NAMES
    )
    line = _second_line(sources)
    assert line.startswith("pg_stat_statements ✗ ERROR cannot connect: connection refused")
    assert "audit_log ✓ ok" in line and "+3 ok" in line
