"""Project settings: defaults, validation with messages naming key and value, derived policies."""

from __future__ import annotations

import pytest

from idstitch.attributes import AttributePolicy, AttributeType
from idstitch.errors import InvalidSetting
from idstitch.id_rules import Blocked, CustomKind, IdentityRules, Limit
from idstitch.ids import is_illegal_for_identity
from idstitch.settings import DEFAULT_PROJECT_SETTINGS, PROJECT_SETTINGS, project_settings_from_json


def test_defaults_follow_the_rules() -> None:
    assert DEFAULT_PROJECT_SETTINGS.to_json() == {
        "person_profiles": "always",
        "attributes_enabled": True,
        "pii_guard": True,
        "max_user_ids": 1,
        "allow_merge_over_ingest": False,
        "identify_without_anonymous_id": "user_id",
        "illegal_ids": [],
        "illegal_id_patterns": [],
        "identity_rules": {},
        "property_types": {},
        "max_keys_per_person": 1000,
        "max_key_length": 200,
        "max_string_length": 65535,
        "max_properties_bytes": 524288,
        "events_retention_days": None,
    }
    assert DEFAULT_PROJECT_SETTINGS.attribute_policy == AttributePolicy()
    assert [s.name for s in PROJECT_SETTINGS] == list(DEFAULT_PROJECT_SETTINGS.to_json())


