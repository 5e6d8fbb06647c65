"""Cancelling the query of, or terminating, a backend caught reading a watched table (as
pg_activity does): `pg_cancel_backend` / `pg_terminate_backend` as the monitoring role.

Each call opens its own short connection with the link's settings (dsn, password, timeouts)
rather than going through `DatabaseLink.fetch`, for two reasons. The link's one asyncpg
connection is shared by the pollers, and asyncpg refuses a second query while one runs (the
link would then drop the connection under both); and the link turns every error into a
ConnectionError that marks the database down and pauses the pollers, while a refused signal is
an answer, not an outage. An operator action is rare: one connection more for a moment is cheap.

Whether the monitoring role may signal the backend is read from the catalog before the signal
(collectors/sql/signal_backend.sql), so that the refusal says exactly what to grant whatever the
server's version or `lc_messages`; the server's own refusal (InsufficientPrivilegeError, a race
with a change of grants) is recognised too. The pid must still belong to the session that was
seen (its backend_start, when given): a pid the kernel gave to a new session is never signalled.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from collectors.pgstat import CONNECT_SECONDS, DatabaseLink
from core.safetext import safe
from core.view import ActionRefused

SQL: Final = (Path(__file__).parent / "sql" / "signal_backend.sql").read_text()
PID_MAX: Final = 2**31 - 1
"""A pid is a PostgreSQL int4: anything larger is no backend (and asyncpg could not send it)."""
GRANT: Final = "pg_signal_backend"
_BARE: Final = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(name: str) -> str:
    """A role name as it must be typed in SQL: bare when lower-case and plain, else quoted.

    >>> quote_ident("tw_monitor"), quote_ident("Tw Monitor"), quote_ident('a"b')
    ('tw_monitor', '"Tw Monitor"', '"a""b"')
    """
    if _BARE.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def denied(role: str, pid: int) -> str:
    """The refusal when the monitoring role lacks the privilege: what to grant, in one line."""
    named = f"the monitoring role {role}" if role else "the monitoring role"
    grantee = quote_ident(role) if role else "<the monitoring role>"
    return safe(
        f"{named} may not signal backend {pid}: GRANT {GRANT} TO {grantee}; "
        "(a superuser's backend only a superuser may signal)",
        400,
    )


async def signal_backend(
    link: DatabaseLink, pid: int, terminate: bool, *, started_us: int | None = None
) -> str:
    """Cancel the query of backend `pid` (or, with `terminate`, end its session) as the
    monitoring role; one line saying what was done.

    Args:
        link: the monitoring role's link (its dsn, password and timeouts are used).
        pid: the backend's process id.
        terminate: pg_terminate_backend rather than pg_cancel_backend.
        started_us: when the backend started (pg_stat_activity.backend_start, microseconds);
            when given, a pid now held by another session is refused, never signalled.

    Raises:
        ActionRefused: the database cannot be reached, the pid is no longer a client backend,
            or the monitoring role may not signal it (the reason says what to grant).
    """
    if not 0 < pid <= PID_MAX:
        raise ActionRefused(f"{pid} is not a backend's process id")
    try:
        conn = await link.connect()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise ActionRefused(
            f"cannot reach the database to signal backend {pid}: {_reason(exc)}"
        ) from None
    try:
        row = await conn.fetchrow(SQL, pid, terminate, started_us)
    except asyncpg.InsufficientPrivilegeError:  # the grants changed since the catalog was read
        raise ActionRefused(denied(await _role(conn), pid)) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise ActionRefused(f"the database did not signal backend {pid}: {_reason(exc)}") from None
    finally:
        await _close(conn)
    return _outcome(row, pid, terminate)


def _outcome(row: Any, pid: int, terminate: bool) -> str:
    """What the catalog check and the signal said, as the one line (or the refusal)."""
    if not row["found"]:
        raise ActionRefused(f"backend {pid} has ended: no client backend has that pid now")
    if not row["same_session"]:
        raise ActionRefused(
            f"backend {pid} has ended: its pid now belongs to another session (left alone)"
        )
    monitor = row["monitor"]
    if row["owner_superuser"] and not row["monitor_superuser"]:
        raise ActionRefused(
            safe(
                f"backend {pid} is a superuser's ({row['owner']}): only a superuser may signal "
                f"it, and the monitoring role {monitor} is not one",
                400,
            )
        )
    signalled = row["signalled"]
    if signalled is None:
        raise ActionRefused(denied(monitor, pid))
    if not signalled:  # it ended between the check and the signal
        raise ActionRefused(f"backend {pid} has ended: no client backend has that pid now")
    return f"terminated backend {pid}" if terminate else f"cancelled the query of backend {pid}"


async def _role(conn: Any) -> str:
    """The monitoring role's name (for the refusal), asked of the server ("" : it did not say)."""
    try:
        role = await conn.fetchval("SELECT current_user::text")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return ""
    return str(role)


def _reason(exc: BaseException) -> str:
    """One line, the way the link says why the database is down."""
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:  # the OS's own words
        return f"cannot connect: {os.strerror(exc.errno).lower()}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_SECONDS:g} s"
    return safe(f"{type(exc).__name__}: {exc}", 300)


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        conn.terminate()
