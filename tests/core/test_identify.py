"""identify(user_id, anonymous_id): the decision table and what the engine stores (identity-rules.md §3)."""

from __future__ import annotations

import pytest

from idstitch.identity import Action, Decision, Holder, LinkKind, decide_identify_alone, decide_link
from idstitch.ids import IllegalIds, person_id_for
from idstitch.outcomes import LinkOutcome, Rejection, WarningRecord, WarningType
from tests.core.harness import Link, Warned, alias, at, identify, track
from tests.core.holders import anonymous, cannot_merge, identified, illegal_id

pytestmark = pytest.mark.both_stores

CREATED, ATTACHED, MERGED, ALREADY_LINKED, REFUSED = (
    LinkOutcome.CREATED, LinkOutcome.ATTACHED, LinkOutcome.MERGED, LinkOutcome.ALREADY_LINKED, LinkOutcome.REFUSED,
)


def decide_identify(
    target: Holder | None,
    source: Holder | None,
    *,
    user_id: str = "user-1",
    anonymous_id: str = "anon-1",
    max_user_ids: int | None = 1,
) -> Decision:
    return decide_link(LinkKind.IDENTIFY, user_id, anonymous_id, target, source, max_user_ids=max_user_ids)


# -- the decision table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id, anonymous_id, target, source, expected",
    [
        pytest.param("user-1", "user-1", None, None, Decision("0", Action.NOTHING, None), id="row-0-same-id"),
        pytest.param(
            "user-1", "user-1", identified("p-1"), identified("p-1"), Decision("0", Action.NOTHING, None),
            id="row-0-same-id-with-person",
        ),
        pytest.param(
            "undefined", "anon-1", None, anonymous("p-anon-1"),
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("undefined", "anon-1"),)),
            id="row-0-illegal-user-id",
        ),
        pytest.param(
            "user-1", "null", identified("p-user-1"), None,
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("null", "user-1"),)),
            id="row-0-illegal-anonymous-id",
        ),
        pytest.param(
            "user-1", "", None, None,
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("", "user-1"),)),
            id="row-0-empty-anonymous-id",
        ),
        pytest.param(
            "null", "null", None, None,
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("null", "null"),)),
            id="row-0-same-illegal-id",
        ),
        pytest.param(
            "user-1", "anon-1", None, None, Decision("A", Action.CREATE_BOTH, CREATED, True, True), id="row-A",
        ),
        pytest.param(
            "user-1", "anon-2", identified("p-user-1"), None,
            Decision("B", Action.ATTACH_SOURCE, ATTACHED, True, True),
            id="row-B",
        ),
        pytest.param(
            "user-1", "anon-2", anonymous("p-user-1"), None,
            Decision("B", Action.ATTACH_SOURCE, ATTACHED, True, True),
            id="row-B-user-id-seen-before-identify",
        ),
        pytest.param(
            "user-1", "anon-1", None, anonymous("p-anon-1"),
            Decision("C", Action.ATTACH_TARGET, ATTACHED, True, True),
            id="row-C",
        ),
        pytest.param(
            "user-1", "anon-1", None, identified("p-anon-1", 0),
            Decision("C", Action.ATTACH_TARGET, ATTACHED, True, True),
            id="row-C-source-identified-by-alias-only",
        ),
        pytest.param(
            "user-1", "anon-1", anonymous("p-1"), anonymous("p-1"),
            Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="row-D",
        ),
        pytest.param(
            "user-1", "anon-1", identified("p-1"), identified("p-1", id_is_user_id=False),
            Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="row-D-already-the-user-id",
        ),
        pytest.param(
            "user-1", "anon-2", identified("p-user-1"), anonymous("p-anon-2"),
            Decision("E", Action.MERGE, MERGED, True, True),
            id="row-E",
        ),
        pytest.param(
            "user-1", "anon-2", anonymous("p-user-1"), anonymous("p-anon-2"),
            Decision("E", Action.MERGE, MERGED, True, True),
            id="row-E-both-anonymous",
        ),
        pytest.param(
            "user-2", "anon-1", identified("p-user-2"), identified("p-user-1", id_is_user_id=False),
            Decision("F", Action.REFUSE, REFUSED, True, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-F",
        ),
        pytest.param(
            "user-2", "anon-1", anonymous("p-user-2"), identified("p-user-1", id_is_user_id=False),
            Decision("F", Action.REFUSE, REFUSED, True, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-F-target-not-yet-identified",
        ),
        pytest.param(
            "user-2", "anon-1",
            identified("p-user-1", id_is_user_id=False), identified("p-user-3", id_is_user_id=False),
            Decision("F", Action.REFUSE, REFUSED, False, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-F-target-person-already-holds-a-user-id",
        ),
    ],
)
def test_identify_follows_the_decision_table(
    user_id: str, anonymous_id: str, target: Holder | None, source: Holder | None, expected: Decision
) -> None:
    assert decide_identify(target, source, user_id=user_id, anonymous_id=anonymous_id) == expected


def test_identify_refuses_to_merge_two_identified_persons() -> None:
    decision = decide_identify(target=identified("p-user-1"), source=identified("p-user-2", id_is_user_id=False))
    assert decision.outcome is LinkOutcome.REFUSED
    assert [w.type for w in decision.warnings] == [WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED]
    assert decision.reason == "cannot_merge_already_identified"


@pytest.mark.parametrize(
    "target, source",
    [
        pytest.param(None, None, id="row-A"),
        pytest.param(identified("p-user-1"), anonymous("p-anon-1"), id="row-E"),
    ],
)
def test_a_decision_that_is_not_refused_has_no_reason(target: Holder | None, source: Holder | None) -> None:
    decision = decide_identify(target, source)
    assert (decision.reason, decision.warnings) == (None, ())


def test_identify_warnings_carry_the_event_uuid() -> None:
    decisions = [
        decide_link(LinkKind.IDENTIFY, "user-2", "anon-1", identified("p-2"), identified("p-1"), event_uuid="evt-9"),
        decide_link(LinkKind.IDENTIFY, "user-2", "null", None, None, event_uuid="evt-9"),
    ]
    assert [d.warnings for d in decisions] == [
        (cannot_merge("anon-1", "user-2", "evt-9"),),
        (illegal_id("null", "user-2", "evt-9"),),
    ]


def test_identify_honours_the_projects_own_illegal_ids() -> None:
    additions = IllegalIds.from_settings(["test-user"], [r"tmp-\d+"])
    decisions = [
        decide_link(LinkKind.IDENTIFY, "test-user", "anon-1", None, None, illegal=additions),
        decide_link(LinkKind.IDENTIFY, "user-1", "tmp-7", None, None, illegal=additions),
        decide_link(LinkKind.IDENTIFY, "user-1", "anon-1", None, None, illegal=additions),
    ]
    assert decisions == [
        Decision("0", Action.NOTHING, None, warnings=(illegal_id("test-user", "anon-1"),)),
        Decision("0", Action.NOTHING, None, warnings=(illegal_id("tmp-7", "user-1"),)),
        Decision("A", Action.CREATE_BOTH, CREATED, True, True),
    ]


# -- max_user_ids --------------------------------------------------------------------------

# user-2 is new to a person that already holds user-1: as the anonymous id's person (row C),
# as an id aliased into that person (rows B and D), or as the target of a merge (row E).
HOLDS_USER_1 = identified("p-user-1", 1, id_is_user_id=False)


@pytest.mark.parametrize(
    "max_user_ids, target, source, expected",
    [
        pytest.param(
            1, None, HOLDS_USER_1,
            Decision("C", Action.CREATE_TARGET_ALONE, REFUSED, True, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-C-max-1",
        ),
        pytest.param(
            2, None, HOLDS_USER_1, Decision("C", Action.ATTACH_TARGET, ATTACHED, True, True),
            id="row-C-max-2",
        ),
        pytest.param(
            2, None, identified("p-user-1", 2, id_is_user_id=False),
            Decision("C", Action.CREATE_TARGET_ALONE, REFUSED, True, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-C-max-2-third-user-id",
        ),
        pytest.param(
            None, None, identified("p-user-1", 5, id_is_user_id=False),
            Decision("C", Action.ATTACH_TARGET, ATTACHED, True, True),
            id="row-C-unlimited",
        ),
        pytest.param(
            1, HOLDS_USER_1, None,
            Decision("B", Action.REFUSE, REFUSED, False, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-B-max-1",
        ),
        pytest.param(
            2, HOLDS_USER_1, None, Decision("B", Action.ATTACH_SOURCE, ATTACHED, True, True),
            id="row-B-max-2",
        ),
        pytest.param(
            1, HOLDS_USER_1, HOLDS_USER_1,
            Decision("D", Action.REFUSE, REFUSED, False, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-D-max-1",
        ),
        pytest.param(
            2, HOLDS_USER_1, HOLDS_USER_1, Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="row-D-max-2",
        ),
        pytest.param(
            1, HOLDS_USER_1, anonymous("p-anon-1"),
            Decision("E", Action.REFUSE, REFUSED, False, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-E-max-1",
        ),
        pytest.param(
            2, HOLDS_USER_1, anonymous("p-anon-1"), Decision("E", Action.MERGE, MERGED, True, True),
            id="row-E-max-2",
        ),
        pytest.param(
            None, identified("p-user-2"), identified("p-user-1", id_is_user_id=False),
            Decision("F", Action.REFUSE, REFUSED, True, True, (cannot_merge("anon-1", "user-2"),)),
            id="row-F-even-unlimited",
        ),
    ],
)
def test_identify_gives_a_person_at_most_max_user_ids(
    max_user_ids: int | None, target: Holder | None, source: Holder | None, expected: Decision
) -> None:
    assert decide_identify(target, source, user_id="user-2", max_user_ids=max_user_ids) == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        pytest.param(None, Decision("B", Action.ATTACH_SOURCE, ATTACHED, True, True), id="row-B"),
        pytest.param(anonymous("p-anon-2"), Decision("E", Action.MERGE, MERGED, True, True), id="row-E"),
    ],
)
def test_identify_with_the_persons_own_user_id_does_not_count_it_twice(
    source: Holder | None, expected: Decision
) -> None:
    # user-1 already is the one user id of its person: a new device's id joins at max_user_ids=1.
    assert decide_identify(identified("p-user-1"), source, anonymous_id="anon-2", max_user_ids=1) == expected


# -- identify with no anonymous id ---------------------------------------------------------


@pytest.mark.parametrize(
    "user_id, holder, max_user_ids, expected",
    [
        pytest.param(
            "null", None, 1,
            Decision("0", Action.NOTHING, None, warnings=(
                WarningRecord(WarningType.ILLEGAL_DISTINCT_ID, ("null",), {"illegal_distinct_id": "null"}),
            )),
            id="row-0-illegal",
        ),
        pytest.param(
            "user-1", None, 1, Decision("A", Action.CREATE_TARGET_ALONE, CREATED, True, True),
            id="new-user-id",
        ),
        pytest.param(
            "user-1", anonymous("p-user-1"), 1, Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="seen-before",
        ),
        pytest.param(
            "user-1", identified("p-user-1"), 1, Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="already-identified",
        ),
        pytest.param(
            "user-2", HOLDS_USER_1, 1,
            Decision("D", Action.REFUSE, REFUSED, False, True, (
                WarningRecord(
                    WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED, ("user-2",),
                    {"target_distinct_id": "user-2", "user_id_count": 1},
                ),
            )),
            id="second-user-id-max-1",
        ),
        pytest.param(
            "user-2", HOLDS_USER_1, 2, Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="second-user-id-max-2",
        ),
        pytest.param(
            "user-2", identified("p-user-1", 9, id_is_user_id=False), None,
            Decision("D", Action.MARK, ALREADY_LINKED, True, True),
            id="unlimited",
        ),
    ],
)
def test_identify_alone_marks_the_user_ids_person_identified(
    user_id: str, holder: Holder | None, max_user_ids: int | None, expected: Decision
) -> None:
    assert decide_identify_alone(user_id, holder, max_user_ids=max_user_ids) == expected


def test_identify_alone_honours_the_projects_illegal_patterns() -> None:
    additions = IllegalIds.from_settings([], [r"tmp-\d+"])
    decision = decide_identify_alone("tmp-3", None, illegal=additions, event_uuid="e-1")
    assert decision == Decision("0", Action.NOTHING, None, warnings=(
        WarningRecord(WarningType.ILLEGAL_DISTINCT_ID, ("tmp-3",), {"illegal_distinct_id": "tmp-3"}, "e-1"),
    ))


# -- the engine ------------------------------------------------------------------------------

IDENTIFIED_USER_1 = {"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True}


def test_identify_after_anonymous_events_attaches_the_user_id(engine) -> None:
    engine.apply(track("anon-1", minute=0), identify("user-1", "anon-1", minute=5))
    assert engine.persons() == [IDENTIFIED_USER_1]
    assert engine.person_id("user-1") == person_id_for(1, "anon-1")
    assert engine.links() == [Link("identify", "ingest", "user-1", "anon-1", "C", "attached", None)]


def test_identify_before_the_anonymous_events_it_follows_lands_them_on_the_same_person(engine) -> None:
    # posthog-js may deliver identify before the page views that preceded it.
    engine.apply(identify("user-1", "anon-1", minute=5))
    engine.apply(track("anon-1", minute=1), track("anon-1", minute=0))
    assert engine.persons() == [IDENTIFIED_USER_1]
    assert engine.person("anon-1")["created_at"] == at(0)
    assert engine.person_id("anon-1") == person_id_for(1, "user-1")
    assert engine.links() == [Link("identify", "ingest", "user-1", "anon-1", "A", "created", None)]
    assert engine.event_ids() == ["user-1", "anon-1", "anon-1"]


def test_identify_with_an_unseen_anonymous_id_attaches_it(engine) -> None:
    engine.apply(identify("user-1", "anon-1"))
    engine.apply(identify("user-1", "anon-2", minute=60))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "anon-2", "user-1"], "user_ids": ["user-1"], "is_identified": True}
    ]
    assert engine.links()[-1] == Link("identify", "ingest", "user-1", "anon-2", "B", "attached", None)


def test_identify_on_a_second_device_merges_its_anonymous_person(engine) -> None:
    engine.apply(track("anon-1"), identify("user-1", "anon-1", minute=1))
    engine.apply(track("anon-2", minute=30), identify("user-1", "anon-2", minute=31))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "anon-2", "user-1"], "user_ids": ["user-1"], "is_identified": True}
    ]
    assert engine.links()[-1] == Link("identify", "ingest", "user-1", "anon-2", "E", "merged", None)
    # The anonymous person is gone, not left empty.
    assert engine.conn.execute("SELECT count(*) FROM persons").fetchone()[0] == 1


