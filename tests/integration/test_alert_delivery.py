"""Alert delivery under faults, through the real sinks to local servers playing the services:
a sink down for a while, 429 with Retry-After, a 400, PagerDuty's and Slack's rate limits, a
process killed with alerts queued, a flood of findings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from alerts.center import AlertCenter
from alerts.delivery import CONCURRENCY
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.pagerduty import PagerDuty
from alerts.rules import Rules
from alerts.slack import Slack
from alerts.webhook import Webhook
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.settings import PagerDutySink, SlackSink, WebhookSink
from core.sinks import AlertSink, RateLimit
from tests.alertkit import delivering, drained, until
from tests.receivers import PagerDutyReceiver, SlackReceiver, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
BULK = Reason("bulk_read", Severity.CRITICAL, 95, "one statement read 50,000 rows (100%)")
ROUTING_KEY = "R" * 32


def who(i: int) -> PrincipalKey:
    return PrincipalKey(f"user{i}", f"10.1.{i // 250}.{i % 250}", "psql", "crm.client_list")


def center(tmp_path: Path, sinks: list[AlertSink], rules: Rules | None = None) -> AlertCenter:
    return AlertCenter(
        Outbox(tmp_path / OUTBOX_FILE), sinks, rules or Rules(page_on=None), host="db1"
    )


def pagerduty(url: str, routing_key: str = ROUTING_KEY) -> PagerDuty:
    config = PagerDutySink(url=f"{url}/v2/enqueue", routing_key=SecretStr(routing_key))
    return PagerDuty(config, host="db1")


def webhook(url: str, secret: str = "s3cret") -> Webhook:
    return Webhook(WebhookSink(url=f"{url}/hook", secret=SecretStr(secret)), host="db1")


def page(c: AlertCenter, i: int) -> str:
    return c.page(who(i), Severity.CRITICAL, (BULK,), note="", operator="ann").key


def heal(receiver: PagerDutyReceiver) -> None:
    receiver._faults.clear()  # the service is back


def keys(seen: list) -> Counter[str]:  # type: ignore[type-arg]
    return Counter(s.json["key"] for s in seen)


async def test_a_sink_down_for_a_while_gets_each_alert_once_after_it_recovers(
    tmp_path: Path,
) -> None:
    async with WebhookReceiver("s3cret") as hook:
        hook.fail(500, times=6, body=b"upstream down")
        c = center(tmp_path, [webhook(hook.url)])
        sent = [page(c, i) for i in range(3)]
        async with delivering(c, close=True):
            await until(lambda: len(hook.received) == 3)
            await asyncio.sleep(0.5)  # nothing more comes
        assert keys(hook.received) == Counter(sent)
        assert len(hook.faulted) == 6 and hook.rejected == []


async def test_429_waits_exactly_the_retry_after(tmp_path: Path) -> None:
    async with WebhookReceiver("s3cret") as hook:
        hook.fail(429, headers={"Retry-After": "2"})
        c = center(tmp_path, [webhook(hook.url)])
        start = time.monotonic()
        key = page(c, 1)
        async with delivering(c, close=True):
            await until(lambda: len(hook.faulted) == 1)
            await until(lambda: len(hook.received) == 1)
            waited = time.monotonic() - start
            (row,) = c.outbox.rows(key)
        assert 2.0 <= waited < 4.0
        assert (row.state, row.attempts) == ("sent", 2)


async def test_a_400_is_failed_with_the_response_and_never_retried(tmp_path: Path) -> None:
    async with WebhookReceiver("s3cret") as hook:
        hook.fail(400, body=b'{"error": "unknown integration"}')
        c = center(tmp_path, [webhook(hook.url)])
        key = page(c, 1)
        async with delivering(c, close=True):
            await until(lambda: c.view(key).deliveries[0].state == "failed")  # type: ignore[union-attr]
            await asyncio.sleep(1.5)
            (delivery,) = c.view(key).deliveries  # type: ignore[union-attr]
            depth = c.outbox.depth()
        assert "HTTP 400" in delivery.detail and "unknown integration" in delivery.detail
        assert len(hook.faulted) == 1 and hook.received == []
        assert depth == 0


async def test_acknowledge_and_resolve_use_the_triggers_routing_key(tmp_path: Path) -> None:
    async with PagerDutyReceiver() as pd:
        first = center(tmp_path, [pagerduty(pd.url, "A" * 32)])
        key = page(first, 1)
        async with delivering(first, close=True):
            await until(lambda: len(pd.received) == 1)
        again = center(tmp_path, [pagerduty(pd.url, "B" * 32)])  # settings changed, restart
        again.acknowledge(key, "", "ann")
        again.resolve(key, "", "ann")
        async with delivering(again, close=True):
            await until(lambda: len(pd.received) == 3)
        assert [(s.json["event_action"], s.json["routing_key"]) for s in pd.received] == [
            ("trigger", "A" * 32),
            ("acknowledge", "A" * 32),
            ("resolve", "A" * 32),
        ]
        assert {s.json["dedup_key"] for s in pd.received} == {key}


async def test_pagerduty_rate_limit_aggregates_the_excess_and_drops_nothing(
    tmp_path: Path,
) -> None:
    async with PagerDutyReceiver() as pd:
        c = center(tmp_path, [pagerduty(pd.url)])
        sent = {page(c, i) for i in range(300)}
        async with delivering(c, close=True):
            await until(lambda: len(pd.received) >= 120)
            await asyncio.sleep(1.0)  # nothing is left to send (and the minute is used up)
            depth = c.outbox.depth()
        assert len(pd.received) == 120 and pd.rejected == []
        single = [s.json for s in pd.received if not s.json["dedup_key"].startswith("tw-agg")]
        (aggregate,) = [s.json for s in pd.received if s.json["dedup_key"].startswith("tw-agg")]
        details = aggregate["payload"]["custom_details"]
        assert len(single) == 119 and details["count"] == 181 and details["not_listed"] == 0
        listed = {a["dedup_key"] for a in details["alerts"]}
        assert listed | {e["dedup_key"] for e in single} == sent
        assert depth == 0 and c.dispatcher.aggregated == 181


class _LimitedPagerDuty(PagerDuty):
    """PagerDuty with a tighter limit, so a test sees the window turn."""

    def __init__(self, url: str, limit: RateLimit) -> None:
        config = PagerDutySink(url=f"{url}/v2/enqueue", routing_key=SecretStr(ROUTING_KEY))
        super().__init__(config, host="db1")
        self._limit = limit

    @property
    def limit(self) -> RateLimit:
        return self._limit


def tight(url: str) -> PagerDuty:
    """Three events a second."""
    return _LimitedPagerDuty(url, RateLimit(3, 1.0))


async def test_alerts_folded_into_a_refused_aggregate_show_as_failed(tmp_path: Path) -> None:
    async with PagerDutyReceiver() as pd:
        pd.fail(0, times=2)  # the two sent one by one are taken...
        pd.fail(400, body=b'{"status": "invalid event", "errors": ["bad"]}')  # ...the third not
        c = center(tmp_path, [tight(pd.url)])
        keys = [page(c, i) for i in range(5)]
        async with delivering(c):
            await until(lambda: all(c.view(k).deliveries[0].state != "queued" for k in keys))  # type: ignore[union-attr]
            states = [c.view(k).deliveries[0] for k in keys]  # type: ignore[union-attr]
            health = c.health()
        await c.close()
        assert [d.state for d in states] == ["sent", "sent", "failed", "failed", "failed"]
        assert all("tw-aggregate-" in d.detail and "HTTP 400" in d.detail for d in states[2:])
        assert health == ""  # a refusal is the alert's state, not the path's trouble


async def test_an_aggregate_is_resolved_once_every_alert_in_it_is(tmp_path: Path) -> None:
    async with PagerDutyReceiver() as pd:
        c = center(tmp_path, [tight(pd.url)])
        keys = [page(c, i) for i in range(5)]
        async with delivering(c, close=True):
            await until(lambda: len(pd.received) == 3)
            (aggregate,) = [s.json["dedup_key"] for s in pd.received[2:]]
            assert aggregate.startswith("tw-aggregate-")
            for key in keys[2:4]:
                c.resolve(key, "", "ann")
            await asyncio.sleep(1.5)
            assert len(pd.received) == 3  # one of its alerts is still open
            c.resolve(keys[4], "", "ann")
            await until(lambda: len(pd.received) == 4)
            await asyncio.sleep(0.3)
        (resolve,) = [s.json for s in pd.received[3:]]
        assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", aggregate)
        assert resolve["routing_key"] == ROUTING_KEY and len(pd.received) == 4


async def test_a_restart_remembers_the_rate_limit_and_the_flood_window(tmp_path: Path) -> None:
    def sink(url: str) -> PagerDuty:
        return _LimitedPagerDuty(url, RateLimit(2, 60.0))

    rules = Rules(flood_total=3)
    now = time.time_ns() // 1000
    async with PagerDutyReceiver() as pd:
        first = center(tmp_path, [sink(pd.url)], rules)
        first.observe(Finding(now, Severity.CRITICAL, 95, who(i), (BULK,)) for i in range(2))
        async with delivering(first, close=True):
            await until(lambda: len(pd.received) == 2)
        again = center(tmp_path, [sink(pd.url)], rules)  # restarted within the minute
        again.observe(Finding(now, Severity.CRITICAL, 95, who(i), (BULK,)) for i in range(2, 4))
        assert again.suppressed == 1  # the two pages before the restart still count
        async with delivering(again, close=True):
            await asyncio.sleep(1.0)
            depth = again.outbox.depth()
        assert len(pd.received) == 2 and depth == 1  # the minute's two events are spent


async def test_slack_gets_about_one_message_a_second(tmp_path: Path) -> None:
    async with SlackReceiver() as slack:
        sink = Slack(SlackSink(webhook_url=SecretStr(slack.webhook_url)), host="db1")
        c = center(tmp_path, [sink])
        async with delivering(c, close=True):
            page(c, 0)
            await until(lambda: len(slack.received) == 1)
            first = time.monotonic()
            for i in range(1, 5):
                page(c, i)
            await until(lambda: len(slack.received) == 2)
            second = time.monotonic()
            await asyncio.sleep(1.2)
        assert len(slack.received) == 2 and slack.rejected == []
        assert second - first >= 0.9
        assert "4 alerts held back" in slack.received[1].json["text"]


async def test_a_flood_of_10000_findings_pages_within_flood_control_exactly(
    tmp_path: Path,
) -> None:
    async with PagerDutyReceiver() as pd:
        c = center(tmp_path, [pagerduty(pd.url)], Rules(flood_total=20, flood_per_principal=3))
        now = time.time_ns() // 1000
        c.observe(
            Finding(now, Severity.CRITICAL, 95, who(i % 4000), (BULK,)) for i in range(10_000)
        )
        async with delivering(c, close=True):
            await until(lambda: len(pd.received) == 20)
            await asyncio.sleep(0.5)
            suppressed, grouped = c.suppressed, c.grouped
        assert len(pd.received) == 20
        assert grouped == 20 * 2  # who(0..19) came back twice more each: one incident each
        assert suppressed == 10_000 - 20 - grouped


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from pydantic import SecretStr
    from alerts.center import AlertCenter
    from alerts.outbox import Outbox
    from alerts.pagerduty import PagerDuty
    from alerts.rules import Rules
    from core.findings import PrincipalKey, Reason, Severity
    from core.settings import PagerDutySink

    url, outbox = sys.argv[1], Path(sys.argv[2])
    sink = PagerDuty(PagerDutySink(url=url, routing_key=SecretStr("R" * 32)), host="db1")
    center = AlertCenter(Outbox(outbox), [sink], Rules(page_on=None), host="db1")
    reason = Reason("bulk_read", Severity.CRITICAL, 95, "read it all")
    for i in range(100):
        p = PrincipalKey(f"user{i}", f"10.1.0.{i}", "psql", "crm.client_list")
        center.page(p, Severity.CRITICAL, (reason,), note="", operator="ann")
    print("queued", center.outbox.depth(), flush=True)
    asyncio.run(center.dispatcher.run())
    """
)


