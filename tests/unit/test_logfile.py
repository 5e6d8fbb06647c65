"""Whole log files for replay: the format sniffed from the head, gzip read transparently, records
parsed chunk by chunk with the unfinished tail of each chunk carried over to the next."""

from __future__ import annotations

import gc
import gzip
import warnings
from pathlib import Path
from typing import Any

import pytest

import collectors.logfile
from collectors.events import EventBuilder
from collectors.logfile import LogFileError, detect_format, read_events
from tests.unit.pglog import CHECKPOINTER, FORMATS, READER, corpus_messages

# The ResourceWarning of the gzip bug below would fail every gzip test under filterwarnings=error.


def _log(fmt: str, count: int = 60) -> bytes:
    """`count` corpus messages as a server log of `fmt`, starting with a background line."""
    write = FORMATS[fmt]
    messages = corpus_messages()[:count]
    return write("checkpoint starting: time", CHECKPOINTER) + b"".join(
        write(m, READER.at(f"2026-11-29 03:41:{i % 60:02d}.{i:03d} UTC"))
        for i, m in enumerate(messages)
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["postgresql{ext}", "postgresql{ext}.gz", "postgresql-1"])
def test_detect_format_from_content(tmp_path: Path, fmt: str, name: str) -> None:
    ext = {"csvlog": ".csv", "jsonlog": ".json", "stderr": ".log"}[fmt]
    path = _write(tmp_path / name.format(ext=ext), _log(fmt, 3))
    assert detect_format(path, "auto") == fmt


def test_explicit_format_is_trusted(tmp_path: Path) -> None:
    path = _write(tmp_path / "postgresql.csv", _log("csvlog", 3))
    assert detect_format(path, "stderr") == "stderr"


@pytest.mark.parametrize(("name", "fmt"), [("empty.csv", "csvlog"), ("empty.log", "stderr")])
def test_empty_file_gets_the_format_its_name_suggests(tmp_path: Path, name: str, fmt: str) -> None:
    assert detect_format(_write(tmp_path / name, b""), "auto") == fmt


@pytest.mark.parametrize(
    ("data", "fmt", "words"),
    [
        (b"\x00\x01binary\x00" * 100, "auto", "binary"),
        (b"\x00\x01binary\x00" * 100, "csvlog", "binary"),
        (b"just some text\nnothing to see\n", "auto", "not a PostgreSQL server log"),
    ],
    ids=["binary", "binary-even-with-explicit-format", "prose"],
)
def test_detect_format_refuses(tmp_path: Path, data: bytes, fmt: str, words: str) -> None:
    path = _write(tmp_path / "input.csv", data)
    with pytest.raises(LogFileError, match=words) as info:
        detect_format(path, fmt)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(LogFileError, match="no such file"):
        detect_format(tmp_path / "missing.csv", "auto")
    with pytest.raises(LogFileError, match="is a directory"):
        detect_format(tmp_path, "auto")


def _read(path: Path, fmt: str) -> list[Any]:
    return [e for batch in read_events(path, fmt, EventBuilder(None)) for e in batch]


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_chunks_give_the_same_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    path = _write(tmp_path / "postgresql.log", _log(fmt))
    whole = _read(path, fmt)
    assert len(whole) == 60
    for chunk in (1, 97, 1000):
        monkeypatch.setattr(collectors.logfile, "CHUNK", chunk)
        assert _read(path, fmt) == whole, chunk


def test_gzip_file_is_closed_after_reading(tmp_path: Path) -> None:
    path = _write(tmp_path / "postgresql.csv.gz", _log("csvlog", 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detect_format(path, "auto")
        _read(path, "csvlog")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
