"""Record the real pgaudit csvlog shipped as ``tablewatch/samples/pgaudit-sample.csv``.

Regenerate it (as root or as any user that can run PostgreSQL 15 + pgaudit; a few seconds)::

    .venv/bin/python scripts/make_sample.py [--out PATH]

A private cluster from ``tablewatch/pgcluster.py`` (PostgreSQL 15, pgaudit object audit through the
role ``auditor``, ``pgaudit.log_rows = on``, ``pgaudit.log_parameter = on``, connections and
disconnections logged) gets a database ``crm`` with ``crm.client_list`` (2000 clients) and
``crm.orders``, audited with ``GRANT SELECT, UPDATE, DELETE ON crm.client_list TO auditor`` and
``GRANT SELECT ON crm.orders TO auditor``. Then, in one fixed order, with seeded random ids:

* ``app`` / ``billing-api`` (asyncpg): 150 key lookups, 4 invoice joins with crm.orders (one
  OBJECT record per relation) and 5 UPDATEs of ``notes`` whose values hold commas, quotes and a
  newline;
* ``reporting`` / ``metabase`` (asyncpg): 3 ``count(*) ... GROUP BY country`` aggregates and one
  multi-line filtered query (a Metabase comment line, quoted identifiers, LIMIT 50);
* ``backup`` / ``pg_dump`` (psql): one ``SELECT * FROM crm.client_list`` (pg_dump's real COPY is
  not written at all when log_rows is on);
* ``intruder`` / ``psql`` (psql): ``SELECT * FROM crm.client_list`` without privilege, an
  ``ERROR: permission denied`` line and no audit record;
* ``alice`` / ``DBeaver 23.1`` (asyncpg): ``SELECT * FROM crm.client_list`` (2000 rows), then a
  paged walk ``... ORDER BY id LIMIT 500 OFFSET $1`` for offsets 0, 500, 1000, 1500.

The script waits for a sentinel (a ``RAISE LOG`` by postgres) in the csvlog, stops the server,
waits for "database system is shut down" and copies the csvlog unchanged: server start and stop
lines, connection lines and the sentinel are part of the sample on purpose. Timestamps, pids and
session ids change from run to run; the records, their order and their values do not.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from tablewatch.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tablewatch" / "samples" / "pgaudit-sample.csv"
SEED = 20240315
CLIENTS = 2000
ORDERS = 5000
SENTINEL = "make_sample: end of scenario"
#: What the finished file must hold: AUDIT records about crm.client_list per user, and denials.
EXPECTED = {"alice": 5, "app": 159, "backup": 1, "intruder (denied)": 1, "reporting": 4}

SERVER_SETTINGS = {
    "pgaudit.log_rows": "on",
    "pgaudit.log_parameter": "on",
    "log_connections": "on",
    "log_disconnections": "on",
}

SETUP_CLUSTER = """
CREATE DATABASE crm;
CREATE ROLE app LOGIN;
CREATE ROLE reporting LOGIN;
CREATE ROLE backup LOGIN;
CREATE ROLE alice LOGIN;
CREATE ROLE intruder LOGIN;
"""

SETUP_SCHEMA = """
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (
    id      integer PRIMARY KEY,
    name    text NOT NULL,
    email   text NOT NULL,
    country text NOT NULL,
    notes   text
);
CREATE TABLE crm.orders (
    id        integer PRIMARY KEY,
    client_id integer NOT NULL REFERENCES crm.client_list (id),
    amount    numeric(10, 2) NOT NULL,
    placed_at timestamptz NOT NULL
);
CREATE INDEX orders_client_id ON crm.orders (client_id);
GRANT USAGE ON SCHEMA crm TO app, reporting, backup, alice, intruder;
GRANT SELECT, UPDATE ON crm.client_list TO app;
GRANT SELECT ON crm.orders TO app, backup;
GRANT SELECT ON crm.client_list TO reporting, backup, alice;
"""

# Granted last, once the data is loaded: from here on every access is audited.
SETUP_AUDIT = """
ANALYZE crm.client_list, crm.orders;
GRANT SELECT, UPDATE, DELETE ON crm.client_list TO auditor;
GRANT SELECT ON crm.orders TO auditor;
"""

LOOKUP = "SELECT id, name, email FROM crm.client_list WHERE id = $1"
INVOICE = (
    "SELECT o.id, o.amount, o.placed_at FROM crm.orders o "
    "JOIN crm.client_list c ON c.id = o.client_id WHERE c.id = $1 ORDER BY o.placed_at DESC"
)
UPDATE_NOTES = "UPDATE crm.client_list SET notes = $2 WHERE id = $1"
AGGREGATE = "SELECT country, count(*) FROM crm.client_list GROUP BY country"
METABASE_FILTER = """\
-- Metabase:: userID: 3 queryType: native queryHash: 9b1f2c7e4d
SELECT "id", "name", "email", "country"
FROM "crm"."client_list"
WHERE "country" = 'DE'
  AND "email" LIKE '%@example.org'
