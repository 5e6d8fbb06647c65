"""What most sinks share: the `AlertSink` defaults and a settings table's secret.

A sink subclasses `Sink` and keeps only what differs: its `name`, `render` and `deliver`, and a
`limit`, `resend_seconds`, `bucket`, `aggregate` or `close` where the service needs one.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import SecretStr

from core.sinks import RateLimit

__all__ = ["Sink", "reveal"]


class Sink:
    """The `core.sinks.AlertSink` defaults: no rate limit, no re-send, one bucket, no
    aggregate, nothing held open."""

    name: str
    """Set by each sink (a class attribute, or per instance)."""
    limit: RateLimit | None = None
    resend_seconds: float | None = None

    def bucket(self, payload: bytes) -> str:
        """One bucket for every payload."""
        return ""

    def aggregate(self, payloads: Sequence[bytes]) -> bytes | None:
        """None: held-back payloads wait their turn."""
        return None

    async def close(self) -> None:
        """Nothing to release."""


def reveal(secret: SecretStr | None) -> str:
    """The secret's value ("" when not set).

    >>> reveal(SecretStr("k")), reveal(None)
    ('k', '')
    """
    return secret.get_secret_value() if secret is not None else ""
