"""The durable outbox: at-least-once, backoff with jitter, Retry-After, refusals, restarts."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.outbox import BACKOFF_CAP, OUTBOX_FILE, RETRY_AFTER_CAP, Outbox, OutboxError, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / OUTBOX_FILE, clock=clock, jitter=lambda: 0.0)
    yield outbox
    outbox.close()


def test_queued_deliveries_are_due_at_once_oldest_first(box: Outbox) -> None:
    first = box.enqueue("pagerduty", "tw-1", "trigger", b'{"a": 1}')
    second = box.enqueue("slack", "tw-1", "trigger", b"{}")
    assert [(i.id, i.sink, i.payload, i.attempts) for i in box.due()] == [
        (first, "pagerduty", b'{"a": 1}', 0),
        (second, "slack", b"{}", 0),
    ]
    assert box.depth() == 2


def test_a_sent_delivery_is_never_due_again(box: Outbox) -> None:
    box.enqueue("webhook", "tw-1", "trigger", b"{}")
    (item,) = box.due()
    box.sent(item, "202")
    assert box.due() == [] and box.depth() == 0 and box.next_due() is None
    (row,) = box.rows("tw-1")
    assert (row.state, row.attempts, row.detail) == ("sent", 1, "202")


def test_retries_back_off_exponentially_up_to_the_cap(box: Outbox, clock: Clock) -> None:
    box.enqueue("webhook", "tw-1", "trigger", b"{}")
    delays = []
    for _ in range(12):
        (item,) = box.due()
        delays.append(box.retry(item, "500 Internal Server Error"))
        assert box.due() == []  # not before its time
        clock.now += delays[-1]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == BACKOFF_CAP / 2
    (row,) = box.rows("tw-1")
    assert (row.state, row.attempts, row.detail) == ("queued", 12, "500 Internal Server Error")


def test_jitter_spreads_retries_over_the_second_half_of_the_interval() -> None:
    assert backoff(4, 0.0) == 4.0 and backoff(4, 0.5) == 6.0 and backoff(4, 0.999) == 7.996


def test_retry_after_is_honoured_exactly_and_capped(box: Outbox, clock: Clock) -> None:
    box.enqueue("pagerduty", "tw-1", "trigger", b"{}")
    (item,) = box.due()
    assert box.retry(item, "429 Too Many Requests", retry_after=37.0) == 37.0
    clock.now += 36.9
    assert box.due() == []
    clock.now += 0.2
    (item,) = box.due()
    assert box.retry(item, "429", retry_after=10 * RETRY_AFTER_CAP) == RETRY_AFTER_CAP


def test_a_refusal_is_failed_with_its_reason_and_not_retried(box: Outbox, clock: Clock) -> None:
    box.enqueue("opsgenie", "tw-1", "trigger", b"{}")
    (item,) = box.due()
    box.failed(item, '400 Bad Request: {"message": "alias too long"}')
    clock.now += 10 * BACKOFF_CAP
    assert box.due() == [] and box.depth() == 0
    (row,) = box.rows("tw-1")
    assert row.state == "failed" and "alias too long" in row.detail


def test_the_queue_survives_a_reopen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state" / OUTBOX_FILE
    box = Outbox(path, clock=clock, jitter=lambda: 0.0)
    box.enqueue("slack", "tw-1", "trigger", b"one")
    box.enqueue("slack", "tw-2", "trigger", b"two")
    (first, _) = box.due()
    box.sent(first)
    box.close()
    again = Outbox(path, clock=clock)
    assert [i.payload for i in again.due()] == [b"two"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_kill_9_loses_nothing_that_was_queued(tmp_path: Path) -> None:
    """A process queues 100 deliveries, marks 40 sent, and is killed with SIGKILL (no close, no
    clean-up): after a restart the 60 not marked sent are due, none lost, none of the 40 again."""
    path = tmp_path / OUTBOX_FILE
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from alerts.outbox import Outbox
        box = Outbox(Path({str(path)!r}))
        for n in range(100):
            box.enqueue("webhook", f"tw-{{n}}", "trigger", b"{{}}")
        for item in box.due(limit=40):
            box.sent(item)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2]
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    box = Outbox(path)
    assert box.depth() == 60
    assert sorted(int(i.key[3:]) for i in box.due(limit=1000)) == list(range(40, 100))


def test_a_file_that_is_not_an_outbox_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / OUTBOX_FILE
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="not a tablewatch outbox") as caught:
        Outbox(path)
    assert "\n" not in str(caught.value)


def test_an_outbox_from_a_newer_tablewatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / OUTBOX_FILE
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(OutboxError, match="schema 9"):
        Outbox(path)
