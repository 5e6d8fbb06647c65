"""End to end on a real PostgreSQL 15 + pgaudit: real clients misbehave, the real log is replayed,
the findings name them.

A private cluster per ``pgaudit.log_rows`` setting. An application (asyncpg, extended protocol)
looks customers up by key, then walks consecutive keys; an analyst reads the whole table; a role
without the privilege probes it; the superuser revokes the audit role's SELECT and mutes an
analyst's session audit. `tablewatch replay` over the csvlog must raise each of them, and nothing
about the application's ordinary lookups. All of it happens inside the learning period: these
are the signals raised from the very first record.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tablewatch.pgcluster import PgCluster

pytestmark = pytest.mark.postgres

TABLEWATCH = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tablewatch"
ROWS = 2000
SETUP = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (id int PRIMARY KEY, name text, email text, region text);
INSERT INTO crm.client_list
  SELECT g, 'client ' || g, 'client' || g || '@example.com', (ARRAY['EU','NA','APAC'])[g % 3 + 1]
  FROM generate_series(1, {ROWS}) g;
GRANT SELECT ON crm.client_list TO auditor;
CREATE ROLE app LOGIN;
CREATE ROLE analyst LOGIN;
CREATE ROLE prober LOGIN;
GRANT USAGE ON SCHEMA crm TO app, analyst, prober;
GRANT SELECT ON crm.client_list TO app, analyst;
-- session audit of role changes and settings for the superuser: how tampering shows
ALTER ROLE postgres SET pgaudit.log = 'role, ddl, misc';
"""


async def _lookups(dsn: str, keys: list[int]) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "crm-web"})
    try:
        for key in keys:
            await conn.fetch("SELECT id, name FROM crm.client_list WHERE id = $1", key)
    finally:
        await conn.close()


def _findings(log: Path) -> list[dict[str, Any]]:
    run = subprocess.run(
        [
            str(TABLEWATCH),
            "replay",
            "--format",
            "csvlog",
            "--table",
            f"crm.client_list={ROWS}",
            str(log),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


@pytest.mark.parametrize("log_rows", ["off", "on"])
def test_real_misbehaviour_is_found_in_the_real_audit_log(
    pg_factory: Callable[[dict[str, str]], PgCluster], log_rows: str, tmp_path: Path
) -> None:
    pg = pg_factory({"pgaudit.log_rows": log_rows})
    pg.psql("CREATE DATABASE crm")
    pg.psql(SETUP, dbname="crm", app="setup")
    dsn = pg.dsn("app", "crm")
    # ordinary traffic: scattered keys; then a walk over consecutive keys
    asyncio.run(_lookups(dsn, [(k * 7919) % ROWS + 1 for k in range(25)]))
    asyncio.run(_lookups(dsn, list(range(500, 545))))
    pg.psql("SELECT * FROM crm.client_list;", user="analyst", dbname="crm", app="psql")
    for _ in range(3):
        pg.psql(
            "SELECT * FROM crm.client_list;", user="prober", dbname="crm", app="psql", check=False
        )
    pg.psql("REVOKE SELECT ON crm.client_list FROM auditor;", dbname="crm", app="psql")
    pg.psql("ALTER ROLE analyst SET pgaudit.log = 'none';", dbname="crm", app="dba-console")
    sentinel = f"sentinel-{uuid.uuid4()}"
    pg.psql(f"SELECT '{sentinel}'", dbname="crm", check=False)
    pg.psql(f"SELECT * FROM no_such_table_{sentinel.replace('-', '_')}", dbname="crm", check=False)
    pg.wait_for_log("csvlog", lambda text: sentinel.replace("-", "_") in text)
    log = Path(pg.log_path("csvlog"))
    findings = _findings(log)

    def of(user: str, app: str) -> list[dict[str, Any]]:
        return [f for f in findings if f["user"] == user and f["application_name"] == app]

    [analyst] = of("analyst", "psql")
    assert analyst["severity"] == "critical"
    detail = analyst["reasons"][0]["detail"]
    if log_rows == "on":
        assert f"{ROWS:,} rows (100% of the table), rows logged by pgaudit" in detail
    else:
        assert "estimated from its shape (SELECT * without WHERE)" in detail

    app = of("app", "crm-web")
    assert [f["severity"] for f in app] == ["warning"]  # the walk, not the scattered lookups
    assert app[0]["reasons"][0]["code"] == "sequential_keys"
    assert "consecutive keys 500..529" in app[0]["reasons"][0]["detail"]

    prober = of("prober", "psql")
    assert [f["severity"] for f in prober] == ["info", "warning"]
    assert prober[-1]["reasons"][0]["code"] == "denied"

    [revoke] = of("postgres", "psql")
    assert revoke["severity"] == "critical"
    assert revoke["reasons"][0]["code"] == "audit_tamper"
    assert "privilege revoked from the audit role auditor" in revoke["reasons"][0]["detail"]
    [mute] = of("postgres", "dba-console")
    assert mute["severity"] == "critical"
    assert "audit setting pgaudit.log changed (ALTER ROLE)" in mute["reasons"][0]["detail"]
    assert len(findings) == 6, findings
