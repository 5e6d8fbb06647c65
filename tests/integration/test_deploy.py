"""The deployment examples work as written: the systemd unit passes `systemd-analyze verify`,
and the database-side SQL gives the monitoring role statistics but never the table's rows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tablewatch.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = (DEPLOY / "systemd" / "tablewatch.service").read_text()
    assert "ExecStart=/opt/tablewatch/.venv/bin/tablewatch " in unit
    here = shutil.which("tablewatch") or str(ROOT / ".venv" / "bin" / "tablewatch")
    (tmp_path / "tablewatch.service").write_text(
        unit.replace("/opt/tablewatch/.venv/bin/tablewatch", here)
    )
    verified = subprocess.run(
        [analyze, "verify", str(tmp_path / "tablewatch.service")], capture_output=True, text=True
    )
    problems = [
        line
        for line in (verified.stdout + verified.stderr).splitlines()
        if "tablewatch.service" in line
    ]
    assert problems == [], problems


@pytest.mark.postgres
def test_the_monitoring_role_sees_statistics_never_rows(pg_cluster: PgCluster) -> None:
    pg_cluster.psql("DROP DATABASE IF EXISTS deploy_check; CREATE DATABASE deploy_check")
    pg_cluster.psql(
        "CREATE SCHEMA crm; CREATE TABLE crm.client_list (id int, email text);"
        "INSERT INTO crm.client_list VALUES (1, 'ann@example.com')",
        dbname="deploy_check",
    )
    script = (DEPLOY / "postgresql" / "monitoring-role.sql").read_text()
    pg_cluster.psql(script, dbname="deploy_check")
    pg_cluster.psql(script, dbname="deploy_check")  # twice: harmless
    seen = pg_cluster.psql(
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query IS NOT NULL",
        user="tablewatch",
        dbname="deploy_check",
    )
    assert seen.strip() == "t"
    refused = pg_cluster.psql(
        "SELECT email FROM crm.client_list", user="tablewatch", dbname="deploy_check", check=False
    )
    assert "ann@example.com" not in refused
    with pytest.raises(RuntimeError, match="permission denied"):
        pg_cluster.psql(
            "SELECT email FROM crm.client_list", user="tablewatch", dbname="deploy_check"
        )
    granted = pg_cluster.psql(
        "SELECT has_table_privilege('auditor', 'crm.client_list', 'SELECT'),"
        " pg_has_role('tablewatch', 'pg_monitor', 'member')",
        dbname="deploy_check",
    )
    assert granted.strip() == "t|t"
