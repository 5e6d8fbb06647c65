"""The attacks: six plans a seed decides, placed in time before the first record is written.

Each plan is a list of steps (audited statements at offsets from the attack's first record) and,
for the tamper, callables that change what the server audits from then on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.scenario.constants import APP_BY_ID, DAY, HOUR, LEARNING, MINUTE, SECOND
from tests.scenario.csvlog import Session, Statement, audit_params
from tests.scenario.manifest import Principal
from tests.scenario.server import reload

if TYPE_CHECKING:
    from tests.scenario.run import Proc, Run
    from tests.scenario.world import Analyst, World

NEW_USERS = ("etl_tmp", "svc_export", "data_sync", "tmp_migration", "bi_extract")
NEW_APPS = ("", "psql", "pg_export", "python3", "Metabase")


@dataclass
class Step:
    """One audited statement of an attack, `at` ms after the attack's first record."""

    at: int
    statement: Statement
    params: str
    rows: int
    run: Callable[[Run, Session], None] | None = None
    """Instead of `statement`: a callable that writes the records (tampering)."""


@dataclass
class Plan:
    """An attack before it is placed in time."""

    name: str
    principal: Principal
    steps: list[Step]
    detail: str
    window: Callable[[random.Random], int | None] | None = None
    """Chooses the start (ms) in a constrained window; None: anywhere free."""
    uses_analyst: Analyst | None = None
    """Her usual principal: the attack runs in her open session when she has one."""
    after: Callable[[Run, Session, int], int] | None = None
    """Runs after the last step (gets its time); returns when the session closes."""
    start_ms: int = 0

    @property
    def duration(self) -> int:
        return self.steps[-1].at


def plan_attacks(world: World, rng: random.Random) -> list[Plan]:
    """All six attacks, placed in time.

    All six are planned whatever is asked for, so a seed's attacks do not depend on which of them
    are written.
    """
    whole = _whole_table(world, rng)
    plans = [
        whole,
        _paging(world, rng),
        _enumeration(world, rng),
        _slice(world, rng, whole.principal),
        _tamper(world, rng),
        _batches(world, rng),
    ]
    _place(world, plans, rng)
    return plans


def _whole_table(world: World, rng: random.Random) -> Plan:
    a = rng.choice(world.analysts)
    text = "SELECT * FROM crm.client_list" + (";" if a.semi >= 1.0 else "")
    st = Statement(text, tag="SELECT")

    def window(r: random.Random) -> int | None:
        days = [d for d in range(1, world.days) if d % 7 < 5]
        d = r.choice(days)
        lo = world.start_ms + d * DAY + int((a.start_h + 1.0) * HOUR)
        hi = world.start_ms + d * DAY + int((a.end_h - 1.0) * HOUR)
        return r.randint(max(lo, world.start_ms + LEARNING), hi) if hi > lo else None

    return Plan(
        "whole_table_select",
        a.principal,
        [Step(0, st, "<none>", world.rows)],
        f"{a.user}: {text} ({world.rows:,} rows)",
        window,
        uses_analyst=a,
    )


def _paging(world: World, rng: random.Random) -> Plan:
    net = rng.choice(["198.51.100", "203.0.113", "192.0.2"])
    addr = world.address(f"{net}.{rng.randint(2, 250)}")
    app = rng.choice([world.app_name, "", "python-requests/2.31.0"])
    page = rng.choice([200, 250, 500, 1000, 1000, 2000])
    every = rng.uniform(1.0, 10.0)
    keyset = rng.random() < 0.5
    if keyset:
        st = Statement(f"SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT {page}")
    else:
        st = Statement("SELECT * FROM crm.client_list ORDER BY id LIMIT $1 OFFSET $2")
    steps: list[Step] = []
    at, offset = 0, 0
    while True:
        rows = max(0, min(page, world.rows - offset))
        values = [str(offset)] if keyset else [str(page), str(offset)]
        steps.append(Step(at, st, audit_params(values), rows))
        offset += rows
        if rows < page:  # a short (or empty) page: the end of the table
            break
        at += int(rng.uniform(0.6, 1.4) * every * SECOND)
    how = "keyset" if keyset else "LIMIT/OFFSET"
    return Plan(
        "stolen_credentials_paging",
        Principal(world.app_user, addr, app),
        steps,
        f"{world.app_user} from unknown {addr} ({app or 'no application_name'}): {how} pages "
        f"of {page} rows every ~{every:.1f} s, {len(steps)} pages, the whole table "
        f"({world.rows:,} rows)",
    )


