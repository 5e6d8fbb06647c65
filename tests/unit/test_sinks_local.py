"""The local sink: one owner-only JSON line per action on an alert."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from alerts.local import LocalSink
from core.sinks import Outcome
from tests.alertkit import HOSTILE, deliver_all, lifecycle, make_alert, make_step


async def test_each_action_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state" / "alerts.jsonl"
    local = LocalSink(path)
    alert = make_alert(note="paged by hand")
    verdicts = await deliver_all(local, lifecycle(local, alert))
    assert [(v.outcome, v.detail) for v in verdicts] == [(Outcome.SENT, str(path))] * 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["action"] for r in lines] == ["trigger", "acknowledge", "resolve"]
    assert lines[1]["actor"] == "bob" and lines[1]["step_note"] == "on it"
    assert lines[0]["note"] == "paged by hand" and lines[0]["user"] == "alice"
    assert lines[0]["key"] == alert.key and lines[0]["time"] == "2025-11-29T03:41:40.000Z"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


async def test_hostile_and_huge_fields_make_one_ascii_line(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    local = LocalSink(path)
    alert = make_alert(user=HOSTILE * 500, statement="SELECT\n" * 400_000)
    payload = local.render(alert, make_step(), None)
    assert payload is not None and len(payload) < 200_000
    assert (await local.deliver(payload)).outcome is Outcome.SENT
    raw = path.read_bytes()
    assert raw.isascii() and raw.count(b"\n") == 1 and b"\x1b" not in raw


async def test_an_unwritable_file_is_retried(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    local = LocalSink(blocker / "alerts.jsonl", name="archive")
    verdict = await local.deliver(local.render(make_alert(), make_step(), None) or b"")
    assert verdict.outcome is Outcome.RETRY and str(blocker) in verdict.detail
    assert local.name == "archive" and local.limit is None and local.resend_seconds is None
    assert (await local.deliver(b"not json")).outcome is Outcome.FAILED
