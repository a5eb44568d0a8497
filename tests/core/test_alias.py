"""alias(target, source): joins two ids by the same table as identify, but never names a user id
(identity-rules.md §3; PostHog `$create_alias`, Segment `alias`)."""

from __future__ import annotations

import pytest

from idstitch.identity import Action, Decision, Holder, LinkKind, decide_link
from idstitch.outcomes import LinkOutcome
from tests.core.harness import Link, Warned, alias, identify, track
from tests.core.holders import anonymous, cannot_merge, identified, illegal_id

pytestmark = pytest.mark.both_stores


def decide_alias(target: Holder | None, source: Holder | None, *, max_user_ids: int | None = 1,
                 target_id: str = "anon-1", source_id: str = "anon-2") -> Decision:
    return decide_link(LinkKind.ALIAS, target_id, source_id, target, source, max_user_ids=max_user_ids)


@pytest.mark.parametrize(
    "target_id, source_id, target, source, expected",
    [
        pytest.param("anon-1", "anon-1", None, None, Decision("0", Action.NOTHING, None), id="row-0-same-id"),
        pytest.param(
            "anon-1", "guest", None, None,
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("guest", "anon-1"),)),
            id="row-0-illegal-source",
        ),
        pytest.param(
            "'null'", "anon-2", None, anonymous("p-anon-2"),
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("'null'", "anon-2"),)),
            id="row-0-illegal-target",
        ),
        pytest.param(
            "null", "null", None, None,
            Decision("0", Action.NOTHING, None, warnings=(illegal_id("null", "null"),)),
            id="row-0-same-illegal-id",
        ),
        pytest.param(
            "anon-1", "anon-2", None, None, Decision("A", Action.CREATE_BOTH, LinkOutcome.CREATED, False, True),
            id="row-A",
        ),
        pytest.param(
            "anon-1", "anon-2", anonymous("p-1"), None,
            Decision("B", Action.ATTACH_SOURCE, LinkOutcome.ATTACHED, False, True),
            id="row-B",
        ),
        pytest.param(
            "anon-1", "anon-2", None, anonymous("p-2"),
            Decision("C", Action.ATTACH_TARGET, LinkOutcome.ATTACHED, False, True),
            id="row-C",
        ),
        pytest.param(
            "anon-1", "anon-2", None, identified("p-2", id_is_user_id=False),
            Decision("C", Action.ATTACH_TARGET, LinkOutcome.ATTACHED, False, True),
            id="row-C-into-identified-person",
        ),
        pytest.param(
            "anon-1", "anon-2", anonymous("p-1"), anonymous("p-1"),
            Decision("D", Action.MARK, LinkOutcome.ALREADY_LINKED, False, True),
            id="row-D",
        ),
        pytest.param(
            "anon-1", "anon-2", anonymous("p-1"), anonymous("p-2"),
            Decision("E", Action.MERGE, LinkOutcome.MERGED, False, True),
            id="row-E",
        ),
        pytest.param(
            "anon-1", "anon-2", anonymous("p-1"), identified("p-2", id_is_user_id=False),
            Decision("F", Action.REFUSE, LinkOutcome.REFUSED, False, True, (cannot_merge("anon-2", "anon-1"),)),
            id="row-F",
        ),
        pytest.param(
            "anon-1", "anon-2", anonymous("p-1"), identified("p-2", 0),
            Decision("F", Action.REFUSE, LinkOutcome.REFUSED, False, True, (cannot_merge("anon-2", "anon-1"),)),
            id="row-F-source-identified-by-an-earlier-alias",
        ),
    ],
)
def test_alias_follows_the_decision_table(
    target_id: str, source_id: str, target: Holder | None, source: Holder | None, expected: Decision
) -> None:
    assert decide_alias(target, source, target_id=target_id, source_id=source_id) == expected


