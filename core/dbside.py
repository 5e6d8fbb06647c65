"""What the database itself says, as the engine takes it: the watched tables' read statistics
(pg_stat_all_tables), the statements each role ran on them (pg_stat_statements), the backends
reading them right now (pg_stat_activity), and changes to the audit set-up.

The audit log can be blind (COPY TO and cursors with `pgaudit.log_rows = on`, SECURITY DEFINER
functions, a REVOKE from the audit role, a superuser's `SET pgaudit.log = 'none'`); these are
what the engine cross-checks it against (core.gaps). The collectors that poll them live in
`collectors`; these are plain values, free of I/O. Every text here is raw and
attacker-controlled (role names, application_name, query texts): shown only through
`core.safetext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.findings import Severity


@dataclass(frozen=True, slots=True)
class TableReads:
    """Tuples a watched table gave out between two polls, as its statistics count them."""

    table: str
    since_us: int
    until_us: int
    seq_scans: int
    """Sequential scans started (seq_scan grew by this much)."""
    seq_tuples: int
    """Tuples those scans read (seq_tup_read)."""
    idx_tuples: int
    """Tuples read through its indexes: index entries returned (idx_tup_read of its indexes:
    index-only scans too), or heap tuples fetched (idx_tup_fetch) when more."""
    rows: int | None
    """The table's size (reltuples, else live tuples); None when unknown."""

    @property
    def tuples(self) -> int:
        """All tuples read: sequential and through indexes."""
        return self.seq_tuples + self.idx_tuples


@dataclass(frozen=True, slots=True)
class StatementReads:
    """One role's statement between two polls of pg_stat_statements (calls and rows grew)."""

    user: str
    database: str
    queryid: int
    query: str
    """Its text as pg_stat_statements keeps it (constants as $n), raw."""
    tables: tuple[str, ...]
    """The watched tables it names (relations from its parse tree); () : none of them."""
    since_us: int
    until_us: int
    calls: int
    rows: int


@dataclass(frozen=True, slots=True)
class Backend:
    """A backend reading a watched table now (pg_stat_activity), or in a transaction that
    holds a cursor over one."""

    pid: int
    user: str
    database: str
    client_addr: str
    """Without port; "[local]" for a Unix socket, as the audit log names it ("" is taken as
    that too)."""
    application_name: str
    state: str
    """active | idle in transaction | idle in transaction (aborted) | ..."""
    kind: str
    """copy | cursor | select | function | other: what it does to the table."""
    tables: tuple[str, ...]
    """The watched tables it reads."""
    query: str
    """Its current (or last) query text, raw and possibly cut by track_activity_query_size."""
    backend_start_us: int
    xact_start_us: int | None
    query_start_us: int | None


@dataclass(frozen=True, slots=True)
class Tampered:
    """A change that blinds the audit trail, seen on the database side: the audit set-up
    changed (settings, grants, the extension, a per-role setting), a session set
    `pgaudit.log` or `log_min_messages`, pg_stat_statements was reset, the server restarted."""

    time_us: int
    severity: Severity
    detail: str
    tables: tuple[str, ...] = ()
    """The watched tables it blinds; () : all of them."""
    user: str = ""
    """Who did it, when the database says ("" : unknown)."""
    client_addr: str = ""
    application_name: str = ""


@dataclass(frozen=True, slots=True)
class Observations:
    """One poll of one database source: whatever it saw (each source fills its own part)."""

    table_reads: tuple[TableReads, ...] = ()
    statements: tuple[StatementReads, ...] = ()
    backends: tuple[Backend, ...] | None = None
    """Every backend on a watched table now (None: this source does not look at them)."""
    tampered: tuple[Tampered, ...] = ()
    notes: tuple[str, ...] = field(default=())
    taken_us: int = 0
    """When the database answered (its clock); 0: unknown, the consumer's clock is used."""
