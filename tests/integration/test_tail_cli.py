"""`tablewatch tail` against a real PostgreSQL + pgaudit: live events, a clean stop, a resume.

The story: a reader's SELECT shows up while tail runs; tail stops on SIGTERM with status 0; a
second SELECT happens while it is down; the next tail prints that one, and not the first again.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tablewatch.pgcluster import PgCluster

SCRIPT = Path(sys.executable).with_name("tablewatch")
EXTENSION = {"csvlog": ".csv", "jsonlog": ".json", "stderr": ".log"}


class Tail:
    """A running `tablewatch tail`, its stdout lines collected by a thread."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [str(SCRIPT), "tail"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.errors: list[bytes] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append)),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: IO[bytes], sink: object) -> None:
        for line in stream:
            sink(line)  # type: ignore[operator]
        stream.close()

    def wait_until_following(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(b"following" in e for e in self.errors):
            assert time.monotonic() < deadline, f"tail never started: {self.errors}"
            assert self.proc.poll() is None, f"tail died: {self.errors}"
            time.sleep(0.05)
        time.sleep(0.5)  # its first look at the log (start = end) has happened

    def events(self, want: int, timeout: float) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            try:
                found.append(json.loads(self.lines.get(timeout=0.1)))
            except queue.Empty:
                pass
        return found

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        for t in self._threads:
            t.join(timeout=5)
        return code


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
def test_tail_prints_live_reads_and_resumes_after_a_stop(
    pg_cluster: PgCluster, tmp_path: Path, fmt: str
) -> None:
    schema = f"tail_{fmt}"
    pg_cluster.psql(
        f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.watched (id int, name text);"
        f"INSERT INTO {schema}.watched SELECT g, 'n' || g FROM generate_series(1, 10) g;"
        f"GRANT SELECT ON {schema}.watched TO auditor;"
    )
    log = pg_cluster.log_path(fmt)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")},
        "TABLEWATCH_AUDIT_LOG__PATH": str(log.parent / f"*{EXTENSION[fmt]}"),
        "TABLEWATCH_AUDIT_LOG__POLL_INTERVAL": "50ms",
        "TABLEWATCH_STATE__DIR": str(tmp_path / "state"),
        "TABLEWATCH_TABLES": json.dumps([{"name": f"{schema}.watched"}]),
        "HOME": str(tmp_path),
    }
    first = Tail(env, tmp_path)
    try:
        first.wait_until_following()
        pg_cluster.psql(f"SELECT name FROM {schema}.watched WHERE id = 1", app="tail-one")
        seen = first.events(1, timeout=20)
    finally:
        code = first.stop()
    assert code == 0, first.errors
    assert [e["application_name"] for e in seen] == ["tail-one"]
    assert seen[0]["object_name"] == f"{schema}.watched"
    assert (tmp_path / "state" / "audit_log.checkpoint.json").exists()

    pg_cluster.psql(f"SELECT name FROM {schema}.watched WHERE id = 2", app="tail-two")
    pg_cluster.wait_for_log(fmt, lambda text: "tail-two" in text)

    second = Tail(env, tmp_path)
    try:
        again = second.events(1, timeout=20)
        again += second.events(1, timeout=1.5)  # a repeat of the first run's event would be here
    finally:
        code = second.stop()
    assert code == 0, second.errors
    assert [e["application_name"] for e in again] == ["tail-two"]
    assert any(b"resuming from the checkpoint" in e for e in second.errors)


@pytest.mark.parametrize("command", ["tail", "run"])
def test_without_an_audit_log_or_database_there_is_nothing_to_follow(
    tmp_path: Path, command: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")},
        "TABLEWATCH_AUDIT_LOG__PATH": "",
        "TABLEWATCH_STATE__DIR": str(tmp_path / "state"),
        "TABLEWATCH_TABLES": json.dumps([{"name": "crm.watched"}]),
        "TABLEWATCH_METRICS__LISTEN": "",
        "TABLEWATCH_API__LISTEN": "",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [str(SCRIPT), command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    said = done.stderr.strip().splitlines()
    if command == "tail":
        assert said == ['tablewatch tail: [audit_log] path is "": there is no audit log to follow']
    else:  # the agent logs its refusal as one line
        assert len(said) == 1 and "nothing to watch" in said[0], said