def _enumeration(world: World, rng: random.Random) -> Plan:
    host = rng.choice(world.app_hosts).addr
    app = rng.choice(["", world.app_name])
    st = Statement(APP_BY_ID)
    span = rng.randint(1 * HOUR, 3 * HOUR)
    count = int(span / SECOND)
    first = rng.randint(1, max(1, world.rows - count - 1))
    steps: list[Step] = []
    at, key = 0, first
    while at <= span and key <= world.rows:
        steps.append(Step(at, st, str(key), 1))
        key += 1
        at += int(rng.uniform(0.5, 1.5) * SECOND)
    return Plan(
        "sequential_enumeration",
        Principal(world.app_user, host, app),
        steps,
        f"{world.app_user} from app host {host} ({app or 'no application_name'}): key lookups "
        f"of sequential ids {first}..{key - 1} ({len(steps):,} lookups, about one a second)",
    )


def _slice(world: World, rng: random.Random, not_her: Principal) -> Plan:
    a = rng.choice([a for a in world.analysts if a.principal != not_her])
    count = rng.randint(5, 15)
    span = rng.randint(2 * MINUTE, 5 * MINUTE)
    goal = rng.uniform(0.15, 0.40) * world.rows
    cuts = sorted(rng.random() for _ in range(count - 1))
    parts = [b - a_ for a_, b in zip([0.0, *cuts], [*cuts, 1.0], strict=True)]
    steps: list[Step] = []
    total = 0
    for i, part in enumerate(parts):
        region = rng.choice(list(world.regions))
        since = f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-01"
        wanted = int(goal * part)
        shape = rng.randrange(3)
        if shape == 0:
            text = f"SELECT * FROM crm.client_list WHERE region = '{region}'"
        elif shape == 1:
            text = (
                f"SELECT * FROM crm.client_list WHERE region = '{region}' "
                f"AND signup_date >= '{since}'"
            )
        else:
            text = (
                "SELECT id, name, email, phone, region FROM crm.client_list "
                f"WHERE signup_date >= '{since}'"
            )
        if a.semi >= 1.0:
            text += ";"
        at = 0 if i == 0 else int(span * (i / (count - 1)) + rng.randint(-3000, 3000))
        steps.append(Step(max(0, at), Statement(text, tag="SELECT"), "<none>", wanted))
        total += wanted
    steps.sort(key=lambda s: s.at)
    steps[-1].at = max(steps[-1].at, span)

    def window(r: random.Random) -> int | None:
        days = [d for d in range(1, world.days) if d % 7 < 5]
        d = r.choice(days)
        lo = world.start_ms + d * DAY + 2 * HOUR
        lo = max(lo, world.start_ms + LEARNING)
        hi = world.start_ms + d * DAY + 4 * HOUR - span
        return r.randint(lo, hi) if hi > lo else None

    return Plan(
        "unusual_hour_slice",
        a.principal,
        steps,
        f"{a.user} at night: {count} unlimited filtered SELECTs in {span / MINUTE:.1f} min, "
        f"{total:,} rows ({total / world.rows:.0%} of the table)",
        window,
    )


def _tamper(world: World, rng: random.Random) -> Plan:
    variant = rng.choice(["revoke", "alter_system", "alter_role", "set", "drop_extension"])
    victim = rng.choice(world.analysts)
    plain = re.fullmatch(r"[a-z_][a-z0-9_$]*", victim.user)
    role = victim.user if plain else '"' + victim.user.replace('"', '""') + '"'
    setting = rng.choice(["log", "role"])
    if variant == "revoke":
        text, cls, command, otype = (
            "REVOKE SELECT ON crm.client_list FROM auditor",
            "ROLE",
            "REVOKE",
            "TABLE",
        )
        effect = "object audit of crm.client_list ends"
    elif variant == "alter_system":
        value = "'none'" if setting == "log" else "''"
        text, cls, command, otype = (
            f"ALTER SYSTEM SET pgaudit.{setting} = {value}",
            "DDL",
            "ALTER SYSTEM",
            "",
        )
        effect = (
            "then a reload: object audit ends everywhere"
            if setting == "role"
            else "then a reload (per-role settings still win: nothing visible changes)"
        )
    elif variant == "alter_role":
        text, cls, command, otype = (
            f"ALTER ROLE {role} SET pgaudit.log = 'none'",
            "ROLE",
            "ALTER ROLE",
            "",
        )
        effect = f"{victim.user}'s new sessions write no SESSION records"
    elif variant == "set":
        text, cls, command, otype = "SET pgaudit.role = ''", "MISC", "SET", ""
        effect = "then reads the whole table unaudited in that session"
    else:
        text, cls, command, otype = "DROP EXTENSION pgaudit", "DDL", "DROP EXTENSION", ""
        effect = "the hooks stay loaded: reads are still audited"
    text += ";"  # typed in psql: pgaudit 1.7 keeps the semicolon
    st = Statement(text, (), tag=command, cls=cls, command=command)

    def tamper(run: Run, s: Session) -> None:
        run.utility(s, st, otype)
        if variant == "revoke":
            run.watched_audit = False
        elif variant == "alter_role":
            run.quiet_roles.add(victim.user)
        elif variant == "set":
            s.object_audit = False

    def after(run: Run, s: Session, t: int) -> int:
        r = run.attack_rng
        if variant == "alter_system":  # then SELECT pg_reload_conf(): not audited for him
            t += r.randint(3000, 20_000)
            run.spawn(t, reload(run, f"pgaudit.{setting}", setting == "role"))
        if variant == "set":
            t += r.randint(5000, 40_000)
            run.spawn(t, silent_read(run, s, world.rows))
            t += 60 * SECOND
        return t + r.randint(5000, 60_000)

    def window(r: random.Random) -> int | None:
        # the last day, late morning or early afternoon: the last attack, with hours of
        # traffic after it to show what it switched off
        return world.end_ms - DAY + r.randint(11 * HOUR, 15 * HOUR)

    return Plan(
        "audit_tamper",
        world.dba,
        [Step(0, st, "<none>", 0, tamper)],
        f"{world.dba.user}: {text} ({effect})",
        window,
        after=after,
    )


