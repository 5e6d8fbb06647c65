"""pg_stat_statements as the access events themselves, for a server without an audit log
(`[audit_log] path = ""`: a managed database that gives no log file).

Each `StatementReads` (a role's statement on a watched table, grown between two polls) becomes
one event per call, each with the calls' average rows, at the poll's time: the engine then ranks
the roles by volume, whole-table reads (a COPY: one call, the table's rows), key lookups and
shapes as it does the audit log's records. A statement called more than EVENTS_PER_READ times
between two polls is told as that many calls (each keeping its rows: a key lookup stays a key
lookup; the volume beyond is not told). What it cannot have: client addresses and applications
(pg_stat_statements keeps none: a principal is the role alone), parameters (the texts are
normalised), and the time of each call (all are stamped with the poll).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Final

from core.dbside import StatementReads
from core.events import AccessEvent, EventKind

EVENTS_PER_READ: Final = 1000
"""Calls of one statement told per poll (an app's key lookups: some 100 a second at the default
10 s); each event keeps the calls' average rows, so a lookup is never told as a bulk read."""

_ids = itertools.count(1)


def statement_events(reads: Iterable[StatementReads]) -> list[AccessEvent]:
    """The access events standing for the statements' calls on watched tables, in time order."""
    out: list[AccessEvent] = []
    for r in reads:
        if not r.tables or r.calls <= 0:
            continue
        n = min(r.calls, EVENTS_PER_READ)
        share, extra = divmod(max(r.rows, 0), r.calls)
        extra = min(extra, n)  # the calls told first carry the remainder, one row each
        words = r.query.split(None, 1)
        command = words[0].upper()[:20] if words else "SELECT"
        for table in r.tables:
            for k in range(n):
                out.append(
                    AccessEvent(
                        time_us=r.until_us,
                        kind=EventKind.AUDIT,
                        user=r.user,
                        database=r.database,
                        client_addr="",
                        application_name="",
                        session_id=f"pg_stat_statements:{r.queryid}",
                        audit_type="OBJECT",
                        statement_id=next(_ids),
                        substatement_id=1,
                        class_="READ",
                        command=command,
                        object_type="TABLE",
                        object_name=table,
                        statement=r.query,
                        parameters=None,
                        rows=share + (1 if k < extra else 0),
                    )
                )
    out.sort(key=lambda e: e.time_us)
    return out
