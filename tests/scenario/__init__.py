"""Scenario generator: days of realistic pgaudit csvlog traffic, benign habits and labelled attacks.

`generate()` writes one PostgreSQL 15 csvlog file (26 columns, quoted the way ``csvlog.c`` and
pgaudit 1.7 quote them, as ``bench/gen_csvlog.py`` does) and a JSON manifest beside it that says
who the benign principals are and when each attack happened, so detection tests can assert "these
principals page, those never do" over several days of event time.

The server it stands for::

    log_destination = 'csvlog'   log_connections = on   log_disconnections = on
    log_min_duration_statement = 250   log_checkpoints = on   log_autovacuum_min_duration = 0
    shared_preload_libraries = 'pgaudit,pg_stat_statements'   compute_query_id = auto
    pgaudit.role = 'auditor'   pgaudit.log_relation = on   pgaudit.log_parameter = on
    pgaudit.log_rows = off | on (log_rows)
    GRANT SELECT ON crm.client_list, crm.orders TO auditor;    -- object audit, every role
    ALTER ROLE <each analyst> SET pgaudit.log = 'read';        -- SESSION records too
    ALTER ROLE reporting SET pgaudit.log_statement_once = on;  -- <previously logged>
    ALTER ROLE <dba> SET pgaudit.log = 'role, ddl, misc';

Facts of pgaudit 1.7 it follows (checked against the pgaudit source and the shared corpus):

- per relation, the OBJECT record comes first, then (log_relation) the SESSION record, both with
  the same statement id; statement ids count the audited statements of a backend;
- the statement is the query string as the client sent it (pgaudit 1.7 does not trim it: psql's
  trailing ``;`` stays; driver statements have none);
- COPY ... TO is logged as ``READ,SELECT`` (command tag ``COPY``), and with log_rows = on it is
  not logged at all, so the nightly pg_dump leaves no audit record then;
- ``SET pgaudit.log = 'none'`` is itself never logged (the class bitmap is already empty when
  the record would be written), so the in-session tamper here is ``SET pgaudit.role = ''``;
- ``ALTER SYSTEM`` is class DDL; ``DROP EXTENSION pgaudit`` only drops its event triggers (the
  hooks stay loaded from shared_preload_libraries), so reads are still audited after it; a
  server-wide ``pgaudit.log`` is overridden by per-role settings, so ``ALTER SYSTEM SET
  pgaudit.log = 'none'`` changes nothing visible here, while ``ALTER SYSTEM SET pgaudit.role =
  ''`` (after the reload) ends all object audit.

Benign traffic for a seed never depends on which attacks are included (separate random streams),
except for what a tamper switches off after it happened.

Run ``python -m tests.scenario OUT.csv [--seed N] [--log-rows] [--days D] [--scale S]``.

The modules, from the bottom up: `constants` (tables, statements, time units), `manifest` (what
was written), `csvlog` (quoting, backends and the record writer), `attacks` (the six plans and
their placement), `world` (everything a seed decides), the processes of `server`, `apphosts`,
`routines` and `analysts`, `run` (the scheduler and `generate()`), and `cli` (`main()`).
"""

from __future__ import annotations

from tests.scenario.attacks import Plan, Step
from tests.scenario.cli import main
from tests.scenario.constants import (
    ATTACKS,
    DAY,
    HOUR,
    LEARNING,
    MINUTE,
    ORDERS,
    SECOND,
    WATCHED,
)
from tests.scenario.csvlog import Log, Pids, Session, Statement, audit_csv, audit_params, lit
from tests.scenario.manifest import Attack, Manifest, Principal
from tests.scenario.run import AttackRun, Proc, Run, generate
from tests.scenario.world import Analyst, AppHost, World

__all__ = [
    "ATTACKS",
    "DAY",
    "HOUR",
    "LEARNING",
    "MINUTE",
    "ORDERS",
    "SECOND",
    "WATCHED",
    "Analyst",
    "AppHost",
    "Attack",
    "AttackRun",
    "Log",
    "Manifest",
    "Pids",
    "Plan",
    "Principal",
    "Proc",
    "Run",
    "Session",
    "Statement",
    "Step",
    "World",
    "audit_csv",
    "audit_params",
    "generate",
    "lit",
    "main",
]
