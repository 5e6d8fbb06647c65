"""`tablewatch replay --events`: log files in, the JSON lines of the CLI contract out.

Runs `tablewatch.cli.main` in-process (cwd = a fresh directory, so no settings.toml is found) and,
where the exit status and the stderr line of the real console script matter, the script itself.
Bad arguments and files that are not logs: exit 2 and one line on stderr. A malformed record inside
a log: skipped, counted on stderr at the end, exit 0.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.pgaudit import parse_audit_message
from tests.unit.cli_run import Run
from tests.unit.pglog import (
    CHECKPOINTER,
    FORMATS,
    READER,
    Origin,
    audit_message,
    corpus_messages,
    csvlog,
    jsonlog,
    stderr,
)

CONTRACT_FIELDS = [
    "time",
    "user",
    "database",
    "client_addr",
    "application_name",
    "session_id",
    "audit_type",
    "statement_id",
    "substatement_id",
    "class",
    "command",
    "object_type",
    "object_name",
    "statement",
    "parameters",
    "rows",
]
SCRIPT = Path(sys.executable).with_name("tablewatch")
EXTENSIONS = {"csvlog": ".csv", "jsonlog": ".json", "stderr": ".log"}


@pytest.fixture(autouse=True)
def _isolated(isolated: Path) -> Path:
    """Every test here runs in a fresh directory (tests/unit/conftest.py)."""
    return isolated


def run_script(*argv: str | Path) -> Run:
    """Run the installed console script (a real process: exit status, tracebacks, stderr)."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    proc = subprocess.run(
        [str(SCRIPT), *map(str, argv)], capture_output=True, timeout=60, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr.decode())