def test_identify_again_is_logged_as_already_linked(engine) -> None:
    engine.apply(identify("user-1", "anon-1"))
    engine.apply(identify("user-1", "anon-1", minute=10))
    assert engine.persons() == [IDENTIFIED_USER_1]
    assert engine.links() == [
        Link("identify", "ingest", "user-1", "anon-1", "A", "created", None),
        Link("identify", "ingest", "user-1", "anon-1", "D", "already_linked", None),
    ]


def test_identify_refuses_to_merge_two_identified_persons_in_the_store(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2"))
    [result] = engine.apply(identify("user-2", "anon-1", minute=5, uuid="evt-shared-laptop"))
    assert result.warnings == [cannot_merge("anon-1", "user-2", "evt-shared-laptop")]
    assert engine.persons() == [
        IDENTIFIED_USER_1,
        {"distinct_ids": ["anon-2", "user-2"], "user_ids": ["user-2"], "is_identified": True},
    ]
    assert engine.links()[-1] == Link(
        "identify", "ingest", "user-2", "anon-1", "F", "refused", "cannot_merge_already_identified"
    )
    assert engine.warnings() == [Warned("cannot_merge_already_identified", ("anon-1", "user-2"))]


def test_identify_marks_the_target_identified_even_when_the_merge_is_refused(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), track("user-2"))
    engine.apply(identify("user-2", "anon-1", minute=5))
    assert engine.persons() == [
        IDENTIFIED_USER_1,
        {"distinct_ids": ["user-2"], "user_ids": ["user-2"], "is_identified": True},
    ]
    assert engine.links()[-1].outcome == "refused"


