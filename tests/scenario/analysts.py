"""The analysts: humans reading filtered pages on weekdays in office hours, with session audit."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tests.scenario.constants import DAY, HOUR, MINUTE, ORDERS, SECOND, WATCHED
from tests.scenario.csvlog import Session, Statement

if TYPE_CHECKING:
    from tests.scenario.run import Proc, Run
    from tests.scenario.world import Analyst


def analyst(run: Run, a: Analyst, rng: random.Random) -> Proc:
    w = run.w
    for day in range(w.days):
        base = w.start_ms + day * DAY
        if w.weekday(base) >= 5 or rng.random() < 0.06:
            continue
        begin = base + int(a.start_h * HOUR) + rng.randint(-20 * MINUTE, 20 * MINUTE)
        end = base + int(a.end_h * HOUR) + rng.randint(-30 * MINUTE, 20 * MINUTE)
        lunch = begin + int((end - begin) * rng.uniform(0.4, 0.55))
        back = lunch + rng.randint(30 * MINUTE, 60 * MINUTE)
        total = max(5, int(rng.gauss(a.daily, a.daily / 4)))
        blocks = [(begin, lunch), (back, end)]
        if rng.random() < 0.6:  # a reconnect in the afternoon (another tool, a new tab)
            mid = back + int((end - back) * rng.uniform(0.3, 0.7))
            blocks[1:] = [(back, mid), (mid + rng.randint(MINUTE, 20 * MINUTE), end)]
        work = sum(b1 - b0 for b0, b1 in blocks)
        for b0, b1 in blocks:
            yield from _work(run, a, b0, b1, int(total * (b1 - b0) / work), rng)


def _work(run: Run, a: Analyst, t0: int, t1: int, count: int, rng: random.Random) -> Proc:
    """One session: `count` statements between t0 and t1, in small tasks, with think time."""
    t = t0
    yield t
    s = run.connect(a.user, a.host, a.app)
    t += rng.randint(2, 9)
    yield t
    run.authorized(s)
    a.session = s
    think = (t1 - t0) / max(1, count)
    done = 0
    while done < count:
        for st, rows in _task(run, a, rng):
            t += int(rng.uniform(3, 45) * SECOND) if done else rng.randint(5, 60) * SECOND
            if t >= t1:
                break
            yield t
            if st is None:
                _typo(run, s, rng)
            else:
                run.audit(s, st, "<none>", rows)
            done += 1
        if t >= t1:
            break
        t += int(rng.expovariate(1 / think))
    t = max(t, t1) + rng.randint(0, 5 * MINUTE)
    yield t
    a.session = None
    run.disconnect(s)


def _typo(run: Run, s: Session, rng: random.Random) -> None:
    text = rng.choice(["SELECT * FORM crm.client_list LIMIT 10", "SELEC count(*) FROM crm.orders"])
    word = text.split()[2] if "FORM" in text else "SELEC"
    s.lxid += 1
    run.log.emit(
        s,
        '"idle"',
        f'syntax error at or near "{word}"',
        sev="ERROR",
        state="42601",
        query=text,
        vxid=s.vxid(),
    )


def _task(run: Run, a: Analyst, rng: random.Random) -> list[tuple[Statement | None, int]]:
    """A few related statements an analyst runs in a row (None: a typo, an error)."""
    w = run.w
    region = rng.choice(list(w.regions))
    year, month = rng.choice([2024, 2025, 2026]), rng.randint(1, 12)
    since = f"{year}-{month:02d}-01"
    share = {2024: 0.8, 2025: 0.5, 2026: 0.15}[year] * (1 - month / 24)
    nl = "\r\n" if a.crlf else "\n"

    def fin(text: str, multi: str | None = None) -> str:
        if multi is not None and rng.random() < 0.4:
            text = multi.replace("\n", nl)
        return text + (";" if rng.random() < a.semi else "")

    k = rng.random()
    out: list[tuple[Statement | None, int]] = []
    if k < 0.45:  # paging through a filter
        cols = rng.choice(["id, name, region", "id, name, email, region, signup_date", "*"])
        limit = rng.choice([20, 50, 50, 100, 200])
        matched = w.matched(region, share)
        for page in range(rng.randint(1, 6)):
            offset = page * limit
            where = f"region = '{region}' AND signup_date > '{since}'"
            text = fin(
                f"SELECT {cols} FROM crm.client_list WHERE {where} ORDER BY id "
                f"LIMIT {limit} OFFSET {offset}",
                f"SELECT {cols}\n  FROM crm.client_list\n WHERE {where}\n ORDER BY id\n"
                f" LIMIT {limit} OFFSET {offset}",
            )
            out.append((Statement(text, tag="SELECT"), max(0, min(limit, matched - offset))))
            if matched - offset <= limit:
                break
    elif k < 0.62:  # aggregates
        text = fin(
            f"SELECT region, count(*) FROM crm.client_list WHERE signup_date >= '{since}' "
            "GROUP BY region ORDER BY 2 DESC",
            f"SELECT region, count(*)\n  FROM crm.client_list\n WHERE signup_date >= "
            f"'{since}'\n GROUP BY region\n ORDER BY 2 DESC",
        )
        out.append((Statement(text, tag="SELECT"), len(w.regions)))
        if rng.random() < 0.5:
            text = fin(f"SELECT count(*) FROM crm.client_list WHERE region = '{region}'")
            out.append((Statement(text, tag="SELECT"), 1))
    elif k < 0.74:  # a name search (a literal with a comma)
        name = rng.choice(["%Müller, J%", "%smith%", "%O''Brien%", "%García, M%", "%Nguyễn%"])
        text = fin(
            f"SELECT id, name, email FROM crm.client_list WHERE name ILIKE '{name}' LIMIT 100"
        )
        out.append((Statement(text, tag="SELECT"), rng.randint(0, 40)))
    elif k < 0.84:  # best customers: a join with the orders
        limit = rng.choice([10, 20, 50])
        text = fin(
            "SELECT c.id, c.name, sum(o.total) AS revenue FROM crm.client_list c JOIN "
            f"crm.orders o ON o.client_id = c.id WHERE c.region = '{region}' GROUP BY c.id, "
            f"c.name ORDER BY revenue DESC LIMIT {limit}",
            "SELECT c.id, c.name, sum(o.total) AS revenue\n  FROM crm.client_list c\n"
            "  JOIN crm.orders o ON o.client_id = c.id\n"
            f" WHERE c.region = '{region}'\n GROUP BY c.id, c.name\n"
            f" ORDER BY revenue DESC\n LIMIT {limit}",
        )
        out.append((Statement(text, (WATCHED, ORDERS), tag="SELECT"), limit))
    elif k < 0.94:  # orders only: another table, not watched
        text = fin(
            f"SELECT status, count(*), sum(total) FROM crm.orders WHERE created_at >= "
            f"'{since}' GROUP BY status"
        )
        out.append((Statement(text, (ORDERS,), tag="SELECT"), rng.randint(3, 6)))
    elif k < 0.985:  # one customer
        text = fin(f"SELECT * FROM crm.client_list WHERE id = {w.customer_id(rng)}")
        out.append((Statement(text, tag="SELECT"), 1))
    else:
        out.append((None, 0))
    return out
