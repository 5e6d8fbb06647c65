"""The interface of a server-log format: frame raw bytes into records, parse them into events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from collectors.events import EventBuilder
from core.events import AccessEvent


def decode(raw: bytes) -> str:
    """Log bytes as text: the server encoding is UTF-8; anything else is replaced, not fatal."""
    return raw.decode("utf-8", "replace")


class LogFormat(ABC):
    """Framing and parsing of one server-log format."""

    name: ClassVar[str]

    def __init__(self, builder: EventBuilder) -> None:
        self.builder = builder
        self.stats = builder.stats

    @abstractmethod
    def split(
        self, buf: bytes, *, final: bool = False, idle: bool = False
    ) -> tuple[list[bytes], int]:
        """Frame complete records at the start of `buf`.

        Args:
            buf: bytes starting at a record boundary.
            final: no more data will come: the trailing partial record is parsed as it is.
            idle: the writer has gone quiet: a damaged open record may be resynchronised.

        Returns:
            The candidate records (those that may yield events) and the number of bytes consumed
            (the end of the last complete record).
        """

    @abstractmethod
    def parse(self, records: list[bytes]) -> list[AccessEvent]:
        """The events of candidate records returned by `split`."""

    def events(self, buf: bytes, *, final: bool = False) -> tuple[list[AccessEvent], int]:
        """Split and parse in one call."""
        records, consumed = self.split(buf, final=final)
        return self.parse(records), consumed