def test_a_second_user_id_on_a_shared_device_becomes_its_own_person(engine) -> None:
    # Heap: a changed identity is a new user.
    engine.apply(track("anon-1"), identify("user-1", "anon-1", minute=1))
    engine.apply(identify("user-2", "anon-1", minute=2), track("user-2", minute=3))
    assert engine.persons() == [
        IDENTIFIED_USER_1,
        {"distinct_ids": ["user-2"], "user_ids": ["user-2"], "is_identified": True},
    ]
    assert engine.links()[-1] == Link(
        "identify", "ingest", "user-2", "anon-1", "C", "refused", "cannot_merge_already_identified"
    )
    assert engine.warnings() == [Warned("cannot_merge_already_identified", ("anon-1", "user-2"))]


@pytest.mark.parametrize(
    "max_user_ids, persons",
    [
        pytest.param(
            1,
            [
                {"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True},
                {"distinct_ids": ["user-2"], "user_ids": ["user-2"], "is_identified": True},
                {"distinct_ids": ["user-3"], "user_ids": ["user-3"], "is_identified": True},
            ],
            id="max-1",
        ),
        pytest.param(
            2,
            [
                {
                    "distinct_ids": ["anon-1", "user-1", "user-2"],
                    "user_ids": ["user-1", "user-2"],
                    "is_identified": True,
                },
                {"distinct_ids": ["user-3"], "user_ids": ["user-3"], "is_identified": True},
            ],
            id="max-2",
        ),
        pytest.param(
            None,
            [
                {
                    "distinct_ids": ["anon-1", "user-1", "user-2", "user-3"],
                    "user_ids": ["user-1", "user-2", "user-3"],
                    "is_identified": True,
                },
            ],
            id="unlimited",
        ),
    ],
)
def test_max_user_ids_bounds_the_user_ids_of_one_person(make_engine, max_user_ids, persons) -> None:
    engine = make_engine(max_user_ids=max_user_ids)
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-1", minute=1))
    engine.apply(identify("user-3", "anon-1", minute=2))
    assert engine.persons() == persons


def test_identify_with_an_illegal_anonymous_id_links_nothing(engine) -> None:
    [result] = engine.apply(identify("user-1", "null", uuid="evt-1"))
    assert result.warnings == [illegal_id("null", "user-1", "evt-1")]
    assert engine.links() == []
    # The event itself is still stored and counted for its own distinct id.
    assert engine.persons() == [{"distinct_ids": ["user-1"], "user_ids": [], "is_identified": False}]
    assert engine.warnings() == [Warned("illegal_distinct_id", ("null", "user-1"))]


def test_identify_with_an_illegal_user_id_leaves_the_visitor_anonymous(engine) -> None:
    engine.apply(track("anon-1"), identify("undefined", "anon-1", minute=1))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["undefined"], "user_ids": [], "is_identified": False},
    ]
    assert engine.warnings() == [Warned("illegal_distinct_id", ("undefined", "anon-1"))]


