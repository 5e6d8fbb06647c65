"""`tablewatch doctor` against a real PostgreSQL 15 + pgaudit: all well, then each thing broken in
turn (the audit role's SELECT revoked, the monitoring role without pg_monitor, a table that is
not there, the log path wrong, the database unreachable), each reported with the exact fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tablewatch.pgcluster import PgCluster, free_port
from tests.agentkit import ROOT

ROLE = "tw_doctor"
SETUP = f"""
CREATE SCHEMA IF NOT EXISTS doc;
CREATE TABLE IF NOT EXISTS doc.clients (id int, name text);
DO $$ BEGIN CREATE ROLE auditor NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT ON doc.clients TO auditor;
DO $$ BEGIN CREATE ROLE {ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT pg_monitor TO {ROLE};
REVOKE ALL ON doc.clients FROM {ROLE};
"""


def _settings(tmp_path: Path, dsn: str, log: str, table: str = "doc.clients") -> Path:
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[[tables]]\nname = "{table}"\n[database]\ndsn = "{dsn}"\n'
        f'[audit_log]\npath = "{log}"\nformat = "csvlog"\n[state]\ndir = "{tmp_path}/state"\n'
    )
    return config


def _doctor(config: Path) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TABLEWATCH_", "PG"))}
    done = subprocess.run(
        [sys.executable, "-m", "tablewatch.cli", "--config", str(config), "doctor"],
        cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert not done.stderr, done.stderr
    return done.returncode, done.stdout


def test_doctor_says_what_is_wrong_and_how_to_fix_it(pg_cluster: PgCluster, tmp_path: Path) -> None:
    pg_cluster.psql(SETUP)
    logs = f"{pg_cluster.log_dir}/*.csv"
    config = _settings(tmp_path, pg_cluster.dsn(ROLE), logs)

    status, out = _doctor(config)
    assert status == 0, out
    assert "✓ ok   connect" in out and f"as {ROLE}, PostgreSQL 15" in out
    assert f"{ROLE} is a member of pg_monitor" in out
    assert "object audit through auditor" in out
    assert "every read is audited (auditor has SELECT)" in out
    assert "✓ ok   log format" in out and out.rstrip().endswith("0 problem(s), 3 warning(s)")
    assert "CREATE EXTENSION pgaudit;" in out  # warned: the extension is not created,
    # pg_stat_statements is not loaded (no gap can be laid at a role), and without
    # pg_signal_backend operators cannot cancel a reader's backend
    assert "pg_stat_statements = 'pgaudit,pg_stat_statements'" not in out
    assert "fix: ALTER SYSTEM SET shared_preload_libraries = 'pgaudit,pg_stat_statements';" in out
    assert f"fix: GRANT pg_signal_backend TO {ROLE};" in out

    pg_cluster.psql("REVOKE SELECT ON doc.clients FROM auditor")  # object audit silently ends
    try:
        status, out = _doctor(config)
        assert status == 1
        assert "auditor has no SELECT on it: its reads are not audited" in out
        assert "fix: GRANT SELECT ON doc.clients TO auditor;" in out
    finally:
        pg_cluster.psql("GRANT SELECT ON doc.clients TO auditor")

    pg_cluster.psql(f"REVOKE pg_monitor FROM {ROLE}")
    try:
        status, out = _doctor(config)
        assert status == 1
        assert f"{ROLE} is not a member of pg_monitor" in out
        assert f"fix: GRANT pg_monitor TO {ROLE};" in out
    finally:
        pg_cluster.psql(f"GRANT pg_monitor TO {ROLE}")

    status, out = _doctor(_settings(tmp_path, pg_cluster.dsn(ROLE), logs, "doc.nothing"))
    assert status == 1 and "✗ FAIL table doc.nothing" in out and "no such table" in out

    status, out = _doctor(_settings(tmp_path, pg_cluster.dsn(ROLE), "/nowhere/*.csv"))
    assert status == 1 and "no file matches [audit_log] path = '/nowhere/*.csv'" in out
    assert f"the server writes to {pg_cluster.log_dir}" in out  # where to point it instead

    unreachable = f"postgresql://{ROLE}@127.0.0.1:{free_port()}/postgres"
    status, out = _doctor(_settings(tmp_path, unreachable, logs))
    assert status == 1 and "✗ FAIL connect" in out and "fix: check [database] dsn" in out
    assert "✓ ok   log files" in out  # the log is checked all the same
