"""Framing: a log arrives in pieces of any size, sometimes damaged; records must come out whole.

`split(buf, final=, idle=)` returns the candidate records and how many bytes it consumed; the
caller carries `buf[consumed:]` over to the next read (see `pglog.feed`). Wherever the pieces are
cut, the events must be those of the whole log read at once. A record cut short in the middle of a
file costs that record only (counted as malformed), never the records after it.
"""

from __future__ import annotations

import random

import pytest

import collectors.logformats
from tests.unit.pglog import (
    FORMATS,
    READER,
    Origin,
    audit_message,
    corpus_messages,
    csvlog,
    feed,
    make_parser,
    parse_log,
)


def _at(i: int) -> Origin:
    """Record `i`, told apart by its time (second i of a small sample)."""
    return READER.at(f"2026-11-29 03:{i // 60:02d}:{i % 60:02d}.{i % 1000:03d} UTC")


def _sample() -> list[str]:
    """A few corpus messages: one-line ones, multi-line statements, parameters, and non-ASCII."""
    messages = corpus_messages()
    multiline = [m for m in messages if "\n" in m]
    return [
        messages[0],
        multiline[0],
        audit_message("SELECT $1", ("Org 1,5", "{1,2,3}", 'say "hi"')),
        multiline[5],
        audit_message("SELECT 'Zoë 🙂'"),
        messages[1],
    ]


