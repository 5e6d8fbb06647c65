"""The rooms of DESIGN.md keep their direction: core <- collectors, alerts, tui <- tablewatch."""

from __future__ import annotations

import subprocess
import sys

import pytest

OUTER = ("collectors", "alerts", "tui", "tablewatch")
FRAMEWORKS = ("textual", "rich", "asyncpg", "aiohttp", "httpx", "prometheus_client")


def _modules_after_importing(package: str) -> set[str]:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in run.stdout.split()}


def test_core_imports_no_outer_room_and_no_io_framework() -> None:
    loaded = _modules_after_importing("core")
    assert not loaded & set(OUTER + FRAMEWORKS)


@pytest.mark.parametrize("room", ["collectors", "alerts", "tui"])
def test_middle_rooms_do_not_import_each_other_or_the_app(room: str) -> None:
    loaded = _modules_after_importing(room)
    others = set(OUTER) - {room}
    assert not loaded & others, f"{room} imports {sorted(loaded & others)}"
