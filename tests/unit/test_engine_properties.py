"""Properties of the engine over arbitrary event sequences: it never crashes, findings come out in
time order as rises of a principal's severity, scores agree with severities, reasons explain."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import AccessEvent, EventKind
from core.findings import SCORE_BANDS, Finding, Severity
from tests.unit.enginekit import at, engine, ev

STATEMENTS = [
    "SELECT * FROM crm.client_list",
    "SELECT * FROM crm.client_list WHERE id = $1",
    "SELECT * FROM crm.client_list WHERE id = ANY($1)",
    "SELECT * FROM crm.client_list ORDER BY id LIMIT $1 OFFSET $2",
    "SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT 500",
    "SELECT region, count(*) FROM crm.client_list GROUP BY region",
    "COPY crm.client_list TO STDOUT",
    "DECLARE c CURSOR FOR SELECT * FROM crm.client_list",
    "UPDATE crm.client_list SET name = $2 WHERE id = $1",
    "SELECT * FROM crm.client_list WHERE id = :id",
    "REVOKE SELECT ON crm.client_list FROM auditor",
    "SET pgaudit.log = 'none'",
    "\x00\x1b[31m garbage ((( ",
    "",
]
PARAM = st.one_of(
    st.integers(min_value=-5, max_value=10**20).map(str),
    st.sampled_from(["{1,2,3}", "{}", "<long param suppressed>", "", "x", "²", "٣", "1²", "-1"]),
    st.text(max_size=8),
)


@st.composite
def events(draw: st.DrawFn) -> list[AccessEvent]:
    count = draw(st.integers(min_value=1, max_value=60))
    offsets = sorted(draw(st.lists(st.integers(0, 4 * 86_400), min_size=count, max_size=count)))
    out = []
    for second in offsets:
        kind = draw(st.sampled_from([EventKind.AUDIT] * 6 + [EventKind.DENIED, EventKind.CONTROL]))
        statement = draw(st.sampled_from(STATEMENTS + [None]))
        params = draw(st.one_of(st.none(), st.tuples(PARAM, PARAM).map(tuple)))
        out.append(
            ev(
                at(second=second),
                statement,
                user=draw(st.sampled_from(["app", "alice", "postgres", "x\x1b"])),
                addr=draw(st.sampled_from(["10.0.0.1", "10.0.0.2", "", "[local]", "::1"])),
                app=draw(st.sampled_from(["crm-web", "", "psql"])),
                params=params,
                rows=draw(st.one_of(st.none(), st.integers(0, 200_000))),
                session=draw(st.sampled_from(["s1", "s2", "s3"])),
                statement_id=draw(st.integers(1, 5)),
                kind=kind,
                class_=draw(st.sampled_from(["READ", "WRITE", "ROLE", "MISC"])),
                command=draw(st.sampled_from(["SELECT", "BIND", "REVOKE", "SET", "COPY"])),
                object_name=draw(st.sampled_from(["crm.client_list", "crm.orders", ""])),
            )
        )
    return out


def _check(findings: list[Finding]) -> None:
    assert [f.time_us for f in findings] == sorted(f.time_us for f in findings)
    for f in findings:
        low, high = SCORE_BANDS[f.severity]
        assert f.severity > Severity.NONE and low <= f.score <= high
        assert f.reasons and f.reasons[0].severity is f.severity
        assert all(r.detail and r.code for r in f.reasons)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), st.sampled_from([None, 1, 50_000]))
def test_any_event_sequence_gives_well_formed_findings(
    batch: list[AccessEvent], rows: int | None
) -> None:
    e = engine(rows=rows, learning_hours=1)
    _check(e.process(batch))
    snap = e.snapshot()
    for view in snap.readers:
        low, high = SCORE_BANDS[view.severity]
        assert low <= view.score <= high
        assert view.fraction_hour is None or view.fraction_hour >= 0


@settings(max_examples=50, deadline=None)
@given(events())
def test_a_batch_split_anywhere_gives_the_same_findings(batch: list[AccessEvent]) -> None:
    whole = engine().process(batch)
    split = engine()
    cut = len(batch) // 2
    assert split.process(batch[:cut]) + split.process(batch[cut:]) == whole