ORDER BY "name" ASC
LIMIT 50"""
SELECT_ALL = "SELECT * FROM crm.client_list"
PAGE = "SELECT * FROM crm.client_list ORDER BY id LIMIT 500 OFFSET $1"

NOTES = (
    "called back, wants the annual plan",
    'VIP: "gold" tier, renewal in March',
    "invoice 2024-117 disputed; refund 49,90 EUR",
    "moved to Rotterdam\nnew billing address on file",
    "asked for GDPR export, ticket #4411",
)

FIRST = (
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Karin", "Lucas", "Maja", "Noah", "Olga", "Pieter", "Rosa", "Sven", "Tess", "Yusuf",
)  # fmt: skip
LAST = (
    "Andersen", "Bauer", "Costa", "Dubois", "Eriksson", "Fischer", "García", "Hansen",
    "Jansen", "Kowalski", "Lambert", "Müller", "Novak", "O'Brien", "Peeters", "Rossi",
    "Schmidt", "Visser", "Weber", "Zieliński",
)  # fmt: skip
COUNTRIES = ("DE", "DE", "DE", "FR", "FR", "NL", "NL", "GB", "BE", "AT", "PL", "SE", "IT", "ES")
DOMAINS = ("example.com", "example.org", "example.net")


def _ascii(text: str) -> str:
    return text.lower().replace("'", "").encode("ascii", "ignore").decode()


def clients(rng: random.Random) -> list[tuple[int, str, str, str, str | None]]:
    """The rows of crm.client_list: (id, name, email, country, notes)."""
    rows: list[tuple[int, str, str, str, str | None]] = []
    for i in range(1, CLIENTS + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{_ascii(first)}.{_ascii(last)}{i}@{rng.choice(DOMAINS)}"
        notes = rng.choice(NOTES) if rng.random() < 0.05 else None
        rows.append((i, f"{first} {last}", email, rng.choice(COUNTRIES), notes))
    return rows


def orders(rng: random.Random) -> list[tuple[int, int, float, datetime]]:
    """The rows of crm.orders: (id, client_id, amount, placed_at)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        (
            i,
            rng.randint(1, CLIENTS),
            round(rng.uniform(9, 900), 2),
            start + timedelta(minutes=rng.randint(0, 60 * 24 * 365)),
        )
        for i in range(1, ORDERS + 1)
    ]


async def _connect(pg: PgCluster, user: str, app: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        pg.dsn(user, "crm"), server_settings={"application_name": app}
    )
    return conn


async def load(pg: PgCluster, rng: random.Random) -> None:
    """Create roles, schema and data (before object audit is switched on)."""
    await asyncio.to_thread(pg.psql, SETUP_CLUSTER, app="make_sample")
    await asyncio.to_thread(pg.psql, SETUP_SCHEMA, dbname="crm", app="make_sample")
    conn = await _connect(pg, "postgres", "make_sample")
    try:
        await conn.copy_records_to_table("client_list", schema_name="crm", records=clients(rng))
        await conn.copy_records_to_table("orders", schema_name="crm", records=orders(rng))
    finally:
        await conn.close()
    await asyncio.to_thread(pg.psql, SETUP_AUDIT, dbname="crm", app="make_sample")


