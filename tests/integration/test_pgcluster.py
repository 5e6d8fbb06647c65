"""The private PostgreSQL + pgaudit cluster used by the integration tests really works."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable

from tablewatch.pgcluster import LOG_FORMATS, PgCluster


def test_cluster_starts_and_logs_to_three_files(pg_cluster: PgCluster) -> None:
    assert pg_cluster.psql("SELECT 1") == "1\n"
    assert pg_cluster.psql("SHOW server_version").startswith("15.")
    assert pg_cluster.psql("SELECT inet_client_addr()") == "127.0.0.1\n"
    assert pg_cluster.dsn("alice", "crm") == f"postgresql://alice@127.0.0.1:{pg_cluster.port}/crm"
    for fmt in LOG_FORMATS:
        path = pg_cluster.log_path(fmt)
        assert path.parent == pg_cluster.log_dir and path.is_file()


def test_pgaudit_is_loaded(
    pg_cluster: PgCluster, pg_factory: Callable[[dict[str, str]], PgCluster]
) -> None:
    assert "pgaudit" in pg_cluster.psql("SHOW shared_preload_libraries")
    assert pg_cluster.psql("SHOW pgaudit.role") == "auditor\n"
    assert pg_cluster.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'auditor'") == "f\n"
    pg_cluster.psql("CREATE EXTENSION IF NOT EXISTS pgaudit")
    other = pg_factory({"pgaudit.log_rows": "on"})
    assert other.port != pg_cluster.port
    assert other.psql("SHOW pgaudit.log_rows") == "on\n"
    other.set_gucs({"pgaudit.log": "read"})
    assert other.psql("SHOW pgaudit.log") == "read\n"


def test_object_read_is_audited_in_all_formats(pg_cluster: PgCluster) -> None:
    tag = uuid.uuid4().hex[:8]
    table, reader, app = f"crm.clients_{tag}", f"reader_{tag}", f"tw-app-{tag}"
    pg_cluster.psql(
        f"""CREATE SCHEMA IF NOT EXISTS crm;
        CREATE TABLE {table} (id int PRIMARY KEY, name text);
        INSERT INTO {table} SELECT g, 'client ' || g FROM generate_series(1, 10) g;
        GRANT SELECT ON {table} TO auditor;
        CREATE ROLE {reader} LOGIN;
        GRANT USAGE ON SCHEMA crm TO {reader};
        GRANT SELECT ON {table} TO {reader};"""
    )
    # psql 15 has no \bind; PREPARE/EXECUTE also logs the parameters
    out = pg_cluster.psql(
        f"PREPARE q(int) AS SELECT name FROM {table} WHERE id = $1; EXECUTE q(7);",
        user=reader,
        app=app,
    )
    assert out == "client 7\n"
    marker = f"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,{table},"

    csv_text = pg_cluster.wait_for_log("csvlog", lambda s: marker in s)
    rows = [r for r in csv.reader(io.StringIO(csv_text)) if r[13].startswith(marker)]
    assert len(rows) == 1
    row = rows[0]
    assert (row[1], row[2], row[11], row[22]) == (reader, "postgres", "LOG", app)
    assert row[4].startswith("127.0.0.1:")
    assert row[13].endswith(",7")  # the bound parameter

    json_text = pg_cluster.wait_for_log("jsonlog", lambda s: marker in s)
    recs = [json.loads(line) for line in json_text.splitlines() if marker in line]
    assert len(recs) == 1
    rec = recs[0]
    assert (rec["user"], rec["dbname"], rec["remote_host"]) == (reader, "postgres", "127.0.0.1")
    assert rec["application_name"] == app and rec["message"] == row[13]

    stderr_text = pg_cluster.wait_for_log("stderr", lambda s: marker in s)
    lines = [line for line in stderr_text.splitlines() if marker in line]
    assert len(lines) == 1
    assert f"{reader}@postgres 127.0.0.1(" in lines[0]
    assert lines[0].endswith(f" {app} LOG:  {row[13]}")