async def _killed_child(url: str, outbox: Path, ready: Callable[[], object]) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        url,
        str(outbox),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    assert (await child.stdout.readline()).split() == [b"queued", b"100"]
    await until(ready)
    child.send_signal(signal.SIGKILL)
    await child.wait()


async def test_killed_with_100_queued_every_alert_arrives_once_after_restart(
    tmp_path: Path,
) -> None:
    async with PagerDutyReceiver() as pd:
        pd.fail(503, times=10_000)  # down: everything stays queued
        await _killed_child(f"{pd.url}/v2/enqueue", tmp_path / OUTBOX_FILE, lambda: pd.faulted)
        heal(pd)
        c = center(tmp_path, [pagerduty(pd.url)])
        assert c.outbox.depth() == 100 and pd.received == []
        async with delivering(c, close=True):
            await until(lambda: len(pd.received) == 100)
            await asyncio.sleep(0.5)
        counts = Counter(s.json["dedup_key"] for s in pd.received)
        assert len(counts) == 100 and set(counts.values()) == {1}


async def test_killed_mid_delivery_nothing_is_lost_and_only_in_flight_ones_repeat(
    tmp_path: Path,
) -> None:
    async with PagerDutyReceiver() as pd:
        pd.stall(0.05, times=10_000)
        url = f"{pd.url}/v2/enqueue"
        await _killed_child(url, tmp_path / OUTBOX_FILE, lambda: len(pd.received) >= 30)
        heal(pd)
        c = center(tmp_path, [pagerduty(pd.url)])
        async with delivering(c, close=True):
            await until(lambda: len({s.json["dedup_key"] for s in pd.received}) == 100)
            await drained(c)
        counts = Counter(s.json["dedup_key"] for s in pd.received)
        assert len(counts) == 100  # every alert arrived
        repeated = sum(n - 1 for n in counts.values())
        assert repeated <= CONCURRENCY  # at most those in flight at the kill, same dedup_key
