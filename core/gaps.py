"""Audit gaps: a watched table read more, by its own statistics, than the audit log accounts for.

pgaudit can be blind (COPY TO and cursors with `pgaudit.log_rows = on`, SECURITY DEFINER
functions, a REVOKE from the audit role, a session's `SET pgaudit.log = 'none'`), but the table's
statistics count every tuple read. Tuples scanned are not rows returned (`count(*)` scans the
whole table and returns one row; an hourly aggregate must not page), so each audited statement
is taken as an upper bound of what it could have read, a credit:

- a statement that is not a key lookup: one sequential scan of up to the whole table
  (SEQ_MARGIN over its size), whatever it returned (an aggregate), or the whole table fetched
  through an index;
- a key lookup: LOOKUP_CREDIT (+ twice its rows) fetched through an index; or, when the index
  fetches do not explain it (a lookup on an unindexed column), one sequential scan.

Each window of statistics (`TableReads`) spends the credits of the audited statements logged up
to SLACK_US after it, oldest first; credits left unspent for `credit_us` expire (an index-only
scan spends none). What the credits cannot cover is the gap. A window is judged only once the
audit trail has been read up to SLACK_US past its end, so the tail's lag is never a gap; the
audit records of a long statement logged at its start can be spent by its reads up to
`credit_us` later.

The ledger also keeps, per second, the rows each user's audited statements read, so that a gap
can be laid at the door of the role whose own statistics (pg_stat_statements) show more rows
than the audit log gave it (`attribute`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from core.dbside import Backend, StatementReads, TableReads
from core.redact import redact
from core.safetext import one_line

SLACK_US = 1_000_000
"""A window is judged once the audit trail has been read this far past its end: a record reaches
the log file a little after its timestamp, and the tail sees it at its next look (250 ms). The
credits of records logged up to this long after the window count for it (the clock of the log
and of the statistics is the server's: an audit record is always written before the statistics
of its statement are flushed)."""
SEQ_MARGIN = 1.1
"""A sequential scan reads the live tuples and those its snapshot still sees: some margin."""
SEQ_EXTRA = 100
LOOKUP_CREDIT = 100
"""Tuples a key lookup may fetch through an index beyond twice the rows it returned."""
_KEEP_SECONDS = 120
"""Seconds of credits kept beyond the gap window (for windows still to be judged)."""
MAX_PENDING = 1_000
"""Windows waiting for the audit trail to catch up; older ones are dropped (counted)."""
_SECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class Gap:
    """A window in which the table gave out more tuples than its audited statements could."""

    table: str
    since_us: int
    until_us: int
    tuples: int
    """Tuples the table's statistics counted in the window."""
    covered: int
    """Tuples the audited statements could account for."""
    seq_scans: int
    uncovered_scans: int
    """Sequential scans no audited statement was left to account for."""
    audited: int
    """Audited statements whose credit was still there for this window."""
    size: int | None

    @property
    def tuples_unaudited(self) -> int:
        """The gap: tuples read that the audit log does not account for."""
        return self.tuples - self.covered


class _Second:
    """The audited statements of one second of log time."""

    __slots__ = ("second", "wide", "lookups", "lookup_credit", "rows_by_user", "guessed")

    def __init__(self, second: int) -> None:
        self.second = second
        self.wide = 0
        """Statements that may have read the whole table (anything but a key lookup)."""
        self.lookups = 0
        self.lookup_credit = 0
        """Index fetches the key lookups may account for (LOOKUP_CREDIT + twice their rows)."""
        self.rows_by_user: dict[str, int] = {}
        self.guessed: set[str] | None = None
        """Users some of whose rows here were estimated (pgaudit.log_rows off): their rows
        cannot be held against pg_stat_statements' exact counts."""