class Scenario:
    """The traffic, run strictly in sequence so the log's record order is reproducible."""

    def __init__(self, pg: PgCluster, rng: random.Random) -> None:
        self.pg = pg
        self.rng = rng
        self.conns: dict[str, asyncpg.Connection] = {}
        self.counts: Counter[str] = Counter()

    async def open(self) -> None:
        for user, app in (
            ("app", "billing-api"),
            ("reporting", "metabase"),
            ("alice", "DBeaver 23.1"),
        ):
            self.conns[user] = await _connect(self.pg, user, app)

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()

    async def lookups(self, n: int) -> None:
        conn = self.conns["app"]
        for _ in range(n):
            await conn.fetchrow(LOOKUP, self.rng.randint(1, CLIENTS))
            await asyncio.sleep(0.01)
        self.counts["app lookups"] += n

    async def invoice(self) -> None:
        await self.conns["app"].fetch(INVOICE, self.rng.randint(1, CLIENTS))
        self.counts["app invoices"] += 1

    async def update(self) -> None:
        note = NOTES[self.counts["app updates"] % len(NOTES)]
        await self.conns["app"].execute(UPDATE_NOTES, self.rng.randint(1, CLIENTS), note)
        self.counts["app updates"] += 1

    async def aggregate(self) -> None:
        await self.conns["reporting"].fetch(AGGREGATE)
        self.counts["reporting aggregates"] += 1

    async def metabase_filter(self) -> None:
        await self.conns["reporting"].fetch(METABASE_FILTER)
        self.counts["reporting filtered"] += 1

    async def backup(self) -> None:
        await asyncio.to_thread(
            self.pg.psql, SELECT_ALL, user="backup", dbname="crm", app="pg_dump"
        )
        self.counts["backup select *"] += 1

    async def intruder(self) -> None:
        out = await asyncio.to_thread(
            self.pg.psql, SELECT_ALL, user="intruder", dbname="crm", app="psql", check=False
        )
        if out:
            raise RuntimeError("the intruder was not denied")
        self.counts["intruder denied"] += 1

    async def alice_select_all(self) -> None:
        rows = await self.conns["alice"].fetch(SELECT_ALL)
        if len(rows) != CLIENTS:
            raise RuntimeError(f"alice read {len(rows)} rows, expected {CLIENTS}")
        self.counts["alice select *"] += 1

    async def alice_page(self, offset: int) -> None:
        await self.conns["alice"].fetch(PAGE, offset)
        self.counts["alice pages"] += 1

    async def run(self) -> None:
        """A compressed morning: steady app traffic, reports, the backup, a probe, the theft."""
        await self.lookups(40)
        await self.update()
        await self.invoice()
        await self.aggregate()
        await self.lookups(25)
        await self.invoice()
        await self.update()
        await self.backup()
        await self.lookups(20)
        await self.intruder()
        await self.lookups(10)
        await self.aggregate()
        await self.alice_select_all()
        for offset in range(0, CLIENTS, 500):
            await self.lookups(5)
            await self.alice_page(offset)
        await self.update()
        await self.lookups(15)
        await self.metabase_filter()
        await self.invoice()
        await self.update()
        await self.lookups(20)
        await self.aggregate()
        await self.invoice()
        await self.update()


async def traffic(pg: PgCluster) -> Counter[str]:
    """Load the data, then run the scenario; returns what each role did."""
    rng = random.Random(SEED)
    await load(pg, rng)
    scenario = Scenario(pg, rng)
    await scenario.open()
    try:
        await scenario.run()
    finally:
        await scenario.close()
    return scenario.counts


def _server_stop(pg: PgCluster) -> None:
    """pg_ctl stop -m fast, keeping the cluster directory (PgCluster.stop removes it)."""
    from tablewatch.pgcluster import BIN_DIR, SERVER_OS_USER

    argv = [str(BIN_DIR / "pg_ctl"), "stop", "-D", str(pg.datadir), "-m", "fast", "-w"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(
        argv, cwd=pg.datadir.parent, env=env, check=True, capture_output=True, timeout=60
    )


def _wait_for_text(path: Path, needle: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text(encoding="utf-8", errors="replace"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{needle!r} not in {path} after {timeout}s")
        time.sleep(0.05)


def audit_counts(text: str) -> Counter[str]:
    """AUDIT records about crm.client_list per user, plus permission denials (a rough check)."""
    counts: Counter[str] = Counter()
    for row in csv.reader(io.StringIO(text, newline="")):
        user, message = row[1], row[13]
        if message.startswith("AUDIT: OBJECT,") and ",crm.client_list," in message:
            counts[user] += 1
        elif message.startswith("permission denied for table client_list"):
            counts[f"{user} (denied)"] += 1
    return counts


def record(out: Path) -> Counter[str]:
    """Run the whole scenario against a fresh cluster and copy its csvlog to ``out``."""
    from tablewatch.pgcluster import PgCluster

    pg = PgCluster(SERVER_SETTINGS).start()
    try:
        counts = asyncio.run(traffic(pg))
        pg.psql(f"DO $$BEGIN RAISE LOG '{SENTINEL}'; END$$", dbname="crm", app="make_sample")
        csv_path = pg.log_path("csvlog")
        pg.wait_for_log("csvlog", lambda text: SENTINEL in text)
        _server_stop(pg)
        _wait_for_text(csv_path, "database system is shut down")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(csv_path, out)
    finally:
        pg.stop()
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Record the sample; exit 1 when it does not hold the expected records."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # for tablewatch.pgcluster when not installed
    from tablewatch.pgcluster import available

    reason = available()
    if reason is not None:
        print(f"make_sample: {reason}", file=sys.stderr)
        return 2
    counts = record(args.out)
    text = args.out.read_text(encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode())} bytes, {text.count(chr(10))} lines)")
    print("scenario: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    found = dict(sorted(audit_counts(text).items()))
    print("records:  " + ", ".join(f"{k} {v}" for k, v in found.items()))
    if found != EXPECTED:
        print(f"make_sample: expected {EXPECTED}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
