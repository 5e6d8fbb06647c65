"""`tablewatch replay` without --events: findings as JSON lines (DESIGN.md, CLI contract), and the
demo that shows them."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tablewatch.cli import SAMPLE_LOG
from tablewatch.findings_text import print_findings
from tests.unit.pglog import FORMATS, READER, Origin, audit_message, csvlog
from tests.unit.test_cli_replay import assert_one_line_error, run_script, write_log


@pytest.fixture(autouse=True)
def _isolated(isolated: Path) -> Path:
    """Every test here runs in a fresh directory (tests/unit/conftest.py)."""
    return isolated


FINDING_FIELDS = [
    "time",
    "severity",
    "score",
    "user",
    "client_addr",
    "application_name",
    "table",
    "reasons",
]
APP = replace(READER, user="app", application_name="crm-web", host="10.0.0.1")
REVOKE = audit_message(
    "REVOKE SELECT ON crm.client_list FROM auditor;",
    audit_type="SESSION",
    class_="ROLE",
    command="REVOKE",
    object_type="",
    object_name="",
)
"""The superuser ending object audit of the table (a ROLE record that names no table)."""


def lookups(origin: Origin, day: int, count: int = 30, first_id: int = 1) -> bytes:
    """`count` key lookups by `origin` over the working hours of 2026-11-(2+day)."""
    records = []
    for i in range(count):
        at = origin.at(f"2026-11-{2 + day:02d} {9 + i * 8 // count:02d}:{i % 60:02d}:00.000 UTC")
        message = audit_message(
            "SELECT name FROM crm.client_list WHERE id = $1",
            (str((first_id + i * 7919) % 5000),),
            statement_id=i + 1,
            command="BIND",
        )
        records.append(csvlog(message, at))
    return b"".join(records)


def test_findings_follow_the_contract(tablewatch: Any) -> None:
    run = tablewatch("replay", "--table", "crm.client_list=2000", SAMPLE_LOG)
    assert (run.code, run.err) == (0, "")
    findings = [json.loads(line) for line in run.out.splitlines()]
    assert findings
    for f in findings:
        assert list(f) == FINDING_FIELDS
        assert f["severity"] in ("info", "warning", "critical")
        assert isinstance(f["score"], int) and 0 <= f["score"] <= 100
        assert f["table"] == "crm.client_list"
        assert f["time"].endswith("+00:00") and f["time"][10] == "T"
        assert f["reasons"] and all(list(r) == ["code", "detail"] for r in f["reasons"])
        assert all(r["detail"] for r in f["reasons"])
    assert [f["time"] for f in findings] == sorted(f["time"] for f in findings)
    alice = [f for f in findings if f["user"] == "alice"]
    assert alice[0]["severity"] == "critical"
    assert alice[0]["reasons"][0]["code"] == "bulk_read"
    assert (
        "2,000 rows (100% of the table), rows logged by pgaudit"
        in (alice[0]["reasons"][0]["detail"])
    )


def test_a_whole_table_read_is_a_critical_finding_from_the_first_record(tablewatch: Any) -> None:
    log = write_log(
        "postgresql.csv",
        csvlog(audit_message("SELECT * FROM crm.client_list;"), READER),
    )
    run = tablewatch("replay", "--table", "crm.client_list=50000", log)
    [finding] = [json.loads(line) for line in run.out.splitlines()]
    assert finding["severity"] == "critical" and finding["time"] == "2026-11-29T03:41:04.994+00:00"
    assert "estimated from its shape (SELECT * without WHERE)" in finding["reasons"][0]["detail"]


def test_learned_habits_carry_over_with_state_dir(tablewatch: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    monday = write_log("monday.csv", lookups(APP, 0))
    wednesday = write_log(
        "wednesday.csv", lookups(APP, 2) + lookups(replace(APP, host="10.0.0.99"), 2, 3)
    )
    first = tablewatch("replay", "--table", "crm.client_list=5000", "--state-dir", state, monday)
    assert (first.code, first.out, first.err) == (0, b"", "")
    assert (state / "baselines.json").is_file()
    # without the state, Wednesday is a fresh install still learning: nothing raised
    fresh = tablewatch("replay", "--table", "crm.client_list=5000", wednesday)
    assert fresh.out == b""
    # with it, Monday's habits are known: the new address is
    warm = tablewatch("replay", "--table", "crm.client_list=5000", "--state-dir", state, wednesday)
    [finding] = [json.loads(line) for line in warm.out.splitlines()]
    assert finding["client_addr"] == "10.0.0.99"
    assert [r["code"] for r in finding["reasons"]] == ["new_address"]


def test_corrupt_state_is_refused_with_one_line(tablewatch: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "baselines.json").write_text("[1, 2")
    run = tablewatch(
        "replay", "--table", "crm.client_list", "--state-dir", state, write_log("x.csv", b"")
    )
    assert_one_line_error(run, "corrupt baselines", "move it away")


def test_an_unknown_table_size_is_said_on_stderr(tablewatch: Any) -> None:
    log = write_log("postgresql.csv", lookups(APP, 0, 3))
    run = tablewatch("replay", "--table", "crm.client_list", log)
    assert run.code == 0
    assert "the size of crm.client_list is unknown" in run.err
    assert "--table crm.client_list=ROWS" in run.err


def test_tampering_in_the_log_is_a_critical_finding(tablewatch: Any) -> None:
    dba = replace(READER, user="postgres", application_name="psql")
    log = write_log("postgresql.csv", csvlog(REVOKE, dba))
    run = tablewatch("replay", "--table", "crm.client_list=100", log)
    [finding] = [json.loads(line) for line in run.out.splitlines()]
    assert finding["severity"] == "critical" and finding["user"] == "postgres"
    assert finding["reasons"][0]["code"] == "audit_tamper"
    # and the record is not an access event: --events leaves it out
    assert tablewatch("replay", "--events", "--table", "crm.client_list", log).out == b""


def test_hostile_names_reach_the_json_intact_and_the_demo_text_escaped(tablewatch: Any) -> None:
    evil = replace(READER, user="mallory", application_name="\x1b]52;c;cGF3bmVk\x07[bold]x[/]")
    log = write_log("postgresql.csv", csvlog(audit_message("TABLE crm.client_list"), evil))
    run = tablewatch("replay", "--table", "crm.client_list=10", log)
    [finding] = [json.loads(line) for line in run.out.splitlines()]
    assert finding["application_name"] == evil.application_name  # JSON keeps the raw value
    text = io.StringIO()
    assert print_findings(run.out, text) == 1
    shown = text.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]52;c;cGF3bmVk\\x07[bold]x[/]" in shown  # visible, literal, harmless


def test_demo_shows_readers_and_findings(tablewatch: Any) -> None:
    run = tablewatch("demo")
    assert run.code == 0, run.err
    text = run.out.decode()
    assert "alice@127.0.0.1 DBeaver 23.1" in text
    assert "CRITICAL" in text and "bulk_read" in text
    assert "expected principal (nightly backup)" in text


@pytest.mark.parametrize("argv", [["replay", "--table", "crm.client_list", "missing.csv"]])
def test_console_script_findings_error_is_one_line(argv: list[str]) -> None:
    assert_one_line_error(run_script(*argv), "missing.csv")


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
def test_findings_are_the_same_from_every_log_format(tablewatch: Any, fmt: str) -> None:
    write = FORMATS[fmt]
    dba = replace(READER, user="postgres", application_name="psql", session_id="6b0b9ed0.1e99")
    log = write_log(
        f"postgresql.{fmt}",
        write(audit_message("SELECT *\n  FROM crm.client_list;"), READER)
        + write(REVOKE, dba.at("2026-11-29 03:41:05.000 UTC")),
    )
    run = tablewatch("replay", "--format", fmt, "--table", "crm.client_list=500", log)
    assert run.code == 0, run.err
    found = [
        (f["user"], f["severity"], f["reasons"][0]["code"])
        for f in map(json.loads, run.out.splitlines())
    ]
    assert found == [("reader", "critical", "bulk_read"), ("postgres", "critical", "audit_tamper")]
