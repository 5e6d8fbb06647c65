"""The operator trail: every action an operator takes, who and when, appended to the state dir.

One JSON object per line in `operator-trail.jsonl` (0600). It is also where the operator's
decisions come back from after a restart: a principal marked expected stays expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import IsoFormatter
from core.files import append_record
from core.findings import PrincipalKey

TRAIL_FILE = "operator-trail.jsonl"
_ISO = IsoFormatter()


class TrailError(Exception):
    """The trail exists but cannot be read; `str()` is one line."""


@dataclass(frozen=True, slots=True)
class Mark:
    """A principal an operator declared expected."""

    user: str
    client_addr: str
    application_name: str
    note: str


class OperatorTrail:
    """Appends operator actions to `directory/operator-trail.jsonl`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / TRAIL_FILE
        self.skipped = 0
        """Lines of the file that could not be read back (reported, never fatal)."""

    def append(
        self, action: str, operator: str, principal: PrincipalKey, time_us: int, **details: Any
    ) -> None:
        """Record one action (raises OSError when the file cannot be written)."""
        entry = {
            "time": _ISO.format(time_us),
            "action": action,
            "operator": operator,
            **principal.fields(),
            **details,
        }
        append_record(self.path, entry)

    def marks(self) -> Iterator[Mark]:
        """The principals marked expected so far, oldest first (unreadable lines counted).

        Raises:
            TrailError: the file exists but cannot be read (starting without the operators'
                decisions would silently page about principals they declared known).
        """
        try:
            with self.path.open("rb") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TrailError(
                f"cannot read the operator trail {self.path}: {exc.strerror or exc}"
            ) from None
        for line in lines:
            try:
                entry = json.loads(line)
                if entry["action"] != "expected":
                    continue
                yield Mark(
                    str(entry["user"]),
                    str(entry["client_addr"]),
                    str(entry["application_name"]),
                    str(entry.get("note") or "expected"),
                )
            except (ValueError, KeyError, TypeError):
                self.skipped += 1
