"""Project settings: defaults, validation with messages naming key and value, derived policies."""

from __future__ import annotations

import pytest

from idstitch.attributes import AttributePolicy, AttributeType
from idstitch.errors import InvalidSetting
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
        "property_types": {},
        "max_keys_per_person": 1000,
        "max_key_length": 200,
        "max_string_length": 65535,
        "max_properties_bytes": 524288,
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
        pytest.param({"property_types": {"seats": "null"}}, "Setting 'property_types' has value", id="null-type"),
    ],
)
def test_a_bad_setting_names_its_key_and_value(changes: dict, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        DEFAULT_PROJECT_SETTINGS.updated(changes)
