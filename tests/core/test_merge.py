"""merge (PostHog `$merge_dangerously`): any two persons, identified or not; admin only (§3)."""

from __future__ import annotations

import pytest

from idstitch.commands import Merge
from idstitch.errors import NotFound
from idstitch.identity import Action, Decision, Holder, LinkKind, decide_link
from idstitch.outcomes import LinkOutcome, WarningRecord, WarningType
from tests.core.harness import ADMIN, Link, Warned, admin_merge, at, identify, ingest_merge, track
from tests.core.holders import anonymous, identified, illegal_id

pytestmark = pytest.mark.both_stores

CREATED, ATTACHED, MERGED, ALREADY_LINKED = (
    LinkOutcome.CREATED, LinkOutcome.ATTACHED, LinkOutcome.MERGED, LinkOutcome.ALREADY_LINKED,
)


def decide_merge(target: Holder | None, source: Holder | None, *, max_user_ids: int | None = 1) -> Decision:
    return decide_link(LinkKind.MERGE, "user-1", "user-2", target, source, max_user_ids=max_user_ids)


@pytest.mark.parametrize(
    "target, source, expected",
    [
        pytest.param(None, None, Decision("A", Action.CREATE_BOTH, CREATED, False, True), id="row-A"),
        pytest.param(identified("p-1"), None, Decision("B", Action.ATTACH_SOURCE, ATTACHED, False, True), id="row-B"),
        pytest.param(None, identified("p-2"), Decision("C", Action.ATTACH_TARGET, ATTACHED, False, True), id="row-C"),
        pytest.param(
            identified("p-1"), identified("p-1"), Decision("D", Action.MARK, ALREADY_LINKED, False, True), id="row-D"
        ),
        pytest.param(identified("p-1"), anonymous("p-2"), Decision("E", Action.MERGE, MERGED, False, True), id="row-E"),
        pytest.param(
            identified("p-1"), identified("p-2"), Decision("E", Action.MERGE, MERGED, False, True),
            id="row-F-is-skipped",
        ),
        pytest.param(
            identified("p-1", 3), identified("p-2", 4), Decision("E", Action.MERGE, MERGED, False, True),
            id="row-F-is-skipped-over-max-user-ids",
        ),
        pytest.param(
            anonymous("p-1"), anonymous("p-2"), Decision("E", Action.MERGE, MERGED, False, True), id="row-E-anonymous"
        ),
    ],
)
def test_merge_follows_the_table_but_merges_identified_persons_too(
    target: Holder | None, source: Holder | None, expected: Decision
) -> None:
    assert decide_merge(target, source) == expected


@pytest.mark.parametrize(
    "target_id, source_id, expected",
    [
        pytest.param("user-1", "user-1", Decision("0", Action.NOTHING, None), id="row-0-same-id"),
        pytest.param(
            "user-1", "undefined", Decision("0", Action.NOTHING, None, warnings=(illegal_id("undefined", "user-1"),)),
            id="row-0-illegal",
        ),
    ],
)
def test_merge_still_refuses_row_0(target_id: str, source_id: str, expected: Decision) -> None:
    assert decide_link(LinkKind.MERGE, target_id, source_id, identified("p-1"), identified("p-2")) == expected


# -- the engine ------------------------------------------------------------------------------


