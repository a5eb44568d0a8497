"""The analytics engine under test, once per session: `IDSTITCH_TEST_ANALYTICS` names it as the
server's `--analytics` setting does (default `duckdb`; `chdb:/path` for ClickHouse in-process,
which allows one engine per process). Each test's site has a store of its own, and the feeder
starts the copy over on it (tests/analytics/sites.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import pytest

from idstitch.analytics.choice import open_engine
from idstitch.analytics.engine import AnalyticsEngine
from tests.analytics.sites import Site, open_site

ANALYTICS_SETTING = os.environ.get("IDSTITCH_TEST_ANALYTICS") or "duckdb"


@pytest.fixture(scope="session")
def analytics_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalyticsEngine]:
    engine = open_engine(ANALYTICS_SETTING, tmp_path_factory.mktemp("analytics"), shared_store=False)
    assert engine is not None, f"IDSTITCH_TEST_ANALYTICS={ANALYTICS_SETTING!r} names no analytics engine"
    engine.prepare()
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def site_directories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Path]]:
    """A fresh directory per call (a Hypothesis example opens a site of its own each time)."""
    root = tmp_path_factory.mktemp("sites")
    numbers = count(1)

    def make() -> Path:
        return root / f"site-{next(numbers)}"

    yield make


@pytest.fixture
def site(tmp_path: Path, analytics_engine: AnalyticsEngine) -> Iterator[Site]:
    with open_site(tmp_path / "data", analytics_engine) as opened:
        yield opened
