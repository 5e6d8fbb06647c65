"""`tablewatch run`, the headless agent, as an operator runs it: started on a real pgaudit
csvlog, scraped over HTTP, stopped with SIGTERM (exit 0, position and habits saved), restarted
where it stopped, and refused in one line when a second one shares its state dir."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
from pathlib import Path

from tests.agentkit import (
    SAMPLE,
    SAMPLE_EVENTS,
    configure,
    events_become,
    free_port,
    fresh_sample,
    next_log,
    running,
    scrape,
    start,
)
from tests.receivers import WebhookReceiver


async def test_the_agent_follows_the_log_serves_metrics_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    config = configure(tmp_path, port)
    shutil.copy(SAMPLE, tmp_path / "log" / "postgresql-1.csv")
    async with running(config) as agent:
        started = await next_log(agent, "started")
        assert started["metrics"] == f"http://127.0.0.1:{port}/metrics"
        assert started["sinks"] == "local"
        m = await events_become(port, SAMPLE_EVENTS)
        assert m["tablewatch_events_total{}"] == SAMPLE_EVENTS
        reads = sum(v for k, v in m.items() if k.startswith("tablewatch_reads_total"))
        assert reads > 0 and m["tablewatch_source_up{source=audit_log}"] == 1
        assert await next_log(agent, "alert_active")  # the sample's exfiltration paged
        # the log has gone quiet: its position is saved all the same, the counts with it
        checkpoint = tmp_path / "state" / "audit_log.checkpoint.json"
        for _ in range(50):
            if checkpoint.exists():
                saved = json.loads(checkpoint.read_text())
                if saved["consumer"].get("events") == SAMPLE_EVENTS:
                    break
            await asyncio.sleep(0.1)
        assert json.loads(checkpoint.read_text())["consumer"]["events"] == SAMPLE_EVENTS
        second = await start(config)  # the same state dir
        refused = await next_log(second, "refused")
        assert "in use by another tablewatch" in refused["detail"]
        assert await second.wait() == 2
        agent.send_signal(signal.SIGTERM)
        stopped = await next_log(agent, "stopped")
        assert stopped["events"] == SAMPLE_EVENTS
        assert await asyncio.wait_for(agent.wait(), 30) == 0
    state = tmp_path / "state"
    assert (state / "audit_log.checkpoint.json").exists() and (state / "baselines.json").exists()
    recorded = [json.loads(line) for line in (state / "alerts.jsonl").read_text().splitlines()]
    assert [(r["action"], r["origin"], r["severity"]) for r in recorded][:1] == [
        ("trigger", "rule", "critical")
    ]

    async with running(config) as again:  # resumes at the checkpoint: nothing is read twice,
        await next_log(again, "started")  # and its counters go on from where they were
        await asyncio.sleep(1.0)
        assert (await scrape(port))["tablewatch_events_total{}"] == SAMPLE_EVENTS
        with (tmp_path / "log" / "postgresql-1.csv").open("ab") as log:  # the server writes on
            log.write(SAMPLE.read_bytes())
        m = await events_become(port, 2 * SAMPLE_EVENTS)
        assert m["tablewatch_events_total{}"] == 2 * SAMPLE_EVENTS
        again.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(again.wait(), 30) == 0


async def test_a_port_already_taken_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = configure(tmp_path, int(taken.getsockname()[1]))
        agent = await start(config)
        refused = await next_log(agent, "refused")
        assert "cannot listen on 127.0.0.1:" in refused["detail"]
        assert await agent.wait() == 2


async def test_sighup_applies_new_sinks_and_refuses_bad_settings(tmp_path: Path) -> None:
    port = free_port()
    async with WebhookReceiver("one") as first, WebhookReceiver("two") as second:
        hook = '[alerts.webhook]\nurl = "{}/hook"\nsecret = "{}"\n'
        config = configure(tmp_path, port, hook.format(first.url, "one"))
        (tmp_path / "log" / "postgresql-1.csv").write_bytes(b"")
        async with running(config) as agent:
            assert (await next_log(agent, "started"))["sinks"] == "webhook, local"
            configure(tmp_path, port, hook.format(second.url, "two"))
            agent.send_signal(signal.SIGHUP)
            reloaded = await next_log(agent, "reloaded")
            assert reloaded["applied"] == "sinks" and reloaded["needs_restart"] == "nothing"
            (tmp_path / "log" / "postgresql-1.csv").write_bytes(fresh_sample())
            await next_log(agent, "alert_active")
            for _ in range(100):
                if second.received:
                    break
                await asyncio.sleep(0.1)
            assert [s.json["action"] for s in second.received][:1] == ["trigger"]
            assert first.received == [] and second.rejected == []  # signed with the new secret
            configure(tmp_path, port, '[alerts]\npage_on = "sometimes"\n')
            agent.send_signal(signal.SIGHUP)
            refused = await next_log(agent, "reload_refused")
            assert "page_on" in refused["detail"]
            assert (await scrape(port))["tablewatch_source_up{source=audit_log}"] == 1
            configure(tmp_path, port, '[[tables]]\nname = "crm.orders"\n')
            for _ in range(2):  # said again at each reload until the agent is restarted
                agent.send_signal(signal.SIGHUP)
                reloaded = await next_log(agent, "reloaded")
                assert reloaded["needs_restart"] == "tables"
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 30) == 0
