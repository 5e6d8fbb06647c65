"""The pytest side of the private PostgreSQL + pgaudit cluster (tablewatch.pgcluster).

The cluster manager itself lives in the package, so that `tablewatch demo --postgres` can use it;
what only tests need stays here. The names re-exported below keep scripts/make_sample.py working.
"""

from __future__ import annotations

import os

import pytest

from tablewatch.pgcluster import available

__all__ = ["require_postgres"]


def require_postgres() -> None:
    """Skip the test without PostgreSQL + pgaudit, except under CI (``CI`` set), where that is a
    failure: CI must never go green by skipping the real thing."""
    reason = available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL + pgaudit required under CI: {reason}", pytrace=False)
    pytest.skip(reason)
