"""Records appended to files of the state dir that only their owner may read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append `record` as one JSON line (ASCII: nothing in it can act on a terminal that shows
    the file) and fsync it; the file is created 0600 and its folder 0700 when missing.

    Raises:
        OSError: the file cannot be written.
    """
    data = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