class AuditLedger:
    """One watched table's audited statements as credits, and its statistics judged against
    them."""

    def __init__(self, credit_us: int, started_us: int = 0) -> None:
        self.credit_us = credit_us
        self.started_us = started_us
        """Audited statements are counted from then: an earlier window is not judged."""
        self._seconds: deque[_Second] = deque()
        self._pending: deque[TableReads] = deque()
        self.dropped = 0
        """Windows never judged because the audit trail did not catch up in time."""

    def audited(self, t: int, user: str, rows: int, lookup: bool, estimated: bool) -> None:
        """An audited statement on the table (called for each, in log-time order)."""
        second = t // _SECOND
        seconds = self._seconds
        if seconds and seconds[-1].second >= second:
            bucket = seconds[-1]  # a late record joins the newest second: its credit still counts
        else:
            bucket = _Second(second)
            seconds.append(bucket)
            # bounded even while no statistics come to spend the credits (the database away)
            oldest = second - self.credit_us // _SECOND - _KEEP_SECONDS
            while seconds[0].second < oldest:
                seconds.popleft()
        if estimated:
            if bucket.guessed is None:
                bucket.guessed = set()
            bucket.guessed.add(user)
        if lookup:
            bucket.lookups += 1
            bucket.lookup_credit += LOOKUP_CREDIT + 2 * rows
        else:
            bucket.wide += 1
        by_user = bucket.rows_by_user
        by_user[user] = by_user.get(user, 0) + rows

    def observe(self, reads: TableReads) -> None:
        """A window of the table's statistics, judged once the audit trail caught up (not
        one that began before the ledger did: its credits were never counted)."""
        if reads.since_us < self.started_us:
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(reads)

    @property
    def waiting(self) -> int:
        """Windows waiting for the audit trail to catch up."""
        return len(self._pending)

    def judge(self, audit_until_us: int, size: int | None, threshold: int) -> list[Gap]:
        """Judge the windows the audit trail has been read past (by SLACK_US); the gaps of at
        least `threshold` tuples."""
        gaps: list[Gap] = []
        pending = self._pending
        while pending and pending[0].until_us + SLACK_US <= audit_until_us:
            gap = self._judge(pending.popleft(), size)
            if gap.tuples_unaudited >= threshold:
                gaps.append(gap)
        return gaps

    def _judge(self, reads: TableReads, size: int | None) -> Gap:
        """What the audited statements logged up to SLACK_US after the window (and not older
        than `credit_us`) account for, their credits spent.

        A statement that may read the whole table accounts for one sequential scan, else for
        the whole table through an index. A key lookup fetches at least a tuple through the
        index; only the lookups the index fetches do not explain (on an unindexed column) may
        account for sequential scans, one each: so the app's lookups cannot hide a COPY.
        """
        seconds = self._seconds
        oldest = (reads.until_us - self.credit_us) // _SECOND
        while seconds and seconds[0].second < oldest:
            seconds.popleft()
        last = (reads.until_us + SLACK_US) // _SECOND
        usable = [b for b in seconds if b.second <= last]
        wide = sum(b.wide for b in usable)
        lookups = sum(b.lookups for b in usable)
        credit = sum(b.lookup_credit for b in usable)
        size = reads.rows or size
        whole = int(size * SEQ_MARGIN) + SEQ_EXTRA if size else 0
        scans, seq, fetched = reads.seq_scans, reads.seq_tuples, reads.idx_tuples
        by_wide = min(scans, wide)
        wide_left = wide - by_wide
        index_by_wide = min(fetched, wide_left * whole) if size else (fetched if wide_left else 0)
        index_left = fetched - index_by_wide
        indexed_lookups = min(lookups, index_left)
        by_lookups = min(scans - by_wide, lookups - indexed_lookups)
        scans_left = scans - by_wide - by_lookups
        per_scan = seq / scans if scans else 0.0
        seq_unaudited = round(scans_left * per_scan)
        if size:
            seq_unaudited = max(seq_unaudited, seq - (by_wide + by_lookups) * whole)
        index_unaudited = max(0, index_left - credit)
        # spend the credits, oldest first
        wide_spent = by_wide + (-(-index_by_wide // whole) if whole else min(wide_left, 1))
        lookups_spent = by_lookups + indexed_lookups
        for bucket in usable:
            take = min(bucket.wide, wide_spent)
            bucket.wide -= take
            wide_spent -= take
            take = min(bucket.lookups, lookups_spent)
            if take:
                bucket.lookup_credit -= bucket.lookup_credit * take // bucket.lookups
                bucket.lookups -= take
                lookups_spent -= take
        unaudited = min(reads.tuples, seq_unaudited + index_unaudited)
        return Gap(
            reads.table,
            reads.since_us,
            reads.until_us,
            reads.tuples,
            reads.tuples - unaudited,
            scans,
            scans_left,
            wide + lookups,
            size,
        )

    def audited_rows(self, user: str, since_us: int, until_us: int) -> int:
        """Rows the audit log gave `user` on the table between the two times (as still kept)."""
        first, last = since_us // _SECOND, until_us // _SECOND
        return sum(b.rows_by_user.get(user, 0) for b in self._seconds if first <= b.second <= last)

    def guessed(self, user: str, since_us: int, until_us: int) -> bool:
        """Whether some of `user`'s audited rows between the two times were estimates."""
        first, last = since_us // _SECOND, until_us // _SECOND
        return any(
            b.guessed is not None and user in b.guessed
            for b in self._seconds
            if first <= b.second <= last
        )

    def audited_users(self, since_us: int, until_us: int) -> set[str]:
        """The users with audited statements on the table between the two times."""
        first, last = since_us // _SECOND, until_us // _SECOND
        return {u for b in self._seconds if first <= b.second <= last for u in b.rows_by_user}


@dataclass(frozen=True, slots=True)
class Suspect:
    """Who most likely read what the audit log missed, and the evidence."""

    user: str
    client_addr: str
    application_name: str
    evidence: str
    """Plain words with the numbers: what pg_stat_statements or pg_stat_activity showed."""


def attribute(
    gap: Gap,
    statements: Iterable[StatementReads],
    backends: Iterable[tuple[Backend, int]],
    ledger: AuditLedger,
) -> Suspect | None:
    """The role whose own statistics show the rows the audit log missed, if any.

    In order of evidence: pg_stat_statements rows on the table beyond what the audit log gave
    the role; a backend seen reading the table during the window (a COPY, a cursor) by a role
    the audit log did not see; a role's statement naming no watched table (a function) that
    returned about as many rows as the gap. `backends` are (backend, when it was last seen).
    """
    backends = list(backends)
    lo, hi = gap.since_us - SLACK_US, gap.until_us + SLACK_US
    # evidence must account for half the gap at least (a few lookups logged a second late do
    # not explain a table read in full)
    wanted = gap.tuples_unaudited // 2
    on_table: dict[str, list[StatementReads]] = {}
    others: list[StatementReads] = []
    for s in statements:
        if s.until_us < lo or s.since_us > hi:
            continue
        if gap.table in s.tables:
            on_table.setdefault(s.user, []).append(s)
        elif not s.tables and s.rows:
            others.append(s)
    seen: dict[str, Backend] = {}
    for backend, last_us in backends:
        if lo <= last_us and backend.query_start_us is not None and backend.query_start_us <= hi:
            if gap.table in backend.tables:
                seen.setdefault(backend.user, backend)
    best: tuple[int, str] | None = None
    for user, found in on_table.items():
        rows = sum(s.rows for s in found)
        beyond = rows - ledger.audited_rows(user, lo, hi)
        if beyond >= max(wanted, 1) and (best is None or beyond > best[0]):
            best = (beyond, user)
    if best is not None:
        beyond, user = best
        top = max(on_table[user], key=lambda s: s.rows)
        calls = sum(s.calls for s in on_table[user])
        evidence = (
            f"pg_stat_statements counts {beyond:,} rows for {user} beyond its audit records "
            f"({calls:,} call(s); most by: {_clip(top.query)})"
        )
        return _suspect(user, evidence, seen, backends)
    audited = ledger.audited_users(lo, hi)
    for user, backend in seen.items():
        if user not in audited:
            evidence = (
                f"pg_stat_activity saw backend {backend.pid} of {user} on the table "
                f"({backend.kind}: {_clip(backend.query)}), and no audit record of it"
            )
            return _suspect(user, evidence, seen, backends)
    matches = [s for s in others if s.rows >= wanted]
    if matches:
        top = max(matches, key=lambda s: s.rows)
        evidence = (
            f"{top.user} ran a statement naming no watched table that returned {top.rows:,} "
            f"rows ({top.calls:,} call(s)): {_clip(top.query)}"
        )
        return _suspect(top.user, evidence, seen, backends)
    return None


@dataclass(frozen=True, slots=True)
class RoleGap:
    """A role's own statistics (pg_stat_statements) show more rows of the table than its
    audit records: reads the audit log missed, laid at the role directly."""

    user: str
    table: str
    since_us: int
    until_us: int
    rows: int
    """Rows pg_stat_statements counted for the role's statements on the table."""
    audited: int
    """Rows its audit records gave it over the same time."""
    evidence: str

    @property
    def rows_unaudited(self) -> int:
        return self.rows - self.audited


def role_gaps(
    table: str, statements: Iterable[StatementReads], ledger: AuditLedger, threshold: int
) -> list[RoleGap]:
    """Per role, one poll of pg_stat_statements held against its audit records on the table
    (logged rows only: an estimate cannot be held against an exact count). Immune to the
    credits of other statements: a COPY is its role's own rows, whoever else read the table."""
    by_user: dict[str, list[StatementReads]] = {}
    for s in statements:
        if table in s.tables:
            by_user.setdefault(s.user, []).append(s)
    out: list[RoleGap] = []
    for user, found in by_user.items():
        lo = min(s.since_us for s in found) - SLACK_US
        hi = max(s.until_us for s in found) + SLACK_US
        rows = sum(s.rows for s in found)
        if ledger.guessed(user, lo, hi):
            continue
        audited = ledger.audited_rows(user, lo, hi)
        if rows - audited < threshold:
            continue
        top = max(found, key=lambda s: s.rows)
        calls = sum(s.calls for s in found)
        evidence = (
            f"pg_stat_statements counts {rows:,} rows for {user} on the table at "
            f"{clock_text(lo + SLACK_US)}-{clock_text(hi - SLACK_US)} UTC ({calls:,} call(s); "
            f"most by: {_clip(top.query)}), its audit records {audited:,}: "
            f"{rows - audited:,} read unaudited"
        )
        out.append(RoleGap(user, table, lo + SLACK_US, hi - SLACK_US, rows, audited, evidence))
    return out


def clock_text(time_us: int) -> str:
    """HH:MM:SS (UTC) of a time in microseconds."""
    seconds = time_us // 1_000_000 % 86_400
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _suspect(
    user: str,
    evidence: str,
    seen: dict[str, Backend],
    backends: list[tuple[Backend, int]],
) -> Suspect:
    """The role with the client address and application of its backend, when one was seen."""
    backend = seen.get(user)
    if backend is None:
        mine = [(last, b) for b, last in backends if b.user == user]
        backend = max(mine, key=lambda lb: lb[0])[1] if mine else None
    if backend is None:
        return Suspect(user, "", "", evidence)
    return Suspect(user, backend.client_addr or "[local]", backend.application_name, evidence)


def _clip(text: str, limit: int = 120) -> str:
    """A statement as evidence: literals masked (a COPY's WHERE may hold a customer's email;
    the text goes to pagers), on one line, bounded."""
    return one_line(redact(text[:4096]), limit)