def test_updated_settings_reach_the_attribute_policy_and_illegal_ids() -> None:
    settings = DEFAULT_PROJECT_SETTINGS.updated(
        {
            "attributes_enabled": False,
            "max_keys_per_person": 5,
            "property_types": {"seats": "number"},
            "illegal_ids": ["demo"],
            "illegal_id_patterns": [r"qa-\d+"],
            "max_user_ids": None,
        }
    )
    assert settings.attribute_policy == AttributePolicy(
        enabled=False, max_keys=5, declared_types={"seats": AttributeType.NUMBER}
    )
    assert [is_illegal_for_identity(d, settings.illegal) for d in ("demo", "qa-1", "qa-x")] == [True, True, False]
    assert settings.max_user_ids is None
    assert project_settings_from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    "changes, message",
    [
        pytest.param({"max_user_id": 2}, "Unknown setting 'max_user_id'", id="unknown"),
        pytest.param(
            {"max_user_ids": 0}, "Setting 'max_user_ids' has value 0. Expected a whole number of at least 1, or null",
            id="max-user-ids-zero",
        ),
        pytest.param({"max_user_ids": True}, "Setting 'max_user_ids' has value True", id="max-user-ids-boolean"),
        pytest.param(
            {"person_profiles": "never"},
            "Setting 'person_profiles' has value 'never'. Expected one of always, identified_only",
            id="person-profiles",
        ),
        pytest.param(
            {"identify_without_anonymous_id": "posthog"},
            "Setting 'identify_without_anonymous_id' has value 'posthog'. Expected one of user_id, plain_event",
            id="identify-without-anonymous-id",
        ),
        pytest.param({"pii_guard": "yes"}, "Setting 'pii_guard' has value 'yes'. Expected true or false", id="boolean"),
        pytest.param({"max_key_length": -1}, "Setting 'max_key_length' has value -1", id="negative-limit"),
        pytest.param(
            {"illegal_ids": "demo"}, "Setting 'illegal_ids' has value 'demo'. Expected a list of strings",
            id="not-a-list",
        ),
        pytest.param(
            {"illegal_id_patterns": ["("]}, r"Setting 'illegal_id_patterns': regex '\(' does not compile",
            id="bad-pattern",
        ),
        pytest.param(
            {"illegal_id_patterns": ["(a+)+$"]}, r"regex '\(a\+\)\+\$' is refused: nested quantifiers",
            id="catastrophic-pattern-refused-as-by-filters",
        ),
        pytest.param(
            {"illegal_id_patterns": ["(?<=x)y"]}, "lookahead and lookbehind assertions", id="pattern-a-linear-engine-cannot-run",
        ),
        pytest.param({"property_types": {"seats": "int"}}, "Setting 'property_types' has value", id="unknown-type"),
        pytest.param(
            {"events_retention_days": 0},
            "Setting 'events_retention_days' has value 0. Expected a whole number of days from 1 to 36500, or null to"
            " keep events forever",
            id="retention-zero",
        ),
        pytest.param({"events_retention_days": 7.5}, "Setting 'events_retention_days' has value 7.5", id="retention-fraction"),
        pytest.param({"events_retention_days": False}, "Setting 'events_retention_days' has value False", id="retention-boolean"),
        pytest.param({"events_retention_days": 36501}, "Setting 'events_retention_days' has value 36501", id="retention-too-long"),
        pytest.param(
            {"identity_rules": ["user_id"]},
            r"Setting 'identity_rules' has value \['user_id'\]. Expected an object with kinds, blocked, limits, priority",
            id="rules-not-an-object",
        ),
        pytest.param(
            {"identity_rules": {"limit": []}}, "Setting 'identity_rules' has unknown key 'limit'", id="rules-unknown-part",
        ),
        pytest.param(
            {"identity_rules": {"kinds": [{"name": "crm_id", "pattern": "(a+)+$"}]}},
            r"Setting 'identity_rules.kinds\[0\].pattern': regex '\(a\+\)\+\$' is refused: nested quantifiers",
            id="rules-catastrophic-kind-pattern",
        ),
        pytest.param(
            {"identity_rules": {"kinds": [{"name": "email", "pattern": "@"}]}},
            r"Setting 'identity_rules.kinds\[0\].name' has value 'email'. Expected a name no other kind has",
            id="rules-kind-shadows-a-built-in",
        ),
        pytest.param(
            {"identity_rules": {"blocked": {"crm_id": {"values": ["crm_test"]}}}},
            "Setting 'identity_rules.blocked' names the unknown kind 'crm_id'",
            id="rules-blocked-unknown-kind",
        ),
        pytest.param(
            {"identity_rules": {"blocked": {"email": {"patterns": ["(?=x)"]}}}},
            r"Setting 'identity_rules.blocked.email.patterns\[0\]': regex .* lookahead",
            id="rules-blocked-pattern-a-linear-engine-cannot-run",
        ),
        pytest.param(
            {"identity_rules": {"limits": [{"kind": "device_id", "max": 5}]}},
            r"Setting 'identity_rules.limits\[0\].kind' has value 'device_id'. Expected one of the kinds user_id, email,"
            " anonymous_id",
            id="rules-limit-unknown-kind",
        ),
        pytest.param(
            {"identity_rules": {"limits": [{"kind": "anonymous_id", "max": -1}]}},
            r"Setting 'identity_rules.limits\[0\].max' has value -1. Expected a whole number of at least 1",
            id="rules-negative-max",
        ),
        pytest.param(
            {"identity_rules": {"limits": [{"kind": "anonymous_id", "max": 5, "window_days": 0.5}]}},
            r"Setting 'identity_rules.limits\[0\].window_days' has value 0.5",
            id="rules-window-not-whole-days",
        ),
        pytest.param(
            {"identity_rules": {"priority": ["user_id", "crm_id"]}},
            r"Setting 'identity_rules.priority\[1\]' has value 'crm_id'. Expected one of the kinds",
            id="rules-priority-unknown-kind",
        ),
        pytest.param(
            {"identity_rules": {"priority": ["email", "email"]}},
            r"Setting 'identity_rules.priority\[1\]' has value 'email'. Expected each kind at most once",
            id="rules-priority-repeats-a-kind",
        ),
        pytest.param({"property_types": {"seats": "null"}}, "Setting 'property_types' has value", id="null-type"),
    ],
)
def test_a_bad_setting_names_its_key_and_value(changes: dict, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        DEFAULT_PROJECT_SETTINGS.updated(changes)


def test_identity_rules_are_kept_parsed_and_read_back_as_saved() -> None:
    rules = {
        "kinds": [{"name": "crm_id", "pattern": "^crm_"}],
        "blocked": {"crm_id": {"values": ["crm_test"], "patterns": ["^crm_demo"]}},
        "limits": [{"kind": "anonymous_id", "max": 5, "window_days": 7}, {"kind": "user_id", "max": 1}],
        "priority": ["user_id", "crm_id", "email", "anonymous_id"],
    }
    settings = DEFAULT_PROJECT_SETTINGS.updated({"identity_rules": rules})
    assert settings.identity_rules == IdentityRules(
        kinds=(CustomKind("crm_id", "^crm_"),),
        blocked={"crm_id": Blocked(frozenset({"crm_test"}), ("^crm_demo",))},
        limits=(Limit("anonymous_id", 5, 7), Limit("user_id", 1)),
        priority=("user_id", "crm_id", "email", "anonymous_id"),
    )
    assert settings.to_json()["identity_rules"] == rules
    assert project_settings_from_json(settings.to_json()) == settings


def test_retention_keeps_events_forever_unless_set_to_some_days() -> None:
    assert DEFAULT_PROJECT_SETTINGS.events_retention_days is None
    assert DEFAULT_PROJECT_SETTINGS.updated({"events_retention_days": 90}).events_retention_days == 90
    assert DEFAULT_PROJECT_SETTINGS.updated({"events_retention_days": 90}).updated(
        {"events_retention_days": None}).events_retention_days is None
