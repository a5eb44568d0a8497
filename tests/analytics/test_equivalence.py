"""Every question answers the same on the analytics copy as on the store (issue 11): random event
streams with random merges, splits, undos and erasures, then random counts and persons lists,
compared whole. The store (SQLite) is the reference.

Along a stream, at each `CatchUp`: before catching up, the copy still answers exactly as the
store did when the copy last caught up (a step is applied whole, nothing leaks in between); after
catching up it answers as the store does now (a merge or a split shows at once, never a stale
mapping). The engine is the session's (`IDSTITCH_TEST_ANALYTICS`, tests/analytics/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from idstitch.query import people
from tests.analytics.sites import Site, open_site
from tests.analytics.streams import PERSONS_QUESTIONS, SEGMENT_FILTERS, STREAMS, CatchUp, count_questions, run_step
from tests.conftest import running_in_ci

EXAMPLES = 300 if running_in_ci() else 30
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def compare_along(site: Site, stream: list[Any], ask: Callable[[Any], list[Any]]) -> None:
    """Run the stream, comparing the copy with the store at each CatchUp and at the end."""
    site.catch_up()
    then = ask(site.conn)
    assert ask(site.copy()) == then
    for number, step in enumerate([*stream, CatchUp()]):
        if not isinstance(step, CatchUp):
            run_step(site, step)
            continue
        assert ask(site.copy()) == then, f"before catching up at step {number}, the copy answers as the store did at its last catch-up"
        site.catch_up()
        now = ask(site.conn)
        note(f"step {number}: the store answers {now!r}")
        assert ask(site.copy()) == now, f"after catching up at step {number}"
        then = now


def save_segments(site: Site, documents: tuple[dict[str, Any], ...]) -> list[int]:
    return [site.save_segment(f"segment {i}", document) for i, document in enumerate(documents)]


@SETTINGS
@given(stream=STREAMS, questions=st.lists(count_questions(), min_size=1, max_size=3), segments=SEGMENT_FILTERS)
def test_counts_on_the_copy_equal_the_store(analytics_engine, site_directories, stream, questions, segments):
    with open_site(site_directories(), analytics_engine) as site:
        segment_ids = save_segments(site, segments)

        def ask(conn: Any) -> list[Any]:
            return [
                site.count(conn, q.spec, q.filter, segment_ids[q.segment] if q.segment is not None else None)
                for q in questions
            ]

        compare_along(site, stream, ask)


@SETTINGS
@given(stream=STREAMS, questions=st.lists(PERSONS_QUESTIONS, min_size=1, max_size=3), segments=SEGMENT_FILTERS)
def test_persons_lists_on_the_copy_equal_the_store(analytics_engine, site_directories, stream, questions, segments):
    with open_site(site_directories(), analytics_engine) as site:
        segment_ids = save_segments(site, segments)

        def ask(conn: Any) -> list[Any]:
            return [
                site.person_ids(conn, q.filter, segment_ids[q.segment] if q.segment is not None else None, page=q.page)
                for q in questions
            ]

        compare_along(site, stream, ask)
        # The pages walked are persons_page's own, on the store.
        for q in questions:
            found = site.person_ids(site.conn, q.filter, segment_ids[q.segment] if q.segment is not None else None)
            if isinstance(found, list):
                assert found == persons_page_ids(site, q.filter, segment_ids[q.segment] if q.segment is not None else None)


def persons_page_ids(site: Site, document: Any, segment_id: int | None) -> list[str]:
    from idstitch.query.compiler import PERSONS, where_clause
    from idstitch.query.filters import parse_filter

    node = parse_filter(document) if document is not None else None

    def walk(conn: Any, compiler: Any) -> list[str]:
        where = where_clause(compiler, PERSONS, node, segment_id)
        ids: list[str] = []
        cursor = None
        while True:
            page = people.persons_page(conn, site.project_id, where, 3, cursor)
            ids += [p["id"] for p in page.results]
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor

    return site.ask(site.conn, walk)  # type: ignore[no-any-return]
