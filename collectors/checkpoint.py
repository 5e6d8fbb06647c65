"""A checkpoint file in the state dir: written atomically, read defensively.

The write is to a temporary file in the same directory, fsync'ed, renamed over the old one, and the
directory fsync'ed: after a kill -9 or a power cut the file holds either the old or the new
checkpoint, never a mix. A consumer stores its own state in the same write (`consumer`), so that
"events processed" and "position read" can never disagree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that exists but cannot be used; the message says why, in one line."""


class CheckpointStore:
    """One checkpoint file: `{"version": 1, "source": {...}, "consumer": {...}}`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The saved (source, consumer) positions; None when there is no checkpoint yet.

        Raises:
            CheckpointError: the file is empty, garbage, or of another version.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror}") from None
        if not raw.strip():
            raise CheckpointError(f"{self.path}: empty checkpoint file")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.path}: not a checkpoint ({exc})") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise CheckpointError(f"{self.path}: not a version {VERSION} checkpoint")
        source, consumer = data.get("source"), data.get("consumer", {})
        if not isinstance(source, dict) or not isinstance(consumer, dict):
            raise CheckpointError(f"{self.path}: checkpoint lacks its source position")
        return source, consumer

    def save(self, source: dict[str, Any], consumer: dict[str, Any] | None = None) -> None:
        """Replace the checkpoint atomically and durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": VERSION, "source": source, "consumer": consumer or {}},
            separators=(",", ":"),
        ).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
