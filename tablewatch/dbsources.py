"""The live database sources of `[database]`, built for the agent and the dashboard.

Each source has its own connection of the monitoring role (its own interval, its own failure:
a slow pg_stat_statements never delays pg_stat_activity), with the `statement_timeout` of the
settings; `application_name` names the source, so a DBA sees in pg_stat_activity what each
tablewatch connection is. No `[database] dsn`: no database sources (the audit log alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collectors.activity import ActivitySource
from collectors.pgstat import DatabaseLink, TableStatsSource
from collectors.pgstatements import StatementsSource
from collectors.setupwatch import AuditSetupSource
from core.settings import Settings
from core.sources import DatabaseSource
from core.tables import TableName


@dataclass(frozen=True, slots=True)
class DatabaseFeeds:
    """The sources to attach (each with a maker that builds it afresh after a failure), and
    the connection used to cancel or terminate a reader's backend."""

    sources: tuple[tuple[DatabaseSource, Callable[[], DatabaseSource]], ...]
    """Each source with what resumes it after a failure (the same source: its state kept)."""
    signals: DatabaseLink | None


def database_feeds(settings: Settings, tables: Sequence[TableName]) -> DatabaseFeeds:
    """The database sources the settings ask for (none without a dsn)."""
    db = settings.database
    if not db.dsn:
        return DatabaseFeeds((), None)
    password = db.password.get_secret_value() if db.password is not None else None
    timeout = db.statement_timeout.total_seconds()
    role = settings.detection.audit_role
    watched = list(tables)

    def link(purpose: str) -> DatabaseLink:
        return DatabaseLink(
            db.dsn,
            password,
            statement_timeout=timeout,
            application_name=f"tablewatch {purpose}",
        )

    makers: list[Callable[[], DatabaseSource]] = [
        lambda: TableStatsSource(link("table stats"), watched, db.poll_interval.total_seconds()),
        lambda: StatementsSource(
            link("statements"), watched, db.statements_interval.total_seconds(), role
        ),
        lambda: ActivitySource(
            link("activity"), watched, db.activity_interval.total_seconds(), role
        ),
        lambda: AuditSetupSource(
            link("audit set-up"), watched, role, db.setup_interval.total_seconds()
        ),
    ]
    sources = [make() for make in makers]
    # a source that failed is resumed as it is, never rebuilt: its last counts and set-up are
    # the baseline of its next poll (a fresh one would take what changed meanwhile as given)
    return DatabaseFeeds(tuple((s, _same(s)) for s in sources), link("signals"))


def _same(source: DatabaseSource) -> Callable[[], DatabaseSource]:
    return lambda: source
