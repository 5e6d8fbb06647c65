"""Fixtures for tests against a real, private PostgreSQL 15 + pgaudit cluster.

``pg_cluster`` is one cluster for the whole session (tests give their tables unique names);
``pg_factory`` starts extra clusters with their own settings, stopped when the test ends.
Without PostgreSQL/pgaudit the tests are skipped, except under CI (``CI`` set), where that is
an error: CI must never go green by skipping the real thing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.pgcluster import PgCluster, available


def _require_postgres() -> None:
    reason = available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL + pgaudit required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster shared by the session; stopped (and its directory removed) at the end."""
    _require_postgres()
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_factory() -> Iterator[Callable[[dict[str, str]], PgCluster]]:
    """``make(settings)`` starts another cluster with those GUCs; all are stopped at teardown."""
    _require_postgres()
    clusters: list[PgCluster] = []

    def make(settings: dict[str, str]) -> PgCluster:
        cluster = PgCluster(settings)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()
