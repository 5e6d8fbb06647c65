"""The record writers: the csvlog writer (collectors.csvlog_writer, quoting exactly as the server
writes it) with the scenario's defaults: statements read the watched table, and a backend knows
its principal and how pgaudit is set up for it."""

from __future__ import annotations

from typing import Any

from collectors import csvlog_writer
from collectors.csvlog_writer import Backend
from collectors.csvlog_writer import Log as Log
from collectors.csvlog_writer import Pids as Pids
from collectors.csvlog_writer import Stamps as Stamps
from collectors.csvlog_writer import audit_csv as audit_csv
from collectors.csvlog_writer import audit_params as audit_params
from collectors.csvlog_writer import lit as lit
from collectors.csvlog_writer import query_id as query_id
from collectors.csvlog_writer import row as row
from tests.scenario.constants import WATCHED
from tests.scenario.manifest import Principal


class Statement(csvlog_writer.Statement):
    """A statement with its pgaudit-quoted text and query id; it reads the watched table unless
    told otherwise."""

    __slots__ = ()

    def __init__(
        self, text: str, objects: tuple[str, ...] = (WATCHED,), *rest: Any, **kw: Any
    ) -> None:
        super().__init__(text, objects, *rest, **kw)


class Session(Backend):
    """One backend, with its principal and the audit settings in force in it."""

    __slots__ = ("principal", "session_read", "object_audit", "once", "misc")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Backend's arguments: user, host, app, start_ms, pid, rng (btype, db)."""
        super().__init__(*args, **kwargs)
        self.principal = Principal(self.user, self.host, self.app)
        self.session_read = False
        """Session audit of reads (pgaudit.log includes read)."""
        self.object_audit = True
        """Object audit in this backend (false after `SET pgaudit.role = ''`)."""
        self.once = False
        """pgaudit.log_statement_once."""
        self.misc = False
        """Session audit of role, ddl and misc statements (the DBA)."""