def _batches(world: World, rng: random.Random) -> Plan:
    user = rng.choice(NEW_USERS)
    addr = world.address(
        rng.choice([f"10.{rng.randint(151, 200)}.{rng.randint(0, 9)}", "172.16.40"])
        + f".{rng.randint(2, 250)}"
    )
    app = rng.choice(NEW_APPS)
    size = rng.randint(1000, 5000)
    every = rng.uniform(10.0, 60.0)
    span = rng.randint(10 * MINUTE, 30 * MINUTE)
    keyset = rng.random() < 0.5
    ks = Statement(f"SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT {size}")
    steps: list[Step] = []
    at, low = 0, 1
    while low <= world.rows and (at <= span or not steps):
        rows = min(size, world.rows - low + 1)
        if keyset:
            steps.append(Step(at, ks, str(low - 1), rows))
        else:
            text = f"SELECT * FROM crm.client_list WHERE id BETWEEN {low} AND {low + size - 1}"
            steps.append(Step(at, Statement(text, tag="SELECT"), "<none>", rows))
        low += size
        at += int(rng.uniform(0.7, 1.3) * every * SECOND)
    total = sum(s.rows for s in steps)
    return Plan(
        "new_principal_batches",
        Principal(user, addr, app),
        steps,
        f"never-seen {user} from {addr} ({app or 'no application_name'}): {len(steps)} "
        f"batches of {size} rows every ~{every:.0f} s, {total:,} rows",
    )


def _place(world: World, plans: list[Plan], rng: random.Random) -> None:
    """Start times: after the learning period, not overlapping, the tamper last."""
    tamper = next(p for p in plans if p.name == "audit_tamper")
    assert tamper.window is not None
    start = tamper.window(rng)
    assert start is not None
    tamper.start_ms = start
    latest = tamper.start_ms - 20 * MINUTE
    placed: list[tuple[int, int]] = [(tamper.start_ms, tamper.start_ms + 10 * MINUTE)]
    margin = 30 * MINUTE
    order = sorted((p for p in plans if p is not tamper), key=lambda p: (p.window is None, p.name))
    for plan in order:
        for _ in range(5000):
            if plan.window is not None:
                start = plan.window(rng)
            else:
                hi = latest - plan.duration
                lo = world.start_ms + LEARNING
                start = rng.randint(lo, hi) if hi > lo else None
            if start is None or start + plan.duration > latest:
                continue
            end = start + plan.duration
            if all(end + margin <= a or start >= b + margin for a, b in placed):
                plan.start_ms = start
                placed.append((start, end))
                break
        else:
            raise ValueError(f"cannot place {plan.name} in {world.days} days")


def silent_read(run: Run, s: Session, rows: int) -> Proc:
    """A read with object audit switched off in the session: only its duration is logged."""
    st = Statement("SELECT * FROM crm.client_list;", tag="SELECT")
    run.audit(s, st, "<none>", rows)  # writes nothing: object audit off, no session read
    ms = run.attack_rng.uniform(400, 3000)
    yield run.log.t + int(ms)
    run.duration(s, st, ms)
