"""The application servers: pools of long-lived connections doing key lookups on a daily curve."""

from __future__ import annotations

import math
import random
from functools import partial
from typing import TYPE_CHECKING

from tests.scenario.constants import APP_BY_EMAIL, APP_BY_ID, APP_ORDERS, MINUTE, ORDERS
from tests.scenario.csvlog import Session, Statement, audit_csv

if TYPE_CHECKING:
    from tests.scenario.run import Proc, Run
    from tests.scenario.world import AppHost, World


def rate_table(w: World) -> list[float]:
    """App lookups per second per host, per 5 minutes of the scenario."""
    out = []
    for i in range(w.days * 288):
        h = (i % 288) / 12
        d = abs(h - w.peak_h)
        d = min(d, 24 - d)
        curve = w.night + (1 - w.night) * math.exp(-0.5 * (d / w.width_h) ** 2)
        if w.weekday(w.start_ms + i * 5 * MINUTE) >= 5:
            curve *= 0.5
        surge = 3.0 if i // 288 == w.surge_day else 1.0
        out.append(w.per_host * curve * surge)
    return out


def app_host(run: Run, host: AppHost, rng: random.Random) -> Proc:
    w, log = run.w, run.log
    by_id, by_email, orders = (
        Statement(APP_BY_ID),
        Statement(APP_BY_EMAIL),
        Statement(APP_ORDERS, (ORDERS,)),
    )
    t = host.join_ms
    if t == w.start_ms:  # a pool connected long before the file starts
        for _ in range(w.pool_size):
            s = Session(
                w.app_user,
                host.addr,
                w.app_name,
                t - rng.randint(MINUTE, 40 * MINUTE),
                run.pids(),
                rng,
            )
            age_min = (t - s.start_ms) // MINUTE
            s.stmt_id = int(age_min * rng.uniform(0.5, 3.0)) + 1
            s.line = s.stmt_id + 2
            host.pool.append(s)
    else:  # a new host joins: its pool connects
        for _ in range(w.pool_size):
            host.pool.append(run.connect(w.app_user, host.addr, w.app_name))
        t += rng.randint(3, 9)
        yield t
        for s in host.pool:
            run.authorized(s)
    expire = [s.start_ms + rng.randint(*w.lifetime) for s in host.pool]
    email_cut = w.email_share
    orders_cut = email_cut + w.orders_share
    while True:
        rate = run.rates[min(len(run.rates) - 1, (t - w.start_ms) // (5 * MINUTE))]
        t += max(1, int(rng.expovariate(rate) * 1000))
        yield t
        i = rng.randrange(len(host.pool))
        s = host.pool[i]
        r = rng.random()
        if r < email_cut:
            st, value, rows = by_email, w.email(rng), int(rng.random() < 0.9)
        elif r < orders_cut:
            st, value, rows = orders, str(w.customer_id(rng)), rng.randint(0, 20)
        else:
            st, value, rows = by_id, str(w.customer_id(rng)), 1
        if rng.random() < 0.0003 and st is not by_email:
            bad = f"{value}x"  # a bad value fails at BIND: an ERROR with a context, no audit
            s.lxid += 1
            log.emit(
                s,
                '"BIND"',
                f'invalid input syntax for type integer: "{bad}"',
                sev="ERROR",
                state="22P02",
                context=f"unnamed portal parameter $1 = '{bad}'",
                query=st.text,
                vxid=s.vxid(),
                qid=st.qid,
            )
            continue
        run.audit(s, st, audit_csv(value), rows)
        if rng.random() < 0.003:
            ms = rng.uniform(250, 2400)
            detail = "parameters: $1 = '" + value.replace("'", "''") + "'"
            done = partial(run.duration, s, st, ms, detail)
            run.spawn(t + int(ms), run.later(done))
        if t >= expire[i]:  # maxLifetime: the pool opens a replacement, then closes it
            new = run.connect(w.app_user, host.addr, w.app_name)
            host.pool[i] = new
            expire[i] = t + rng.randint(*w.lifetime)
            run.spawn(t + rng.randint(2, 9), run.later(partial(run.authorized, new)))
            run.spawn(t + rng.randint(10, 400), run.later(partial(run.disconnect, s)))