def _log(fmt: str, messages: list[str]) -> bytes:
    return b"".join(FORMATS[fmt](m, _at(i)) for i, m in enumerate(messages))


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets."""
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# ------------------------------------------------------------------------- pieces of any size


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_pieces_cut_at_every_byte_offset(fmt: str) -> None:
    sample = _sample()[1:5]  # multi-line, deep parameters, non-ASCII
    data = _log(fmt, sample)
    whole, _ = parse_log(fmt, data)
    assert len(whole) == len(sample)
    for offset in range(1, len(data)):
        assert feed(make_parser(fmt), _pieces(data, [offset])) == whole, f"cut at {offset}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_corpus_in_random_pieces(fmt: str) -> None:
    data = _log(fmt, corpus_messages())
    whole, _ = parse_log(fmt, data)
    assert len(whole) == 415
    rng = random.Random(f"framing-{fmt}")
    for _ in range(3):
        cuts = rng.sample(range(1, len(data)), 300)
        parser = make_parser(fmt)
        assert feed(parser, _pieces(data, cuts)) == whole
        assert (parser.stats.records, parser.stats.malformed) == (415, 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_byte_at_a_time(fmt: str) -> None:
    data = _log(fmt, _sample()[:3])
    whole, _ = parse_log(fmt, data)
    assert feed(make_parser(fmt), [data[i : i + 1] for i in range(len(data))]) == whole


# ---------------------------------------------------------------- consumed stops at a boundary


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog"])
def test_partial_last_line_is_not_consumed_until_final(fmt: str) -> None:
    first = FORMATS[fmt](audit_message("SELECT 1"), _at(1))
    second = FORMATS[fmt](audit_message("SELECT 2"), _at(2))
    for cut in (1, len(second) // 2, len(second) - 1):
        parser = make_parser(fmt)
        records, consumed = parser.split(first + second[:cut])
        assert consumed == len(first), cut
        assert [e.statement for e in parser.parse(records)] == ["SELECT 1"]
        records, consumed = parser.split(first + second[:cut], idle=True)
        assert consumed == len(first), cut


def test_stderr_keeps_the_last_message_open_until_the_next_line_or_idle() -> None:
    """A stderr message may still get continuation or CONTEXT lines: it is complete only when
    the next whole line starts another message, when the writer went idle, or at the end."""
    first = FORMATS["stderr"](audit_message("SELECT 1"), _at(1))
    second = FORMATS["stderr"](audit_message("SELECT 2"), _at(2))
    parser = make_parser("stderr")
    assert parser.split(first)[1] == 0
    assert parser.split(first + second[:10])[1] == 0
    assert parser.split(first + second)[1] == len(first)
    assert parser.split(first + second, idle=True)[1] == len(first + second)
    assert parser.split(first + second[:10], idle=True)[1] == len(first)


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog"])
def test_last_record_without_final_newline_is_parsed_at_the_end(fmt: str) -> None:
    data = FORMATS[fmt](audit_message("SELECT 1")) + FORMATS[fmt](audit_message("SELECT 2"))
    events, stats = parse_log(fmt, data.rstrip(b"\n"))
    assert [e.statement for e in events] == ["SELECT 1", "SELECT 2"]


def test_stderr_last_record_without_final_newline_is_parsed_at_the_end() -> None:
    data = FORMATS["stderr"](audit_message("SELECT 1")) + FORMATS["stderr"](
        audit_message("SELECT 2")
    )
    events, stats = parse_log("stderr", data.rstrip(b"\n"))
    assert [e.statement for e in events] == ["SELECT 1", "SELECT 2"]
    assert stats.records == 2


# ------------------------------------------------------------- a csvlog record cut in half


def _cut_record(record: bytes) -> bytes:
    """The first half of a csvlog record, cut inside its message: the closing quote is gone."""
    start = record.index(b',"AUDIT: ') + 2
    end = record.index(b'",,,,,,,,,"psql"')
    cut = (start + end) // 2
    while record[:cut].count(b'"') % 2 == 0:
        cut -= 1  # never between the two quotes of a doubled one
    assert cut > start
    return record[:cut] + b"\n"


def _damaged_log(k: int) -> tuple[bytes, list[int]]:
    """The sample as csvlog with record `k` cut in half; and the seconds of the records left."""
    sample = _sample()
    records = [csvlog(m, _at(i)) for i, m in enumerate(sample)]
    records[k] = _cut_record(records[k])
    return b"".join(records), [i for i in range(len(sample)) if i != k]


@pytest.mark.parametrize("k", range(6))
def test_cut_csvlog_record_costs_only_itself_at_the_end_of_a_file(k: int) -> None:
    data, left = _damaged_log(k)
    events, stats = parse_log("csvlog", data)
    assert [e.time.second for e in events] == left
    assert stats.malformed == 1


@pytest.mark.parametrize("k", range(5))
def test_cut_csvlog_record_costs_only_itself_when_the_writer_goes_idle(k: int) -> None:
    """The live path: the tail sees the damage only once the writer is quiet (idle=True)."""
    data, left = _damaged_log(k)
    parser = make_parser("csvlog")
    records, consumed = parser.split(data, idle=True)
    assert [e.time.second for e in parser.parse(records)] == left
    assert consumed == len(data)
    assert parser.stats.malformed == 1


@pytest.mark.parametrize("k", range(6))
def test_cut_csvlog_record_in_random_pieces(k: int) -> None:
    data, left = _damaged_log(k)
    rng = random.Random(k)
    for _ in range(5):
        parser = make_parser("csvlog")
        events = feed(parser, _pieces(data, rng.sample(range(1, len(data)), 20)))
        assert [e.time.second for e in events] == left
        assert parser.stats.malformed == 1


def test_cut_record_before_the_message_loses_no_other_record() -> None:
    """Cut before the message column the line has balanced quotes: just a short row."""
    sample = _sample()
    records = [csvlog(m, _at(i)) for i, m in enumerate(sample)]
    records[2] = records[2][:60] + b"\n"
    events, _ = parse_log("csvlog", b"".join(records))
    assert [e.time.second for e in events] == [0, 1, 3, 4, 5]


# ------------------------------------------------------ forged record starts inside a record


def _statement_with_record_start() -> str:
    """A multi-line statement one of whose lines is a whole csvlog audit record."""
    fake = csvlog(audit_message("FORGED", statement_id=99)).decode().rstrip("\n")
    return f"SELECT * FROM crm.client_list WHERE note = '\n{fake}\n'"


def test_multiline_statement_with_a_record_start_line_is_one_record() -> None:
    statement = _statement_with_record_start()
    data = csvlog(audit_message(statement), _at(1)) + csvlog(audit_message("SELECT 2"), _at(2))
    assert b"\n2026-11-29 03:41:04.994 UTC," in data  # the fake line starts like a record
    whole, stats = parse_log("csvlog", data)
    assert [e.statement for e in whole] == [statement, "SELECT 2"]
    assert (stats.records, stats.malformed) == (2, 0)
    for offset in range(1, len(data)):
        assert feed(make_parser("csvlog"), _pieces(data, [offset])) == whole, offset


def test_oversized_record_arriving_in_pieces_is_not_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collectors.logformats, "MAX_OPEN_RECORD", 4096)  # 64 MiB, scaled down
    padding = ("-- " + "x" * 60 + "\n") * 100
    statement = f"SELECT * FROM crm.client_list -- \n2026-01-01 00:00:00,\n{padding}LIMIT ALL"
    data = b"".join(
        csvlog(audit_message(s, statement_id=i), _at(i))
        for i, s in enumerate(["SELECT 0", statement, "SELECT 2"])
    )
    parser = make_parser("csvlog")
    events = feed(parser, _pieces(data, list(range(1024, len(data), 1024))))
    assert [e.statement_id for e in events] == [0, 1, 2]
