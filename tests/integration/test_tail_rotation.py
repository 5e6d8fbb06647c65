"""The tail under rotation and restarts: 100k records, 50 rotations, kills; nothing lost or doubled.

A driver process (tests/tail_driver.py) consumes the tail and is killed (SIGTERM and kill -9) and
restarted at random points while a writer appends records and rotates the log the three ways
deployments do. The driver stores the tail's checkpoint with its own output length in one atomic
write, so the ids it wrote are exactly what it consumed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.logwriter import NOISE, LogWriter, csv_record

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 100_000
ROTATIONS = 50
KILLS = 10


class Driver:
    """The consumer process, restartable."""

    def __init__(self, tmp: Path, pattern: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "tests.tail_driver",
            "--pattern",
            pattern,
            "--state",
            str(tmp / "state" / "checkpoint.json"),
            "--out",
            str(tmp / "out.txt"),
        ]
        self.out = tmp / "out.txt"
        self.checkpoint = tmp / "state" / "checkpoint.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = tmp / "driver.err"

    def start(self) -> None:
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stderr=err)

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """Make sure no consumer outlives the test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def ids(self) -> list[int]:
        """The ids the consumer has committed (output beyond its checkpoint may be undone)."""
        if not self.out.exists() or not self.checkpoint.exists():
            return []
        try:
            committed = json.loads(self.checkpoint.read_text())["consumer"]["out_len"]
        except (ValueError, KeyError):
            return []
        return [int(x) for x in self.out.read_bytes()[:committed].split()]

    def wait_for(self, wanted: list[int], timeout: float = 60.0) -> None:
        """Wait until every id in `wanted` has been consumed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(wanted) <= set(self.ids()):
                return
            time.sleep(0.05)
        raise AssertionError(f"the consumer never read {len(wanted)} records; see {self.stderr}")

    def settle(self, timeout: float = 60.0, quiet: float = 2.0) -> list[int]:
        """Wait until the output stops growing."""
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = len(self.ids())
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.05)
        return self.ids()

    def stats(self) -> dict[str, object]:
        path = Path(str(self.out) + ".stats")
        return json.loads(path.read_text()) if path.exists() else {}


def _run(tmp: Path, mode: str, seed: int) -> tuple[list[int], list[int], list[int], Driver]:
    """Write RECORDS records with ROTATIONS rotations and KILLS restarts of the consumer.

    Returns what was written, what the consumer read, the ids written inside copytruncate
    windows (between the copy and the truncation), and the driver.
    """
    rng = random.Random(seed)
    logdir = tmp / "log"
    logdir.mkdir()
    writer = LogWriter(logdir, mode)
    driver = Driver(tmp, writer.pattern)
    rotate_at = set(rng.sample(range(1000, RECORDS), ROTATIONS))
    kill_at = set(rng.sample(range(1000, RECORDS), KILLS))
    driver.start()
    try:
        return _drive(rng, writer, driver, mode, rotate_at, kill_at)
    finally:
        driver.stop()
        writer.close()


def _drive(
    rng: random.Random,
    writer: LogWriter,
    driver: Driver,
    mode: str,
    rotate_at: set[int],
    kill_at: set[int],
) -> tuple[list[int], list[int], list[int], Driver]:
    written: list[int] = []
    window: list[int] = []
    n = 0

    def write_one(*, halves: bool = False) -> None:
        nonlocal n
        n += 1
        if halves:
            # a record written in two halves, with the reader looking in between
            record = csv_record(n)
            writer.write(record[:37])
            time.sleep(0.03)
            writer.write(record[37:])
            writer.ids_in_file.setdefault(str(writer.path), []).append(n)
        else:
            writer.write_record(n, multiline=n % 997 == 0)
        written.append(n)

    for i in range(1, RECORDS + 1):
        if i in rotate_at:
            if mode == "wrap":
                # PostgreSQL would overwrite a file nobody had read yet only if the reader were
                # down for a whole wrap; model a reader that keeps up.
                old = writer.ids_in_file.get(str(writer.next_path()), [])
                if old:
                    driver.wait_for(old)
                writer.rotate()
            elif mode == "copytruncate":
                writer.copy()
                for _ in range(rng.choice((0, 0, 0, 1, 2))):
                    write_one()
                    window.append(n)
                writer.truncate()
                writer.rotations += 1
            else:
                writer.rotate()
        if i in kill_at:
            driver.kill(rng.choice((signal.SIGTERM, signal.SIGKILL)))
            driver.start()
        write_one(halves=i % 1000 == 500)
        if i % 5000 == 0:
            writer.write(NOISE)
            time.sleep(0.01)
    assert writer.rotations == ROTATIONS
    ids = driver.settle()
    driver.kill(signal.SIGTERM)
    return written, ids, window, driver


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rename", "wrap"])
def test_rotation_and_restarts_lose_and_double_nothing(tmp_path: Path, mode: str) -> None:
    """Rename rotation and log_truncate_on_rotation: exactly what was written, in order."""
    seed = int(os.environ.get("TAIL_TEST_SEED", "1" if mode == "rename" else "2"))
    written, ids, _, driver = _run(tmp_path, mode, seed=seed)
    assert len(ids) == len(set(ids)), "a record was read twice"
    missing = sorted(set(written) - set(ids))
    assert not missing, f"{len(missing)} records lost, first {missing[:10]}"
    assert ids == written
    assert driver.stats().get("lost_bytes") == 0


@pytest.mark.slow
def test_copytruncate_loses_only_the_copy_window(tmp_path: Path) -> None:
    """copytruncate: records written between the copy and the truncation may be lost, no other."""
    seed = int(os.environ.get("TAIL_TEST_SEED", "3"))
    written, ids, window, _ = _run(tmp_path, "copytruncate", seed=seed)
    assert len(ids) == len(set(ids)), "a record was read twice"
    assert ids == sorted(ids), "records out of order"
    missing = set(written) - set(window) - set(ids)
    assert not missing, f"lost outside the copy windows: {sorted(missing)[:10]}"
