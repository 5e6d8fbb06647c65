"""Routines: the hourly report, the nightly backup and the DBA's weekday mornings."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tests.scenario.constants import DAY, HOUR, MINUTE, ORDERS, SECOND, WATCHED
from tests.scenario.csvlog import Statement

if TYPE_CHECKING:
    from tests.scenario.run import Proc, Run

COPY_CLIENTS = "COPY crm.client_list (id, name, email, phone, region) TO stdout;"
COPY_ORDERS = "COPY crm.orders (id, client_id, total, status, created_at) TO stdout;"


def reporting(run: Run, rng: random.Random) -> Proc:
    w = run.w
    p = w.reporting
    regions = Statement(
        "SELECT region, count(*) FROM crm.client_list GROUP BY region", tag="SELECT"
    )
    count = Statement("SELECT count(*) FROM crm.client_list", tag="SELECT")
    join = Statement(
        "SELECT c.region, count(DISTINCT o.client_id), sum(o.total)\n"
        "  FROM crm.orders o\n  JOIN crm.client_list c ON c.id = o.client_id\n"
        " WHERE o.created_at >= now() - interval '1 hour'\n GROUP BY c.region",
        (ORDERS, WATCHED),
        tag="SELECT",
    )
    minute = rng.uniform(3.5, 6.5)
    for hour in range(w.days * 24):
        t = w.start_ms + hour * HOUR + int(minute * MINUTE) + rng.randint(-20_000, 90_000)
        yield t
        s = run.connect(p.user, p.client_addr, p.application_name)
        t += rng.randint(2, 9)
        yield t
        run.authorized(s)
        t += rng.randint(20, 300)
        yield t
        run.audit(s, regions, "<none>", len(w.regions))
        if w.report_count:
            t += rng.randint(200, 1500)
            yield t
            run.audit(s, count, "<none>", 1)
        t += rng.randint(200, 1500)
        yield t
        run.audit(s, join, "<none>", len(w.regions))
        ms = rng.uniform(300, 4000)
        t += int(ms)
        yield t
        run.duration(s, join, ms)
        t += rng.randint(5, 50)
        yield t
        run.disconnect(s)


def backup(run: Run, rng: random.Random) -> Proc:
    w = run.w
    p = w.backup
    copies = (
        Statement(COPY_CLIENTS, tag="COPY"),
        Statement(COPY_ORDERS, (ORDERS,), tag="COPY"),
    )
    for day in range(w.days):
        t = w.start_ms + day * DAY + 2 * HOUR + rng.randint(0, 12 * MINUTE)
        yield t
        s = run.connect(p.user, p.client_addr, p.application_name)
        t += rng.randint(2, 9)
        yield t
        run.authorized(s)
        for st in copies:
            t += rng.randint(300, 2000)
            yield t
            if not run.log.log_rows:  # with log_rows = on COPY ... TO is not audited at all
                run.audit(s, st, "<none>", 0)
            ms = rng.uniform(1500, 12_000) * w.rows / 50_000
            t += int(ms)
            yield t
            run.duration(s, st, ms)
        t += rng.randint(50, 500)
        yield t
        run.disconnect(s)


def dba_days(run: Run, rng: random.Random) -> Proc:
    """The DBA's morning routine on weekdays: settings, a vacuum, a grant once."""
    w = run.w
    p = w.dba
    set_timeout = Statement(
        "SET statement_timeout = '15min';", (), tag="SET", cls="MISC", command="SET"
    )
    vacuum = Statement(
        "VACUUM (ANALYZE) crm.orders;", (), tag="VACUUM", cls="MISC", command="VACUUM"
    )
    grant = Statement(
        "GRANT SELECT ON crm.orders TO reporting;", (), tag="GRANT", cls="ROLE", command="GRANT"
    )
    for day in range(w.days):
        if w.weekday(w.start_ms + day * DAY) >= 5 or rng.random() < 0.2:
            continue
        t = w.start_ms + day * DAY + rng.randint(8 * HOUR, 11 * HOUR)
        yield t
        s = run.connect(p.user, p.client_addr, p.application_name)
        t += rng.randint(2, 9)
        yield t
        run.authorized(s)
        for st, kind in ((set_timeout, ""), (vacuum, ""), (grant, "TABLE")):
            if st is grant and day != 1:
                continue
            t += rng.randint(5 * SECOND, 90 * SECOND)
            yield t
            run.utility(s, st, kind)
            run.benign.setdefault(s.principal, None)
        t += rng.randint(10 * SECOND, 10 * MINUTE)
        yield t
        run.disconnect(s)