def test_admin_merge_joins_two_identified_persons(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2", minute=1))
    engine.apply(admin_merge("user-1", "user-2"))
    assert engine.persons() == [
        {
            "distinct_ids": ["anon-1", "anon-2", "user-1", "user-2"],
            "user_ids": ["user-1", "user-2"],
            "is_identified": True,
        }
    ]
    assert engine.links()[-1] == Link("merge", "admin:7", "user-1", "user-2", "E", "merged", None)
    assert engine.audit() == [("admin:7", "merge")]
    assert engine.conn.execute("SELECT count(*) FROM persons").fetchone()[0] == 1


def test_merge_keeps_the_targets_value_for_keys_on_both_sides(engine) -> None:
    engine.apply(
        identify("user-1", "anon-1", set={"plan": "pro", "email": "ada@example.com"}),
        identify("user-2", "anon-2", minute=5, set={"plan": "free", "company": "Acme"}),
    )
    engine.apply(admin_merge("user-1", "user-2"))
    assert engine.properties("user-2") == {"plan": "pro", "email": "ada@example.com", "company": "Acme"}


def test_merge_keeps_the_earliest_created_at(engine) -> None:
    engine.apply(track("anon-2", minute=-30), identify("user-1", "anon-1", minute=10))
    engine.apply(admin_merge("user-1", "anon-2"))
    person = engine.person("anon-2")
    assert (person["person_id"], person["created_at"]) == (engine.person_id("user-1"), at(-30))


def test_merge_of_ids_already_together_is_already_linked(engine) -> None:
    engine.apply(identify("user-1", "anon-1"))
    engine.apply(admin_merge("user-1", "anon-1"))
    assert engine.links()[-1] == Link("merge", "admin:7", "user-1", "anon-1", "D", "already_linked", None)


@pytest.mark.parametrize(
    "command, message",
    [
        pytest.param(admin_merge("user-1", "ghost"), "No person owns distinct id 'ghost'", id="unknown-source"),
        pytest.param(admin_merge("ghost", "user-1"), "No person owns distinct id 'ghost'", id="unknown-target"),
    ],
)
def test_admin_merge_of_an_unknown_id_is_not_found(engine, command: Merge, message: str) -> None:
    engine.apply(identify("user-1", "anon-1"))
    with pytest.raises(NotFound, match=message):
        engine.apply(command)
    assert len(engine.persons()) == 1


def test_merge_over_the_ingest_path_is_refused_but_its_event_counts(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2"))
    [result] = engine.apply(ingest_merge("user-1", "user-2", uuid="evt-merge"))
    assert result.warnings == [
        WarningRecord(
            WarningType.MERGE_REQUIRES_SECRET_KEY,
            ("user-1", "user-2"),
            {"target_distinct_id": "user-1", "source_distinct_id": "user-2"},
            "evt-merge",
        )
    ]
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True},
        {"distinct_ids": ["anon-2", "user-2"], "user_ids": ["user-2"], "is_identified": True},
    ]
    assert engine.links()[-1] == Link(
        "merge", "ingest", "user-1", "user-2", None, "refused", "merge_requires_secret_key"
    )
    assert engine.warnings() == [Warned("merge_requires_secret_key", ("user-1", "user-2"))]
    assert engine.event_ids()[-1] == "user-1"


@pytest.mark.parametrize("allowed", [pytest.param(False, id="refused-over-ingest"), pytest.param(True, id="allowed")])
def test_a_personless_merge_over_the_ingest_path_is_refused_and_dead_lettered(make_engine, allowed) -> None:
    engine = make_engine(allow_merge_over_ingest=allowed)
    [result] = engine.apply(ingest_merge("user-1", "user-2", process_person=False))
    assert [w.type for w in result.warnings] == [WarningType.IDENTITY_ON_PERSONLESS_EVENT]
    assert engine.dead_letters() == ["an identity operation cannot be marked $process_person_profile: false"]
    assert (engine.persons(), engine.links(), engine.event_ids()) == ([], [], [])


def test_merge_over_the_ingest_path_works_when_the_project_allows_it(make_engine) -> None:
    engine = make_engine(allow_merge_over_ingest=True)
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2"))
    [result] = engine.apply(ingest_merge("user-1", "user-2"))
    assert result.warnings == []
    assert engine.persons() == [
        {
            "distinct_ids": ["anon-1", "anon-2", "user-1", "user-2"],
            "user_ids": ["user-1", "user-2"],
            "is_identified": True,
        }
    ]
    assert engine.links()[-1] == Link("merge", "ingest", "user-1", "user-2", "E", "merged", None)


def test_a_person_holding_two_user_ids_after_a_merge_still_refuses_a_third(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2"))
    engine.apply(admin_merge("user-1", "user-2"))
    engine.apply(identify("user-3", "anon-1", minute=5))
    assert engine.persons() == [
        {
            "distinct_ids": ["anon-1", "anon-2", "user-1", "user-2"],
            "user_ids": ["user-1", "user-2"],
            "is_identified": True,
        },
        {"distinct_ids": ["user-3"], "user_ids": ["user-3"], "is_identified": True},
    ]


def test_admin_merge_is_logged_with_its_actor(engine) -> None:
    engine.apply(track("anon-1"), track("anon-2"))
    engine.apply(Merge("anon-1", "anon-2", ADMIN))
    assert (engine.links(), engine.audit()) == (
        [Link("merge", "admin:7", "anon-1", "anon-2", "E", "merged", None)],
        [("admin:7", "merge")],
    )
