"""What one `tablewatch` invocation did (shared by the CLI tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    """What one `tablewatch` invocation did."""

    code: int
    out: bytes
    err: str

    def events(self) -> list[dict[str, Any]]:
        """stdout as JSON lines."""
        return [json.loads(line) for line in self.out.splitlines()]

    def err_lines(self) -> list[str]:
        return self.err.splitlines()