def write_log(name: str, *records: bytes) -> Path:
    """A log file in the working directory (gzip-compressed when the name ends in .gz)."""
    data = b"".join(records)
    path = Path(name)
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def assert_one_line_error(run: Run, *words: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr holding `words`, no traceback."""
    assert run.code == 2, run.err
    assert run.out == b""
    assert len(run.err_lines()) == 1, run.err
    assert "Traceback" not in run.err
    for word in words:
        assert word in run.err


# A trail that exercises every field of the contract.
TRAIL = [
    audit_message("SELECT * FROM crm.client_list", rows=50000),
    audit_message(
        "SELECT * FROM crm.client_list WHERE org = $1 AND tags = $2 AND note = $3",
        ("Org 1,5", "{1,2,3}", 'say "hi"'),
        statement_id=2,
        command="BIND",
        rows=1,
    ),
    audit_message("<not logged>", "<not logged>", statement_id=3),
    audit_message("SELECT *\n  FROM crm.client_list\n WHERE id = 1", statement_id=4),
    audit_message("SELECT $1", ("1", "<long param suppressed>"), statement_id=5),
    audit_message(
        "SELECT * FROM public.orders", statement_id=6, object_name="public.orders"
    ),  # not watched
    audit_message(
        "UPDATE crm.client_list SET x = 1", statement_id=7, class_="WRITE", command="UPDATE"
    ),
]


def trail(fmt: str) -> bytes:
    """TRAIL as a server log of `fmt`, with background noise around it."""
    write = FORMATS[fmt]
    noise = write("checkpoint starting: time", CHECKPOINTER)
    return noise + b"".join(
        write(m, READER.at(f"2026-11-29 03:41:0{i}.{i}00 UTC")) for i, m in enumerate(TRAIL)
    )


# ----------------------------------------------------------------------------- the JSON contract


def test_events_follow_the_contract_exactly(tablewatch: Any) -> None:
    path = write_log("postgresql.csv", trail("csvlog"))
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert (run.code, run.err) == (0, "")
    events = run.events()
    assert [e["statement_id"] for e in events] == [1, 2, 3, 4, 5, 7]
    for event in events:
        assert list(event) == CONTRACT_FIELDS
        assert datetime.fromisoformat(event["time"]).utcoffset() is not None
    first, bind, not_logged, multiline, suppressed, update = events
    assert first == {
        "time": "2026-11-29T03:41:00.000+00:00",
        "user": "reader",
        "database": "postgres",
        "client_addr": "127.0.0.1",
        "application_name": "psql",
        "session_id": "6b0b9ed0.1e32",
        "audit_type": "OBJECT",
        "statement_id": 1,
        "substatement_id": 1,
        "class": "READ",
        "command": "SELECT",
        "object_type": "TABLE",
        "object_name": "crm.client_list",
        "statement": "SELECT * FROM crm.client_list",
        "parameters": None,
        "rows": 50000,
    }
    assert bind["time"] == "2026-11-29T03:41:01.100+00:00"
    assert (bind["command"], bind["parameters"], bind["rows"]) == (
        "BIND",
        ["Org 1,5", "{1,2,3}", 'say "hi"'],
        1,
    )
    assert (not_logged["statement"], not_logged["parameters"], not_logged["rows"]) == (
        None,
        None,
        None,
    )
    assert multiline["statement"] == "SELECT *\n  FROM crm.client_list\n WHERE id = 1"
    assert suppressed["parameters"] == ["1", "<long param suppressed>"]
    assert (update["class"], update["command"]) == ("WRITE", "UPDATE")


def test_non_utc_log_time_keeps_the_instant(tablewatch: Any) -> None:
    path = write_log("cet.csv", csvlog(audit_message(), READER.at("2026-11-29 04:41:04.994 CET")))
    (event,) = tablewatch("replay", "--events", "--table", "crm.client_list", path).events()
    assert datetime.fromisoformat(event["time"]) == datetime.fromisoformat(
        "2026-11-29T03:41:04.994+00:00"
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_format_auto_reads_every_format_plain_or_gzip(tablewatch: Any, fmt: str, gz: bool) -> None:
    reference = write_log("reference.csv", trail("csvlog"))
    expected = tablewatch("replay", "--events", "--table", "crm.client_list", reference).events()
    path = write_log("postgresql" + EXTENSIONS[fmt] + (".gz" if gz else ""), trail(fmt))
    run = tablewatch("replay", "--events", "--format", "auto", "--table", "crm.client_list", path)
    assert (run.code, run.err) == (0, "")
    if fmt == "stderr":  # the default prefix has no %c
        expected = [e | {"session_id": ""} for e in expected]
    assert run.events() == expected


def test_gzip_is_recognised_by_content_not_name(tablewatch: Any) -> None:
    path = write_log("postgresql.csv.gz", trail("csvlog"))
    renamed = path.rename("rotated.1")
    run = tablewatch("replay", "--events", "--table", "crm.client_list", renamed)
    assert len(run.events()) == 6


@pytest.mark.parametrize("fmt", FORMATS)
def test_explicit_format(tablewatch: Any, fmt: str) -> None:
    path = write_log("no-extension", trail(fmt))
    run = tablewatch("replay", "--events", "--format", fmt, "--table", "crm.client_list", path)
    assert (run.code, len(run.events())) == (0, 6)


def test_whole_corpus_through_the_cli(tablewatch: Any) -> None:
    messages = corpus_messages()
    path = write_log("corpus.json", *(jsonlog(m) for m in messages))
    run = tablewatch("replay", "--events", "--table", "public.account", path)
    assert (run.code, run.err) == (0, "")
    about_account = [parse_audit_message(m) for m in messages if ",public.account," in m]
    assert len(about_account) > 10
    assert [(e["object_name"], e["statement_id"], e["rows"]) for e in run.events()] == [
        (f.object_name, f.statement_id, f.rows) for f in about_account
    ]


def test_stderr_with_another_prefix(tablewatch: Any) -> None:
    line = (
        "2026-11-29 03:41:04 UTC [7730]: [3-1] user=reader,db=crm,app=psql,client=10.0.0.5 "
        f"LOG:  {audit_message()}\n"
    )
    path = write_log("postgresql.log", line.encode())
    prefix = "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h "
    run = tablewatch(
        "replay", "--events", "--log-line-prefix", prefix, "--table", "crm.client_list", path
    )
    (event,) = run.events()
    assert (event["user"], event["database"], event["client_addr"]) == ("reader", "crm", "10.0.0.5")


# ---------------------------------------------------------------------------- watched tables


def test_unqualified_table_matches_any_schema_and_rows_are_accepted(tablewatch: Any) -> None:
    path = write_log(
        "postgresql.csv",
        csvlog(audit_message(object_name="crm.client_list")),
        csvlog(audit_message(object_name="archive.client_list")),
        csvlog(audit_message(object_name="crm.orders")),
    )
    run = tablewatch("replay", "--events", "--table", "client_list=50000", path)
    assert [e["object_name"] for e in run.events()] == ["crm.client_list", "archive.client_list"]


def test_tables_come_from_settings_without_table_option(tablewatch: Any) -> None:
    Path("settings.toml").write_text('[[tables]]\nname = "crm.orders"\n')
    path = write_log("postgresql.csv", trail("csvlog"))
    run = tablewatch("replay", "--events", path)
    assert [e["object_name"] for e in run.events()] == []
    path = write_log("orders.csv", csvlog(audit_message(object_name="crm.orders")), trail("csvlog"))
    assert [e["object_name"] for e in tablewatch("replay", "--events", path).events()] == [
        "crm.orders"
    ]


def test_permission_denied_is_not_an_audit_event(tablewatch: Any) -> None:
    denied = csvlog(
        "permission denied for table client_list",
        severity="ERROR",
        state="42501",
        query="SELECT * FROM crm.client_list",
    )
    path = write_log("postgresql.csv", denied)
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert (run.code, run.out, run.err) == (0, b"", "")


def test_several_files_in_order(tablewatch: Any) -> None:
    first = write_log("a.csv", csvlog(audit_message("SELECT 1")))
    second = write_log("b.json", jsonlog(audit_message("SELECT 2")))
    run = tablewatch("replay", "--events", "--table", "crm.client_list", second, first)
    assert [e["statement"] for e in run.events()] == ["SELECT 2", "SELECT 1"]


# ------------------------------------------------------------------ malformed and forged records


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_record_is_skipped_counted_and_reported_at_the_end(
    tablewatch: Any, fmt: str
) -> None:
    write = FORMATS[fmt]
    broken = "AUDIT: OBJECT,x,1,READ,SELECT,TABLE,crm.client_list,SELECT 2,<none>"
    path = write_log(
        "postgresql" + EXTENSIONS[fmt],
        write(audit_message("SELECT 1")),
        write(broken),
        write(audit_message("SELECT 3")),
    )
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert run.code == 0
    assert [e["statement"] for e in run.events()] == ["SELECT 1", "SELECT 3"]
    (line,) = run.err_lines()
    assert "1 malformed records skipped" in line


def test_cut_csvlog_line_is_skipped_and_the_rest_printed(tablewatch: Any) -> None:
    cut = csvlog(audit_message("SELECT 2"))
    cut = cut[: cut.index(b"SELECT 2")] + b"\n"
    path = write_log(
        "postgresql.csv",
        csvlog(audit_message("SELECT 1")),
        cut,
        *(csvlog(audit_message(f"SELECT {i}")) for i in range(3, 6)),
    )
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert run.code == 0
    assert [e["statement"] for e in run.events()] == [f"SELECT {i}" for i in (1, 3, 4, 5)]
    assert "1 malformed records skipped" in run.err


def test_audit_message_raised_from_a_function_is_reported_as_forged(tablewatch: Any) -> None:
    path = write_log(
        "postgresql.json",
        jsonlog(audit_message("FORGED"), context="PL/pgSQL function forge() line 3 at RAISE"),
        jsonlog(audit_message("SELECT 1")),
    )
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert run.code == 0
    assert [e["statement"] for e in run.events()] == ["SELECT 1"]
    (line,) = run.err_lines()
    assert "1 AUDIT messages not written by pgaudit" in line


def test_impossible_zone_is_a_malformed_record(tablewatch: Any) -> None:
    path = write_log(
        "postgresql.csv",
        csvlog(audit_message("SELECT 1"), Origin(time="2026-11-29 03:41:04.994 +99")),
        csvlog(audit_message("SELECT 2")),
    )
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert run.code == 0
    assert [e["statement"] for e in run.events()] == ["SELECT 2"]
    assert "1 malformed records skipped" in run.err


# -------------------------------------------------------------------- exit 2 with one clear line


def _binary(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 40)
    return path


def _prose(path: Path) -> Path:
    path.write_text("Dear diary,\ntoday I replayed nothing.\n")
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p, "no such file"),
        (_directory, "is a directory"),
        (_binary, "binary"),
        (_prose, "not a PostgreSQL server log"),
    ],
    ids=["missing", "directory", "binary", "not-a-log"],
)
def test_file_that_is_not_a_log(tablewatch: Any, make: Any, words: str) -> None:
    path = make(Path("input.csv"))
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert_one_line_error(run, "input.csv", words)


def test_a_bad_file_among_good_ones_prints_nothing(tablewatch: Any) -> None:
    good = write_log("good.csv", trail("csvlog"))
    run = tablewatch("replay", "--events", "--table", "crm.client_list", good, "missing.csv")
    assert_one_line_error(run, "missing.csv")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["replay", "--events", "{log}"], "no watched table"),
        (["replay", "--events", "--table", "a.b.c", "{log}"], "--table"),
        (["replay", "--events", "--table", "crm.t=many", "{log}"], "row count"),
        (["replay", "--events", "--table", 'crm."t', "{log}"], "--table"),
        (["replay", "--events", "--bogus", "{log}"], "--bogus"),
        (["replay", "--events", "--format", "xml", "{log}"], "--format"),
        (["replay", "--events", "--table", "crm.t"], "FILE"),
    ],
    ids=[
        "no-table",
        "three-part-name",
        "bad-rows",
        "bad-quote",
        "unknown-option",
        "bad-format",
        "no-file",
    ],
)
def test_bad_arguments(tablewatch: Any, argv: list[str], words: str) -> None:
    log = write_log("postgresql.csv", trail("csvlog"))
    run = tablewatch(*(a.replace("{log}", str(log)) for a in argv))
    assert_one_line_error(run, words)


@pytest.mark.parametrize("prefix", ["%m [%p] %", "%m %Z "], ids=["bare-percent", "unknown-escape"])
def test_bad_log_line_prefix(tablewatch: Any, prefix: str) -> None:
    path = write_log("postgresql.log", stderr(audit_message()))
    run = tablewatch(
        "replay", "--events", "--log-line-prefix", prefix, "--table", "crm.client_list", path
    )
    assert_one_line_error(run, "log_line_prefix")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[audit_log\n", "invalid TOML"),
        ("[audit_log]\nformat = 'xml'\n", "[audit_log] format"),
        ("[[tables]]\nname = 'a.b.c'\n", "[[tables]] #1 name"),
        ("[[expected]]\n", "[[expected]] #1"),
        ("[detection]\nquiet_period = inf\n", "[detection] quiet_period"),
    ],
    ids=["bad-toml", "bad-choice", "bad-table", "empty-expected", "infinite-duration"],
)
@pytest.mark.parametrize("found", [True, False], ids=["found-in-cwd", "given-with-config"])
def test_settings_file_with_an_error(tablewatch: Any, text: str, words: str, found: bool) -> None:
    log = write_log("postgresql.csv", trail("csvlog"))
    config = Path("settings.toml" if found else "custom.toml")
    config.write_text(text)
    options = [] if found else ["--config", config]
    run = tablewatch(*options, "replay", "--events", "--table", "crm.client_list", log)
    assert_one_line_error(run, str(config), words)


def test_missing_config_file(tablewatch: Any) -> None:
    log = write_log("postgresql.csv", trail("csvlog"))
    run = tablewatch("--config", "nowhere.toml", "replay", "--events", "--table", "t", log)
    assert_one_line_error(run, "nowhere.toml")


# ----------------------------------------------------------------------------- truncated gzip


def _truncated_gzip(records: int) -> Path:
    """damaged.csv.gz: a gzip csvlog whose last quarter is gone (whole.csv.gz: all of it)."""
    data = b"".join(
        csvlog(audit_message(f"SELECT {i}", statement_id=i), READER) for i in range(records)
    )
    packed = gzip.compress(data)
    Path("whole.csv.gz").write_bytes(packed)
    Path("damaged.csv.gz").write_bytes(packed[: len(packed) * 3 // 4])
    return Path("damaged.csv.gz")


def test_truncated_gzip_exits_2_with_one_line(tablewatch: Any) -> None:
    path = _truncated_gzip(2000)
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert run.code == 2
    (line,) = run.err_lines()
    assert "damaged.csv.gz" in line and "gzip" in line


def test_truncated_gzip_prints_the_records_before_the_damage(tablewatch: Any) -> None:
    path = _truncated_gzip(2000)
    whole = tablewatch("replay", "--events", "--table", "crm.client_list", "whole.csv.gz")
    run = tablewatch("replay", "--events", "--table", "crm.client_list", path)
    assert run.code == 2 and len(run.err_lines()) == 1
    printed = run.out.splitlines()
    assert len(printed) > 1000
    assert printed == whole.out.splitlines()[: len(printed)]


# -------------------------------------------------------------------- the real console script


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--events", "--table", "crm.client_list", "missing.csv"],
        ["replay", "--events", "--table", "crm.client_list", "--bogus", "x.csv"],
    ],
    ids=["missing-file", "unknown-option"],
)
def test_console_script_exit_status_and_one_line(argv: list[str]) -> None:
    assert_one_line_error(run_script(*argv))


def test_console_script_prints_events() -> None:
    path = write_log("postgresql.csv.gz", trail("csvlog"))
    run = run_script("replay", "--events", "--table", "crm.client_list", path)
    assert (run.code, run.err) == (0, "")
    assert len(run.events()) == 6