def test_identify_honours_the_projects_illegal_ids_in_the_store(make_engine) -> None:
    engine = make_engine(illegal_ids=["test-user"], illegal_id_patterns=[r"qa-\d+"])
    engine.apply(track("anon-1"), identify("test-user", "anon-1"), identify("user-1", "qa-12"))
    assert engine.links() == []
    assert engine.warnings() == [
        Warned("illegal_distinct_id", ("test-user", "anon-1")),
        Warned("illegal_distinct_id", ("qa-12", "user-1")),
    ]


@pytest.mark.parametrize(
    "before, link",
    [
        pytest.param([], Link("identify", "ingest", "user-1", None, "A", "created", None), id="unseen-user-id"),
        pytest.param(
            [track("user-1")], Link("identify", "ingest", "user-1", None, "D", "already_linked", None),
            id="seen-user-id",
        ),
    ],
)
def test_identify_without_anonymous_id_marks_the_user_ids_person_identified(engine, before, link) -> None:
    engine.apply(*before, identify("user-1", minute=1))
    assert engine.persons() == [{"distinct_ids": ["user-1"], "user_ids": ["user-1"], "is_identified": True}]
    assert engine.links() == [link]


@pytest.mark.parametrize("before", [pytest.param([], id="unseen-id"), pytest.param([track("user-1")], id="seen-id")])
def test_identify_with_the_same_id_twice_changes_nothing_but_its_attributes(engine, before) -> None:
    # Row 0, as PostHog: no link, no user id, not identified; the event's own `$set` still applies.
    engine.apply(*before, identify("user-1", "user-1", minute=1, set={"plan": "pro"}))
    assert engine.persons() == [{"distinct_ids": ["user-1"], "user_ids": [], "is_identified": False}]
    assert engine.properties("user-1") == {"plan": "pro"}
    assert (engine.links(), engine.warnings()) == ([], [])


