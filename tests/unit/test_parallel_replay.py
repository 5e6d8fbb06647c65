"""A large csvlog replayed on every core prints exactly what the sequential replay prints."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import tablewatch.parallel as parallel
from collectors.events import ParseStats
from core.tables import TableName
from tablewatch.replay import ReplayOptions, run_replay
from tests.logwriter import NOISE, csv_record

TABLE = [TableName.parse("crm.client_list")]


def _log(tmp_path: Path, damage_at: int | None = None) -> Path:
    """4,000 records with noise and multi-line statements; optionally one cut in half."""
    parts: list[bytes] = []
    for n in range(1, 4001):
        record = csv_record(n, multiline=n % 97 == 0)
        if n == damage_at:
            record = record[: len(record) // 2] + b"\n"  # the rest of the line is gone
        parts.append(record)
        if n % 50 == 0:
            parts.append(NOISE)
    path = tmp_path / "postgresql.csv"
    path.write_bytes(b"".join(parts))
    return path


def _replay(path: Path, *, parallel_on: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, str]:
    monkeypatch.setattr(parallel, "MIN_SIZE", 0 if parallel_on else 1 << 62)
    monkeypatch.setattr(parallel, "BLOCK", 16 * 1024)  # many blocks from a small file
    out, err = io.BytesIO(), io.StringIO()
    opts = ReplayOptions(files=[path], tables=TABLE, fmt="csvlog", events=True)
    assert run_replay(opts, out, err) == 0
    return out.getvalue(), err.getvalue()


@pytest.mark.skipif(parallel.workers() == 0, reason="one core: no parallel replay")
def test_parallel_replay_prints_what_the_sequential_one_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _log(tmp_path)
    sequential, _ = _replay(path, parallel_on=False, monkeypatch=monkeypatch)
    fast, err = _replay(path, parallel_on=True, monkeypatch=monkeypatch)
    assert sequential.count(b"\n") == 4000
    assert fast == sequential
    assert err == ""


@pytest.mark.skipif(parallel.workers() == 0, reason="one core: no parallel replay")
def test_damage_mid_file_hands_over_to_the_careful_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _log(tmp_path, damage_at=2500)
    sequential, seq_err = _replay(path, parallel_on=False, monkeypatch=monkeypatch)
    fast, err = _replay(path, parallel_on=True, monkeypatch=monkeypatch)
    assert sequential.count(b"\n") == 3999  # only the damaged record is lost
    assert fast == sequential
    assert "1 malformed records skipped" in err
    assert err == seq_err


def test_stats_of_the_workers_add_up() -> None:
    total = ParseStats(records=1, events=1, samples=["a"])
    parallel._merge(total, ParseStats(records=2, events=3, malformed=1, samples=["b", "c"]))
    assert (total.records, total.events, total.malformed, total.samples) == (
        3,
        4,
        1,
        ["a", "b", "c"],
    )


def _findings(path: Path, *, parallel_on: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(parallel, "MIN_SIZE", 0 if parallel_on else 1 << 62)
    monkeypatch.setattr(parallel, "BLOCK", 64 * 1024)
    out, err = io.BytesIO(), io.StringIO()
    table = [TableName.parse("crm.client_list", 50_000)]
    opts = ReplayOptions(files=[path], tables=table, fmt="csvlog")
    assert run_replay(opts, out, err) == 0, err.getvalue()
    return out.getvalue()


@pytest.mark.skipif(parallel.workers() == 0, reason="one core: no parallel replay")
def test_findings_are_the_same_whether_parsed_on_every_core_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.scenario import generate

    path = tmp_path / "days.csv"
    generate(path, seed=5, log_rows=False, days=3, scale=0.3)
    sequential = _findings(path, parallel_on=False, monkeypatch=monkeypatch)
    assert sequential.count(b"\n") >= 5  # the attacks of the scenario
    assert b'"audit_tamper"' in sequential
    assert _findings(path, parallel_on=True, monkeypatch=monkeypatch) == sequential


@pytest.mark.skipif(parallel.workers() == 0, reason="one core: no parallel replay")
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_record_longer_than_a_block_is_never_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    import gzip

    huge = csv_record(2000).replace(b"WHERE id = $1", b"WHERE id = $1 " + b"-" * 40_000)
    data = b"".join(csv_record(n) if n != 2000 else huge for n in range(1, 4001))
    path = tmp_path / ("postgresql.csv.gz" if compressed else "postgresql.csv")
    path.write_bytes(gzip.compress(data) if compressed else data)
    sequential, _ = _replay(path, parallel_on=False, monkeypatch=monkeypatch)
    fast, err = _replay(path, parallel_on=True, monkeypatch=monkeypatch)
    assert sequential.count(b"\n") == 4000
    assert fast == sequential and err == ""