@pytest.mark.parametrize("max_user_ids", [1, 2, None])
@pytest.mark.parametrize(
    "target, source, row, action",
    [
        pytest.param(None, None, "A", Action.CREATE_BOTH, id="row-A"),
        pytest.param(identified("p-1", id_is_user_id=False), None, "B", Action.ATTACH_SOURCE, id="row-B"),
        pytest.param(None, identified("p-2", id_is_user_id=False), "C", Action.ATTACH_TARGET, id="row-C"),
        pytest.param(
            identified("p-1", id_is_user_id=False), identified("p-1", id_is_user_id=False), "D", Action.MARK, id="row-D"
        ),
        pytest.param(identified("p-1", id_is_user_id=False), anonymous("p-2"), "E", Action.MERGE, id="row-E"),
    ],
)
def test_alias_never_makes_user_ids_so_never_hits_max_user_ids(
    max_user_ids: int | None, target: Holder | None, source: Holder | None, row: str, action: Action
) -> None:
    decision = decide_alias(target, source, max_user_ids=max_user_ids)
    assert (decision.row, decision.action, decision.target_becomes_user_id, decision.warnings) == (
        row, action, False, (),
    )


# -- the engine ------------------------------------------------------------------------------


def test_alias_of_two_anonymous_persons_merges_them_without_a_user_id(engine) -> None:
    engine.apply(track("anon-1", set={"plan": "free"}), track("anon-2", minute=1, set={"browser": "firefox"}))
    engine.apply(alias("anon-1", "anon-2", minute=2))
    assert engine.persons() == [{"distinct_ids": ["anon-1", "anon-2"], "user_ids": [], "is_identified": True}]
    assert engine.properties("anon-2") == {"plan": "free", "browser": "firefox"}
    assert engine.links() == [Link("alias", "ingest", "anon-1", "anon-2", "E", "merged", None)]


def test_alias_attaches_a_new_id_to_an_identified_person(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), alias("user-1", "crm-77", minute=1))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "crm-77", "user-1"], "user_ids": ["user-1"], "is_identified": True}
    ]
    assert engine.links()[-1] == Link("alias", "ingest", "user-1", "crm-77", "B", "attached", None)


def test_alias_of_two_unseen_ids_creates_one_identified_person_with_no_user_id(engine) -> None:
    engine.apply(alias("anon-1", "anon-2"))
    assert engine.persons() == [{"distinct_ids": ["anon-1", "anon-2"], "user_ids": [], "is_identified": True}]
    assert engine.links() == [Link("alias", "ingest", "anon-1", "anon-2", "A", "created", None)]


def test_alias_refuses_to_join_an_identified_person_to_another(engine) -> None:
    engine.apply(identify("user-1", "anon-1"), identify("user-2", "anon-2"))
    engine.apply(alias("user-2", "anon-1", minute=1))
    assert engine.persons() == [
        {"distinct_ids": ["anon-1", "user-1"], "user_ids": ["user-1"], "is_identified": True},
        {"distinct_ids": ["anon-2", "user-2"], "user_ids": ["user-2"], "is_identified": True},
    ]
    assert engine.links()[-1] == Link(
        "alias", "ingest", "user-2", "anon-1", "F", "refused", "cannot_merge_already_identified"
    )
    assert engine.warnings() == [Warned("cannot_merge_already_identified", ("anon-1", "user-2"))]


def test_alias_with_an_illegal_id_warns_and_links_nothing(engine) -> None:
    engine.apply(track("anon-1"), alias("anon-1", "undefined", minute=1), alias("null", "null", minute=2))
    assert engine.links() == []
    assert engine.warnings() == [
        Warned("illegal_distinct_id", ("undefined", "anon-1")),
        Warned("illegal_distinct_id", ("null", "null")),
    ]
    assert engine.persons() == [
        {"distinct_ids": ["anon-1"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["null"], "user_ids": [], "is_identified": False},
    ]


def test_alias_on_a_personless_event_is_refused_and_dead_lettered(engine) -> None:
    [result] = engine.apply(alias("anon-1", "anon-2", process_person=False))
    assert [w.type.value for w in result.warnings] == ["identity_on_personless_event"]
    assert (engine.persons(), engine.links(), len(engine.dead_letters())) == ([], [], 1)


def test_a_person_identified_by_alias_alone_may_hold_an_email(engine) -> None:
    # posthog-js `alias('crm-42')` identifies the browser's person; PostHog keeps her email.
    engine.apply(track("anon-1"), alias("anon-1", "crm-42", minute=1), track("anon-1", minute=2, set={"email": "ada@example.com"}))
    assert engine.properties("crm-42") == {"email": "ada@example.com"}
    assert engine.warnings() == []