def test_identify_without_anonymous_id_is_a_plain_event_when_the_project_says_so(make_engine) -> None:
    engine = make_engine(identify_without_anonymous_id="plain_event")
    engine.apply(identify("user-1", set={"plan": "pro"}), identify("user-2", "anon-2", minute=1))
    assert engine.persons() == [
        {"distinct_ids": ["anon-2", "user-2"], "user_ids": ["user-2"], "is_identified": True},
        {"distinct_ids": ["user-1"], "user_ids": [], "is_identified": False},
    ]
    assert engine.properties("user-1") == {"plan": "pro"}
    assert engine.links() == [Link("identify", "ingest", "user-2", "anon-2", "A", "created", None)]


def test_a_personless_identify_is_refused_whatever_identify_without_anonymous_id_says(make_engine) -> None:
    # PostHog drops every `$identify` marked `$process_person_profile: false`, with or without an anonymous id.
    engine = make_engine(identify_without_anonymous_id="plain_event")
    [result] = engine.apply(identify("user-1", process_person=False))
    assert result.rejection is not None
    assert (engine.persons(), engine.event_ids()) == ([], [])


def test_identify_alone_refuses_a_second_user_id_for_a_person(engine) -> None:
    # user-2 was aliased into user-1's person; naming it as a user id too would give two.
    engine.apply(identify("user-1", "anon-1"), alias("user-1", "user-2", minute=1))
    [result] = engine.apply(identify("user-2", minute=2, uuid="evt-2"))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "user-1", "user-2"], "user_ids": ["user-1"], "is_identified": True}
    ]
    assert [w.type for w in result.warnings] == [WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED]
    assert engine.links()[-1] == Link(
        "identify", "ingest", "user-2", None, "D", "refused", "cannot_merge_already_identified"
    )


