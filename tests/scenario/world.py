"""The world: everything a seed decides before the first record (who exists, their habits, the
table, and the planned attacks)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from tests.scenario.attacks import plan_attacks
from tests.scenario.constants import DAY, HOUR, MINUTE
from tests.scenario.csvlog import Session
from tests.scenario.manifest import Principal

APP_USERS = ("crm_app", "app_rw", "webapp", "crm_svc", "api_user")
APP_NAMES = ("crm-web", "crm-api", "webapp", "PostgreSQL JDBC Driver", "crm-backend")
ANALYST_NAMES = ("alice", "bob.martin", "chen_wei", "dkowalski", "zoë", "farah.n", "mgarcia")
DBA_USERS = ("postgres", "dba_mkoch", "dba_jlee", "dba_admin")
REGION_CODES = (
    "EU", "NA", "APAC", "LATAM", "MEA", "UK", "DACH", "NORDICS", "IBERIA", "BENELUX", "FR",
    "IT", "JP", "ANZ", "IN", "CN", "BR", "MX", "CA", "US-E", "US-W",
)  # fmt: skip
FIRST = ("anna", "jean", "li", "omar", "zoë", "søren", "maría", "john", "aiko", "o'brien")
LAST = ("smith", "müller", "nguyen", "garcía", "kowalski", "dubois", "rossi", "tanaka")
DOMAINS = ("example.com", "example.org", "mail.example.net", "example.de")


@dataclass
class Analyst:
    """A human reading filtered pages on weekdays in office hours, with session audit."""

    user: str
    host: str
    app: str
    start_h: float
    end_h: float
    daily: int
    """Mean statements per working day."""
    crlf: bool
    """Windows client: multi-line statements end lines with CR LF."""
    semi: float
    """Chance that a statement keeps a trailing `;` (psql always, DBeaver never)."""
    session: Session | None = None
    """Her open backend, if any (an attack in her usual hours uses it)."""

    @property
    def principal(self) -> Principal:
        return Principal(self.user, self.host, self.app)


@dataclass
class AppHost:
    """An application server with its pool of long-lived connections."""

    addr: str
    join_ms: int
    pool: list[Session] = field(default_factory=list)


class World:
    """A seed's world: who exists, their habits, and the planned attacks."""

    def __init__(self, seed: int, log_rows: bool, days: int, scale: float) -> None:
        rng = random.Random(f"tablewatch-scenario-{seed}")
        self.seed, self.log_rows, self.days, self.scale = seed, log_rows, days, scale
        monday = date(2026, 1, 5) + timedelta(weeks=rng.randrange(48))
        self.start_ms = int(datetime(monday.year, monday.month, monday.day, tzinfo=UTC).timestamp())
        self.start_ms *= 1000
        self.end_ms = self.start_ms + days * DAY
        self.rows = rng.randint(20_000, 200_000)
        self._used: set[str] = set()

        # the table: regions with their shares, ids 1..rows
        regions = rng.sample(REGION_CODES, rng.randint(8, 20))
        weights = [rng.gammavariate(1.5, 1.0) for _ in regions]
        total = sum(weights)
        self.regions = {r: w / total for r, w in zip(regions, weights, strict=True)}
        self.zipf = rng.random() < 0.5
        self.perm_a = next(
            a for a in itertools.count(rng.randint(7919, 99991)) if _coprime(a, self.rows)
        )
        self.perm_b = rng.randrange(self.rows)

        # the app
        self.app_user = rng.choice(APP_USERS)
        self.app_name = rng.choice(APP_NAMES)
        net = f"10.{rng.randint(0, 60)}.{rng.randint(0, 30)}"
        hosts = rng.sample(range(10, 250), 6)
        self.app_hosts = [AppHost(self.address(f"{net}.{h}"), self.start_ms) for h in hosts[:-1]]
        del self.app_hosts[rng.randint(3, 5) :]
        self.peak = rng.uniform(1.0, 1.4) * scale  # lookups/s over the initial hosts at peak
        self.per_host = self.peak / len(self.app_hosts)
        self.pool_size = rng.randint(3, 8)
        self.lifetime = (rng.randint(20, 40) * MINUTE, rng.randint(50, 90) * MINUTE)
        self.night = rng.uniform(0.08, 0.12)
        self.peak_h = rng.uniform(12.5, 15.5)
        self.width_h = rng.uniform(3.0, 4.0)
        self.email_share = rng.uniform(0.02, 0.06)
        self.orders_share = rng.uniform(0.10, 0.20)
        # a surge day: not the first, and over before the last day (where the tamper is)
        self.surge_day = rng.randint(1, max(1, days - 2))
        self.new_host: AppHost | None = None
        if days >= 3:
            day = rng.randint(2, days - 1)
            join = self.start_ms + day * DAY + rng.randint(5 * HOUR, 10 * HOUR)
            self.new_host = AppHost(self.address(f"{net}.{hosts[-1]}"), join)

        # reporting, backup, DBA
        self.reporting = Principal(
            "reporting", self.address(f"10.{rng.randint(61, 90)}.3.7"), "hourly-agg"
        )
        self.report_count = rng.random() < 0.6
        self.backup = Principal("backup", self.address(f"10.{rng.randint(91, 120)}.9.5"), "pg_dump")
        dba_host = (
            "[local]" if rng.random() < 0.3 else self.address(f"10.{rng.randint(121, 150)}.0.4")
        )
        self.dba = Principal(rng.choice(DBA_USERS), dba_host, "psql")

        # analysts
        self.analysts: list[Analyst] = []
        for name in rng.sample(ANALYST_NAMES, rng.randint(2, 4)):
            kind = rng.randrange(3)
            if kind == 0:
                app, crlf, semi = "psql", False, 1.0
            elif kind == 1:
                app = (
                    f"DBeaver {rng.choice(['24.1.0', '23.3.5', '24.2.3'])} - SQLEditor "
                    f"<Script{rng.choice(['', '-2', '-3', '-7'])}.sql>"
                )
                crlf, semi = rng.random() < 0.7, 0.0
            else:
                app, crlf, semi = f"pgAdmin 4 - CONN:{rng.randint(100, 9_999_999)}", False, 0.5
            start_h = rng.choice([7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0])
            ws = f"192.168.{rng.randint(20, 90)}.{rng.randint(2, 250)}"
            self.analysts.append(
                Analyst(
                    name,
                    self.address(ws),
                    app,
                    start_h,
                    min(19.0, start_h + rng.uniform(7.5, 9.5)),
                    rng.randint(30, 180),
                    crlf,
                    semi,
                )
            )

        # the attacks: all six are planned whatever is asked for, so a seed's attacks do not
        # depend on which of them are written
        self.plans = plan_attacks(self, random.Random(f"tablewatch-attacks-{seed}"))
        self.runtime_seed = rng.getrandbits(64)

    # ---- helpers --------------------------------------------------------------------------

    def address(self, addr: str) -> str:
        """`addr`, or the next free one: every principal has an address of its own."""
        while addr in self._used:  # bump the last octet
            head, _, last = addr.rpartition(".")
            addr = f"{head}.{(int(last) + 17) % 250 + 2}"
        self._used.add(addr)
        return addr

    def weekday(self, ms: int) -> int:
        return ((ms - self.start_ms) // DAY) % 7

    def customer_id(self, rng: random.Random) -> int:
        if self.zipf:  # a few customers are looked up far more than others
            x = min(self.rows - 1, int(self.rows ** rng.random()))
            return (self.perm_a * x + self.perm_b) % self.rows + 1
        return rng.randint(1, self.rows)

    def email(self, rng: random.Random) -> str:
        return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}"

    def matched(self, region: str, share: float) -> int:
        return int(self.rows * self.regions[region] * share)


def _coprime(a: int, b: int) -> bool:
    return math.gcd(a, b) == 1
