"""The delivery task: drains the outbox to the sinks, one loop per sink.

A slow or failing sink never holds up another. Within a sink, up to CONCURRENCY deliveries are in
flight, never two of the same alert (the outbox hands out only the head of each alert's queue,
so a resolve never overtakes its trigger). A sink's documented rate limit is a sliding window per
bucket (PagerDuty: per routing key); triggers beyond it are folded into one aggregate delivery
that lists each of them and shares its fate with them, so a flood arrives late and summarised but
whole: nothing is dropped. A loop that fails (a broken disk, a sink's bug) says why in `trouble`
and starts again after a pause; it never takes the rest of the program down with it. When
stopped, it lets the deliveries in flight finish for a few seconds rather than cut them off.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from alerts.outbox import Item, Outbox
from core.safetext import safe
from core.sinks import Action, AlertSink, Outcome, RateLimit, Verdict

CONCURRENCY: Final = 8
"""Deliveries in flight per sink."""
BATCH: Final = 64
LIMITED_BATCH: Final = 5000
"""Due deliveries looked at in one go by a rate-limited sink: all of a flood, to fold it whole."""
AGGREGATE_PREFIX: Final = "tw-aggregate-"
TROUBLE_SECONDS: Final = 5.0
"""A sink loop that failed starts again after this."""
DRAIN_SECONDS: Final = 5.0
"""When stopped, deliveries in flight get this long to finish."""
MIN_WAIT: Final = 0.02
"""The shortest sleep between two looks at the outbox."""

Done = Callable[[Item, Verdict, float | None], None]
"""Told of every attempt: the item, its verdict, and the retry delay chosen (None unless RETRY)."""


class SlidingWindow:
    """At most `limit.events` in any `limit.seconds`: the services count this way ("120 events a
    minute"), so a token bucket, which allows a full burst and then its refill within one
    minute, would overrun them."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.events = limit.events
        self.seconds = limit.seconds
        self.clock = clock
        self._sent: deque[float] = deque()

    def available(self) -> int:
        """Deliveries allowed now."""
        horizon = self.clock() - self.seconds
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()
        return self.events - len(self._sent)

    def take(self, n: int = 1, at: float | None = None) -> None:
        """Count `n` deliveries made now (or `at`, for the ones made before a restart)."""
        when = self.clock() if at is None else at
        self._sent.extend(when for _ in range(n))

    def next_free(self) -> float:
        """When the next delivery is allowed (clock time)."""
        if len(self._sent) < self.events:
            return self.clock()
        return self._sent[len(self._sent) - self.events] + self.seconds


class Dispatcher:
    """Delivers what the outbox holds through `sinks`; `wake()` after queueing something."""

    def __init__(self, outbox: Outbox, sinks: Sequence[AlertSink], done: Done) -> None:
        self.outbox = outbox
        self.sinks = {sink.name: sink for sink in sinks}
        self.done = done
        self.clock = outbox.clock
        """The outbox's clock: due times and rate limits in the same time."""
        self._wake = {name: asyncio.Event() for name in self.sinks}
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self._recalled: set[str] = set()
        self.in_flight: set[int] = set()
        """Rows being sent right now (never cancelled under a sender's feet)."""
        self.aggregated = 0
        """Triggers folded into aggregate deliveries."""
        self.trouble: dict[str, str] = {}
        """Per sink, why its loop failed last (cleared once it delivers again)."""
        self.attempts: dict[tuple[str, str], int] = {}
        """Delivery attempts since the start, by (sink, outcome: sent | failed | retry)."""

    def wake(self, sink: str | None = None) -> None:
        """Something was queued (for `sink`, or for any)."""
        for name, event in self._wake.items():
            if sink is None or name == sink:
                event.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with asyncio.TaskGroup() as group:
            for sink in self.sinks.values():
                group.create_task(self._loop(sink), name=f"sink {sink.name}")

    async def _loop(self, sink: AlertSink) -> None:
        while True:
            try:
                await self._deliver(sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken disk, a sink's bug: said, and tried again
                self.trouble[sink.name] = safe(f"{type(exc).__name__}: {exc}", 300)
                await asyncio.sleep(TROUBLE_SECONDS)

    def _window(self, sink: AlertSink, limit: RateLimit, bucket: str) -> SlidingWindow:
        window = self._windows.get((sink.name, bucket))
        if window is None:
            window = self._windows[(sink.name, bucket)] = SlidingWindow(limit, self.clock)
        return window

    def _recall(self, sink: AlertSink) -> None:
        """Rebuild the rate-limit windows from what was sent lately (before a restart)."""
        if sink.limit is None or sink.name in self._recalled:
            return
        self._recalled.add(sink.name)
        for at, payload in self.outbox.sent_since(sink.name, self.clock() - sink.limit.seconds):
            self._window(sink, sink.limit, sink.bucket(payload)).take(1, at)

    async def _deliver(self, sink: AlertSink) -> None:
        self._recall(sink)
        wake = self._wake[sink.name]
        gate = asyncio.Semaphore(CONCURRENCY)
        while True:
            wake.clear()
            limited = sink.limit is not None
            items = self.outbox.due(LIMITED_BATCH if limited else BATCH, sink.name)
            if items and sink.limit is not None:
                items = self._within_limit(sink, sink.limit, items)
            if not items:
                due = self.outbox.next_due(sink.name)
                timeout = None if due is None else max(MIN_WAIT, due - self.clock())
                try:
                    await asyncio.wait_for(wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            await self._send_all(sink, items, gate)
            self.trouble.pop(sink.name, None)

    async def _send_all(self, sink: AlertSink, items: list[Item], gate: asyncio.Semaphore) -> None:
        """Send `items`; when cancelled, give those in flight DRAIN_SECONDS to finish."""
        self.in_flight.update(i.id for i in items)
        sending = asyncio.gather(
            *(self._send(sink, item, gate) for item in items), return_exceptions=True
        )
        try:
            results = await asyncio.shield(sending)
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(sending, DRAIN_SECONDS)
            finally:
                sending.cancel()
            raise
        finally:
            self.in_flight.difference_update(i.id for i in items)
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _send(self, sink: AlertSink, item: Item, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                verdict = await sink.deliver(item.payload)
            except Exception as exc:  # a sink's bug: retried like a network error, and shown
                verdict = Verdict(Outcome.RETRY, safe(f"{type(exc).__name__}: {exc}", 300))
        delay: float | None = None
        counted = (sink.name, verdict.outcome.value)
        self.attempts[counted] = self.attempts.get(counted, 0) + 1
        if verdict.outcome is Outcome.SENT:
            self.outbox.sent(item, verdict.detail)
        elif verdict.outcome is Outcome.FAILED:
            self.outbox.failed(item, verdict.detail)
        else:
            delay = self.outbox.retry(item, verdict.detail, verdict.retry_after)
        self.done(item, verdict, delay)
        if item.key.startswith(AGGREGATE_PREFIX):
            self._settle(item, verdict, delay)

    def _settle(self, aggregate: Item, verdict: Verdict, delay: float | None) -> None:
        """The members of an aggregate share its fate."""
        if verdict.outcome is Outcome.RETRY:
            members = self.outbox.members(aggregate.id)
            said = Verdict(Outcome.RETRY, f"within {aggregate.key}: {verdict.detail}")
        else:
            state = "sent" if verdict.outcome is Outcome.SENT else "failed"
            members = self.outbox.settle_folded(aggregate.id, state, verdict.detail)
            said = Verdict(verdict.outcome, f"within {aggregate.key}: {verdict.detail}")
        for member in members:
            self.done(member, said, delay)

    def _within_limit(self, sink: AlertSink, limit: RateLimit, items: list[Item]) -> list[Item]:
        """The items the rate limit lets go now; the rest deferred, excess triggers folded."""
        groups: dict[str, list[Item]] = {}
        for item in items:
            groups.setdefault(sink.bucket(item.payload), []).append(item)
        chosen: list[Item] = []
        for name, group in groups.items():
            window = self._window(sink, limit, name)
            free = window.available()
            if free < 1:
                go, rest = [], group
            elif len(group) <= free:
                go, rest = group, []
            else:
                head, tail = group[: free - 1], group[free - 1 :]
                left = self._fold(sink, tail)
                if len(left) < len(tail):  # folded: the aggregate takes the last slot
                    go, rest = head, left
                else:
                    go, rest = group[:free], group[free:]
            window.take(len(go))
            chosen += go
            if rest:
                self.outbox.defer(rest, window.next_free())
        return chosen

    def _fold(self, sink: AlertSink, items: list[Item]) -> list[Item]:
        """Fold the triggers among `items` into one aggregate delivery; the items left over."""
        foldable = [
            i
            for i in items
            if i.action == Action.TRIGGER and not i.key.startswith(AGGREGATE_PREFIX)
        ]
        if len(foldable) < 2:
            return items
        payload = sink.aggregate([i.payload for i in foldable])
        if payload is None:
            return items
        key = f"{AGGREGATE_PREFIX}{foldable[0].id}-{foldable[-1].id}"
        self.outbox.fold(sink.name, key, payload, foldable)
        held = Verdict(Outcome.RETRY, f"held by the rate limit: to be sent within {key}")
        for item in foldable:
            self.done(item, held, None)
        self.aggregated += len(foldable)
        folded = {i.id for i in foldable}
        return [i for i in items if i.id not in folded]