def test_identify_without_user_id_only_sets_attributes_on_the_visitors_own_person(engine) -> None:
    # Hotjar's hj('identify', null, attrs).
    engine.apply(track("anon-1"), identify(None, "anon-1", minute=1, set={"plan": "pro"}))
    assert engine.persons() == [{"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False}]
    assert engine.properties("anon-1") == {"plan": "pro"}
    assert engine.links() == []


def test_identify_on_a_personless_event_is_refused_and_dead_lettered(engine) -> None:
    [result] = engine.apply(identify("user-1", "anon-1", process_person=False, uuid="evt-1"))
    assert result.rejection == Rejection("an identity operation cannot be marked $process_person_profile: false")
    assert result.warnings == [
        WarningRecord(WarningType.IDENTITY_ON_PERSONLESS_EVENT, ("user-1",), {"event": "$identify"}, "evt-1")
    ]
    assert engine.dead_letters() == ["an identity operation cannot be marked $process_person_profile: false"]
    assert (engine.persons(), engine.links(), engine.event_ids()) == ([], [], [])


def test_identify_event_may_carry_the_email_of_the_person_it_identifies(engine) -> None:
    engine.apply(
        track("anon-1", set={"email": "ada@example.com"}, uuid="evt-anon"),
        identify("user-1", "anon-1", minute=1, set={"email": "ada@example.com"}),
    )
    assert engine.properties("user-1") == {"email": "ada@example.com"}
    assert engine.warnings() == [Warned("pii_on_anonymous", ("anon-1",))]
