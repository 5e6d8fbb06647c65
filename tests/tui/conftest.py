"""Fixtures of the dashboard tests: a real LiveEngine over a real Engine, clock frozen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tablewatch.live import LiveEngine
from tests.tui.world import exfiltration, feed, live, normal_traffic


@pytest.fixture
def view(tmp_path: Path) -> LiveEngine:
    """An engine fed with normal traffic and an exfiltration (mallory, 95% of the table)."""
    engine = live(tmp_path)
    feed(engine, normal_traffic() + exfiltration())
    return engine


@pytest.fixture
def empty(tmp_path: Path) -> LiveEngine:
    """An engine that has seen nothing yet."""
    return live(tmp_path)
