"""Fixtures for tests against a real, private PostgreSQL 15 + pgaudit cluster.

``pg_cluster`` is one cluster for the whole session (tests give their tables unique names);
``pg_factory`` starts extra clusters with their own settings, stopped when the test ends.
Without PostgreSQL/pgaudit the tests are skipped, except under CI (``CI`` set), where that is
an error: CI must never go green by skipping the real thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tablewatch.pgcluster import PgCluster
from tests.pgcluster import require_postgres


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster shared by the session; stopped (and its directory removed) at the end."""
    require_postgres()
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_factory() -> Iterator[Callable[[dict[str, str]], PgCluster]]:
    """``make(settings)`` starts another cluster with those GUCs; all are stopped at teardown."""
    require_postgres()
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
