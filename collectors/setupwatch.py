"""The audit set-up, read every interval: a change that blinds the audit trail is tampering.

pgaudit records the statements that blind it only when its own settings cover them (a superuser's
`ALTER SYSTEM SET pgaudit.log = 'none'` is a MISC statement, unseen with `pgaudit.log = 'none'`;
a restart with pgaudit gone from shared_preload_libraries leaves no record at all). So the set-up
itself is read again every interval (`collectors.auditsetup`, pg_monitor only) and each change
that makes it see less is reported as `core.dbside.Tampered`: pgaudit unloaded or its extension
dropped, a `pgaudit.*` setting changed, the audit role dropped or losing SELECT on a watched
table, a role's or database's own setting of them, LOG messages dropped by log_min_messages, the
server log moved, the server restarted. The set-up does not say who did it (`Tampered.user` is
""): the engine attributes it from other sources. A change back to a safer state (a grant
restored) is no tampering, only a note.

`compare` is pure: two reads in, what changed out, tested without a database.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Protocol

from collectors.auditsetup import AuditSetup, read_setup
from collectors.pgstat import DatabaseLink, polling
from core.dbside import Observations, Tampered
from core.events import us_from_utc
from core.findings import Severity
from core.safetext import safe
from core.sources import SourceHealth
from core.tables import TableName

CRITICAL, WARNING = Severity.CRITICAL, Severity.WARNING
LEVELS: Final = (
    "debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error",
    "log", "fatal", "panic",
)  # fmt: skip
"""log_min_messages from the least to the most severe, as the server log orders them: LOG sits
between ERROR and FATAL (unlike client_min_messages)."""
LOG_PLACES: Final = (
    "log_destination", "logging_collector", "log_directory", "log_filename", "log_line_prefix",
)  # fmt: skip
"""Settings that move the server log (or change its lines' shape) without silencing it."""
CLASSES: Final = frozenset({"read", "write", "function", "role", "ddl", "misc", "misc_set"})
"""pgaudit.log's statement classes."""
_ON_IS_SAFER: Final = frozenset(
    {
        "pgaudit.log_catalog",
        "pgaudit.log_parameter",
        "pgaudit.log_relation",
        "pgaudit.log_statement",
    }
)
_OFF_IS_SAFER: Final = frozenset(
    {"pgaudit.log_rows", "pgaudit.log_statement_once", "pgaudit.log_client"}
)
"""log_rows = on drops COPY ... TO and cursor records; log_client = on lets pgaudit.log_level
(below LOG) decide whether the server log gets a record."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """What changed between two reads of the set-up."""

    tampered: tuple[Tampered, ...]
    """Changes that blind (part of) the audit trail."""
    notes: tuple[str, ...]
    """Changes that do not: back to a safer state, or harmless."""


def changes(before: AuditSetup, after: AuditSetup, at_us: int) -> list[Tampered]:
    """The changes from `before` to `after` that blind the audit trail, stamped `at_us` (the
    time of the read; a restart is stamped with the server's new start time)."""
    return list(compare(before, after, at_us).tampered)


def compare(before: AuditSetup, after: AuditSetup, at_us: int) -> Comparison:
    """Tampering and harmless changes between two reads of the set-up (see `changes`)."""
    found: list[Tampered] = []
    notes: list[str] = []
    role = after.audit_role

    def tamper(severity: Severity, detail: str, tables: tuple[str, ...] = ()) -> None:
        found.append(Tampered(at_us, severity, safe(detail, 400), tables))

    if before.started_at and after.started_at and after.started_at != before.started_at:
        started = after.started_at.astimezone(UTC)
        found.append(
            Tampered(
                us_from_utc(after.started_at),
                WARNING,
                f"the server restarted at {started:%H:%M:%S} UTC; settings may have changed "
                "while it was down",
            )
        )
    partial = before.sees_everything and not after.sees_everything
    if partial:
        tamper(
            WARNING,
            f"{_ident(after.login)} is no longer a member of pg_monitor: shared_preload_libraries "
            "and the log's location can no longer be read",
        )
    elif after.sees_everything and not before.sees_everything:
        notes.append(f"{_ident(after.login)} can read every setting again (pg_monitor)")

    if before.pgaudit_loaded and not after.pgaudit_loaded:
        tamper(
            CRITICAL,
            "pgaudit is no longer loaded (shared_preload_libraries = "
            f"{_q(', '.join(after.preload))}): nothing is audited",
        )
    elif after.pgaudit_loaded and not before.pgaudit_loaded:
        notes.append("pgaudit is loaded again")
    if before.extension and not after.extension:
        tamper(
            CRITICAL,
            "the pgaudit extension was dropped from this database (DROP EXTENSION pgaudit): "
            "the DDL records of its event triggers stop",
        )
    elif after.extension and not before.extension:
        notes.append("the pgaudit extension was created")

    for name in sorted(before.settings.keys() | after.settings.keys()):
        if name in before.overridden or name in after.overridden:
            continue  # this session's value is a role's or database's: compared below
        old, new = before.settings.get(name), after.settings.get(name)
        if old == new or (new is None and partial):  # hidden now, not gone
            continue
        if name.startswith("pgaudit."):
            if not (before.pgaudit_loaded and after.pgaudit_loaded):
                continue  # all of them come or go with pgaudit: said above
            if old is None:
                notes.append(f"{name} appeared ({_q(new or '')})")
            elif new is None:
                tamper(CRITICAL, f"{name} is gone (was {_q(old)})")
            elif _safer(name, old, new, role):
                notes.append(f"{name} changed from {_q(old)} to {_q(new)} (no less is audited)")
            else:
                tamper(CRITICAL, f"{name} changed from {_q(old)} to {_q(new)}")
        elif name == "log_min_messages":
            if _drops_log(new or "") and not _drops_log(old or ""):
                tamper(
                    CRITICAL,
                    f"log_min_messages raised from {_q(old or '')} to {_q(new or '')}: LOG "
                    "messages, the audit records among them, are no longer written",
                )
            else:
                notes.append(f"log_min_messages changed from {_q(old or '')} to {_q(new or '')}")
        elif name in LOG_PLACES:
            if name == "log_destination" and _places(new or "") >= _places(old or ""):
                notes.append(f"log_destination changed from {_q(old or '')} to {_q(new or '')}")
            else:
                tamper(
                    WARNING,
                    f"{name} changed from {_q(old or '')} to {_q(new or '')}: the audit records "
                    "may now be written elsewhere",
                )

    _roles_and_databases(before, after, tamper, notes)
    _audit_role(before, after, tamper, notes)
    return Comparison(tuple(found), tuple(notes))


class _Tamper(Protocol):
    """How the rule helpers report tampering (the closure in `compare`)."""

    def __call__(self, severity: Severity, detail: str, tables: tuple[str, ...] = ()) -> None: ...


def _roles_and_databases(
    before: AuditSetup, after: AuditSetup, tamper: _Tamper, notes: list[str]
) -> None:
    """Per-role and per-database settings: one planted for a role wins over the server's value
    in that role's sessions, now and after any later change of the server's, so adding one is
    tampering unless it makes those sessions audited strictly more."""
    old_of = {(r.role, r.database, r.name.lower()): r.value for r in before.role_settings}
    new_of = {(r.role, r.database, r.name.lower()): r.value for r in after.role_settings}
    for key in sorted(old_of.keys() | new_of.keys()):
        role, database, name = key
        old, new = old_of.get(key), new_of.get(key)
        who = _who(role, database)
        if old == new:
            continue
        if new is None:
            notes.append(f"{name} {who} removed (was {_q(old or '')})")
            continue
        if name == "log_min_messages":
            if _drops_log(new) and (old is None or not _drops_log(old)):
                tamper(
                    CRITICAL,
                    f"log_min_messages = {_q(new)} set {who}: LOG messages, the audit records "
                    "among them, are no longer written for those sessions",
                )
            elif old is None:
                tamper(WARNING, f"log_min_messages = {_q(new)} set {who}")
            else:
                notes.append(f"log_min_messages {who} changed from {_q(old)} to {_q(new)}")
        elif name.startswith("pgaudit."):
            server = None if name in after.overridden else after.settings.get(name)
            if old is not None:
                if _safer(name, old, new, after.audit_role):
                    notes.append(f"{name} {who} changed from {_q(old)} to {_q(new)}")
                else:
                    tamper(CRITICAL, f"{name} {who} changed from {_q(old)} to {_q(new)}")
            elif server is not None and _strictly_safer(name, server, new, after.audit_role):
                notes.append(f"{name} = {_q(new)} set {who} (server-wide: {_q(server)})")
            else:
                shown = f" (server-wide: {_q(server)})" if server is not None else ""
                tamper(
                    CRITICAL,
                    f"{name} = {_q(new)} set {who}{shown}: it overrides the server's value "
                    "in those sessions",
                )
        elif old is None:
            tamper(WARNING, f"{name} = {_q(new)} set {who}")
        else:
            tamper(WARNING, f"{name} {who} changed from {_q(old)} to {_q(new)}")


def _audit_role(before: AuditSetup, after: AuditSetup, tamper: _Tamper, notes: list[str]) -> None:
    """The audit role and its SELECT on each watched table: object audit of a table lasts only
    as long as both."""
    role = _ident(after.audit_role)
    if before.audit_role_exists and not after.audit_role_exists:
        tamper(
            CRITICAL, f"the audit role {role} was dropped: object audit of the watched tables stops"
        )
        return
    if after.audit_role_exists and not before.audit_role_exists:
        notes.append(f"the audit role {role} exists again")
    was = {t.name: t for t in before.tables}
    for now in after.tables:
        then = was.get(now.name)
        if then is None:
            continue
        if then.exists and not now.exists:
            tamper(
                WARNING,
                f"{now.name} no longer exists (dropped or renamed): its reads cannot be watched",
                (now.name,),
            )
        elif now.exists and not then.exists:
            notes.append(f"{now.name} exists again")
        elif then.audited is True and now.audited is False:
            tamper(
                CRITICAL,
                f"{role} lost SELECT on {now.name}: its reads are no longer audited",
                (now.name,),
            )
        elif then.audited is False and now.audited is True:
            notes.append(f"{role} has SELECT on {now.name} again: its reads are audited again")


def blind_spots(setup: AuditSetup) -> list[str]:
    """What the set-up misses as it stands (already at the baseline, so never a change)."""
    out: list[str] = []
    s, role = setup.settings, _ident(setup.audit_role)
    if not setup.sees_everything:
        out.append(
            f"{_ident(setup.login)} is not a member of pg_monitor: shared_preload_libraries "
            "and the log's location cannot be read"
        )
    if not setup.pgaudit_loaded:
        out.append("pgaudit is not loaded: nothing is audited")
    else:
        if s.get("pgaudit.role", "") != setup.audit_role:
            out.append(
                f"pgaudit.role is {_q(s.get('pgaudit.role', ''))}, not {role}: object audit "
                "of the watched tables is off"
            )
        if _flag(s.get("pgaudit.log_rows", "")) is True:
            out.append("pgaudit.log_rows is on: COPY ... TO and cursor reads are not audited")
    if not setup.audit_role_exists:
        out.append(f"the audit role {role} does not exist: object audit is off")
    for t in setup.tables:
        if not t.exists:
            out.append(f"{t.name}: no such table")
        elif t.audited is False:
            out.append(f"{role} has no SELECT on {t.name}: its reads are not audited")
    level = s.get("log_min_messages", "")
    if _drops_log(level):
        out.append(f"log_min_messages is {_q(level)}: the audit records (LOG) are not written")
    for r in setup.role_settings:
        name = r.name.lower()
        server = None if name in setup.overridden else s.get(name)
        if (name == "log_min_messages" and _drops_log(r.value)) or (
            name.startswith("pgaudit.")
            and (server is None or not _safer(name, server, r.value, setup.audit_role))
        ):
            out.append(f"{name} = {_q(r.value)} {_who(r.role, r.database)}: audited less")
    return out


def summary(setup: AuditSetup) -> str:
    """The set-up in a few words: `pgaudit loaded, log = 'read', role auditor, 2 tables
    audited`."""
    s = setup.settings
    if setup.pgaudit_loaded:
        head = (
            f"pgaudit loaded, log = {_q(s.get('pgaudit.log', '?'))}, "
            f"role {_ident(s['pgaudit.role']) if s.get('pgaudit.role') else 'not set'}"
        )
    else:
        head = "pgaudit NOT loaded"
    audited, total = sum(t.audited is True for t in setup.tables), len(setup.tables)
    if audited == total:
        return f"{head}, {total} table{'' if total == 1 else 's'} audited"
    return f"{head}, {audited} of {total} tables audited"


class AuditSetupSource:
    """Reads the audit set-up every `interval` seconds; the first read is the baseline, each
    later one is compared with the one before (`compare`)."""

    name = "audit_setup"

    def __init__(
        self,
        link: DatabaseLink,
        tables: Sequence[TableName],
        audit_role: str,
        interval: float = 10.0,
    ) -> None:
        self.link = link
        self.tables = list(tables)
        self.audit_role = audit_role
        self.interval = interval
        self.polls = 0
        self.last_poll_seconds = 0.0
        self.setup: AuditSetup | None = None
        """The latest read (the baseline of the next comparison)."""
        self.notes: list[str] = []
        """The latest harmless changes (at most ten)."""

    async def poll(self) -> Observations:
        """One read: the tampering since the previous one (none the first time: a baseline;
        its blind spots come as notes).

        Raises:
            ConnectionError: the database cannot answer now (see `health`); the next poll
                compares with the last read that succeeded, so nothing is missed meanwhile.
        """
        t0 = time.monotonic()
        after = await read_setup(self.link, self.tables, self.audit_role)
        self.last_poll_seconds = time.monotonic() - t0
        self.polls += 1
        before, self.setup = self.setup, after
        at_us = us_from_utc(after.taken_at) if after.taken_at else int(time.time() * 1e6)
        if before is None:
            return Observations(notes=tuple(blind_spots(after)), taken_us=at_us)
        found = compare(before, after, at_us)
        self.notes = [*self.notes, *found.notes][-10:]
        return Observations(tampered=found.tampered, notes=found.notes, taken_us=at_us)

    async def observations(self) -> AsyncIterator[Observations]:
        """Each poll's result every `interval` seconds, until cancelled (then the link is
        closed); a failed poll yields nothing and is shown in `health`."""
        # closing this generator must close `polling`'s at once (its finally closes the link),
        # not whenever the garbage collector gets to it
        async with contextlib.aclosing(polling(self.poll, self.interval, self.link)) as polls:
            async for found in polls:
                yield found

    def health(self) -> SourceHealth:
        """Down with the reason while the database does not answer; else the set-up in a few
        words, and whatever it misses as it stands (detail and notes), so that a set-up blind
        from the start does not pass for a watched one."""
        if self.link.problem:
            return SourceHealth(self.name, "error", self.link.problem, notes=tuple(self.notes))
        setup = self.setup
        if setup is None:
            return SourceHealth(self.name, "waiting", "connecting", notes=tuple(self.notes))
        detail = f"read every {self.interval:g} s: {summary(setup)}"
        blind = blind_spots(setup)
        if blind:
            more = f" (+{len(blind) - 1} more, see notes)" if len(blind) > 1 else ""
            detail += f"; BLIND: {blind[0]}{more}"
        return SourceHealth(
            self.name,
            "ok",
            safe(detail, 400),
            last_event_time=setup.taken_at,
            notes=(*blind, *self.notes),
        )


def _drops_log(level: str) -> bool:
    """log_min_messages at `level` keeps LOG messages (and the audit records) out of the log.

    >>> _drops_log("fatal"), _drops_log("error"), _drops_log("LOG")
    (True, False, False)
    """
    level = level.strip().lower()
    return level in LEVELS and LEVELS.index(level) > LEVELS.index("log")


def _classes(value: str) -> frozenset[str] | None:
    """The classes pgaudit.log audits, read in order as pgaudit does (`all, -misc`); None for a
    word it does not know (then no change of it is judged safer).

    >>> sorted(_classes("all, -misc, -misc_set, -ddl, -function"))
    ['read', 'role', 'write']
    >>> _classes("none")
    frozenset()
    """
    out: frozenset[str] = frozenset()
    for word in value.lower().split(","):
        word = word.strip()
        if not word:
            continue
        name = word.lstrip("-").strip()
        group = CLASSES if name == "all" else frozenset() if name == "none" else frozenset({name})
        if not group <= CLASSES:
            return None
        out = out - group if word.startswith("-") else out | group
    return out


def _flag(value: str) -> bool | None:
    """A boolean setting as PostgreSQL reads it (on, true, yes, 1 and their prefixes)."""
    v = value.strip().lower()
    if v in ("1", "on") or (v and ("true".startswith(v) or "yes".startswith(v))):
        return True
    if v in ("0", "off") or (v and ("false".startswith(v) or "no".startswith(v))):
        return False
    return None


def _safer(name: str, old: str, new: str, audit_role: str) -> bool:
    """Does pgaudit write at least as much with `name` = `new` as with `old`? Unknown
    settings and values never are (every change of them is tampering)."""
    if old == new:
        return True
    if name == "pgaudit.log":
        classes_then, classes_now = _classes(old), _classes(new)
        return classes_then is not None and classes_now is not None and classes_now >= classes_then
    if name == "pgaudit.role":
        return new == audit_role
    if name == "pgaudit.log_level":
        return new.strip().lower() == "log"
    was, now = _flag(old), _flag(new)
    if name in _ON_IS_SAFER:
        return now is True or (now is not None and now == was)  # `true` after `on`: the same
    if name in _OFF_IS_SAFER:
        return now is False or (now is not None and now == was)
    return False


def _strictly_safer(name: str, old: str, new: str, audit_role: str) -> bool:
    return _safer(name, old, new, audit_role) and not _safer(name, new, old, audit_role)


def _places(destinations: str) -> set[str]:
    return {d.strip().lower() for d in destinations.split(",") if d.strip()}


def _q(value: str) -> str:
    """A value quoted as SQL would (`'read, role'`), made safe and bounded."""
    return "'" + safe(value, 80).replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A role or database name as SQL writes it (quoted when it must be), safe and bounded."""
    if not (name.isidentifier() and name == name.lower() and name.isascii()):
        name = '"' + name.replace('"', '""') + '"'
    return safe(name, 64)


def _who(role: str, database: str) -> str:
    """Whom a per-role or per-database setting covers, in words."""
    if role and database:
        return f"for role {_ident(role)} in database {_ident(database)}"
    if role:
        return f"for role {_ident(role)}"
    if database:
        return f"for every role in database {_ident(database)}"
    return "for every role (ALTER ROLE ALL)"
