"""The words the UI shows for what idstitch decided: warning types, link outcomes, what may
still happen to a person (identity-rules.md §3), what an identity change would do, and the
project's identity rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from idstitch.id_rules import ANONYMOUS_ID, EMAIL, USER_ID, IdentityRules, Limit
from idstitch.ids import is_illegal_for_identity
from idstitch.outcomes import WarningType
from idstitch.settings import ProjectSettings

WARNING_TYPES: dict[str, str] = {
    WarningType.ILLEGAL_DISTINCT_ID: "An identify or alias named a generic id (null, guest, 0, … or one of your own additions, or an id an identity rule blocks); nothing was linked.",
    WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED: "The link would have joined two identified users, or given a person more user ids than max_user_ids allows.",
    WarningType.IDENTITY_RULE_LIMIT: "The link would have given a person more ids of a kind than one of your identity rules allows; the id of the lower-priority kind was dropped and kept a person of its own.",
    WarningType.MERGE_REQUIRES_SECRET_KEY: "$merge_dangerously arrived with the public ingest token and the project does not allow it.",
    WarningType.IDENTITY_ON_PERSONLESS_EVENT: "An identify or alias was marked $process_person_profile: false; it was dead-lettered.",
    WarningType.PROPERTY_TYPE_MISMATCH: "A value did not match its key's declared type and was dropped.",
    WarningType.PII_OUTSIDE_EMAIL: "An email address under a key other than email was dropped.",
    WarningType.PII_ON_ANONYMOUS: "An email for a person not identified was dropped.",
    WarningType.ATTRIBUTES_DISABLED: "Attribute operations arrived while attributes are switched off.",
    WarningType.PROPERTY_LIMIT_EXCEEDED: "A key, a value or a person's attributes went over a limit; the operation was dropped.",
    WarningType.INVALID_OPERATION: "add on a non-number, or a list operation on a non-list.",
}

OUTCOMES: dict[str, str] = {
    "created": "created a new person owning both ids",
    "attached": "attached an id to the existing person",
    "merged": "merged one person into the other",
    "already_linked": "both ids already belonged to this person",
    "refused": "refused",
    "split": "split off into a person of its own",
    "deleted": "deleted",
    "imported": "imported",
    "undone": "undone",
}


def warning_description(kind: str) -> str:
    return WARNING_TYPES.get(kind, "")


def outcome_description(outcome: str) -> str:
    """`merged` as words; a refusal as its reason alone (the page marks it refused)."""
    head, _, reason = outcome.partition(":")
    if head == "refused":
        return reason or "refused"
    text = OUTCOMES.get(head, head)
    return f"{text}: {reason}" if reason else text


@dataclass(frozen=True, slots=True)
class Restriction:
    """One line of "what may still happen to this person", with whether it is a refusal."""

    text: str
    refused: bool


def merge_restrictions(
    user_ids: Sequence[str], distinct_ids: Sequence[str], is_identified: bool, settings: ProjectSettings
) -> list[Restriction]:
    """Whether identify, alias and merge can still join this person to another (rows A-F)."""
    lines: list[Restriction] = []
    limit = settings.max_user_ids
    if is_identified:
        named = ", ".join(user_ids) if user_ids else "a user id that was later split off"
        lines.append(Restriction(
            f"Identified as {named}: an identify or alias that would join it with another identified person is"
            " refused (row F, warning cannot_merge_already_identified); both persons stay apart.",
            refused=True,
        ))
        if limit is None:
            lines.append(Restriction("max_user_ids = unlimited: an identify may add further user ids to it.", refused=False))
        elif len(user_ids) >= limit:
            lines.append(Restriction(
                f"max_user_ids = {limit}, and it holds {len(user_ids)}: an identify naming another user id on one of"
                " its ids is refused, and that user id becomes a person of its own.",
                refused=True,
            ))
        else:
            lines.append(Restriction(
                f"max_user_ids = {limit}, and it holds {len(user_ids)}: it can take {limit - len(user_ids)} more.",
                refused=False,
            ))
        lines.append(Restriction(
            "Anonymous persons can still be merged into it: an identify or alias naming one of their ids"
            " moves their history here (row E).",
            refused=False,
        ))
    else:
        lines.append(Restriction(
            "Anonymous: an identify or alias naming one of its ids makes it identified (rows C, D) or merges it"
            " into the identified person (row E).",
            refused=False,
        ))
    if settings.allow_merge_over_ingest:
        lines.append(Restriction("$merge_dangerously over the ingest token is allowed for this project.", refused=False))
    else:
        lines.append(Restriction(
            "$merge_dangerously over the ingest token is refused (merge_requires_secret_key); an admin merge"
            " with a secret key (POST /api/persons/merge) can still join it to any person.",
            refused=True,
        ))
    illegal = [d for d in distinct_ids if is_illegal_for_identity(d, settings.illegal)]
    if illegal:
        lines.append(Restriction(
            f"Its ids {', '.join(illegal)} are illegal for identity: they are never linked (illegal_distinct_id).",
            refused=True,
        ))
    return lines


# -- identity changes (operations.IdentityChange.to_json()) ----------------------------------


def change_sentences(change: Mapping[str, Any]) -> list[str]:
    """What a dry run would change, a plain sentence a line, naming persons as the UI does."""
    persons = {p["id"]: p for p in (*change["persons_before"], *change["persons_after"])}

    def name(person_id: str | None) -> str:
        return persons[person_id]["display_name"] if person_id in persons else "no person"

    def held(person_id: str) -> str:
        return ", ".join(persons[person_id]["distinct_ids"])

    lines = [f"A person {name(p)} would be created, holding {held(p)}." for p in change["created"]]
    lines += [f"The person {name(p)} would be gone (it held {held(p)})." for p in change["deleted"]]
    lines += [
        f"Id {m['distinct_id']} would move from {name(m['from_person_id'])} to {name(m['to_person_id'])}."
        for m in change["moved_ids"]
    ]
    lines += [_attribute_sentence(name(a["person_id"]), a) for a in change["attribute_changes"]]
    lines += [
        f"{name(i['person_id'])} would be {'identified' if i['is_identified'] else 'anonymous'}."
        for i in change["identified_changes"]
    ]
    lines += [
        f"Entry #{entry['id']} of the link log would read “{outcome_description(entry['after'])}”"
        f" instead of “{outcome_description(entry['before'])}”."
        for entry in change["links_changed"]
    ]
    logged = Counter(link["kind"] for link in change["links"])
    lines += [f"The link log would get {_count(n, f'{kind} entry', f'{kind} entries')}." for kind, n in logged.items()]
    lines += [f"Warning {w['type']} would be recorded: {warning_description(w['type'])}" for w in change["warnings"]]
    return lines or ["Nothing would change."]


def change_summary(change: Mapping[str, Any]) -> str:
    """What a change did, as counts in one line (the notice after it)."""
    parts = [
        _count(len(change["created"]), "person created", "persons created"),
        _count(len(change["deleted"]), "person removed", "persons removed"),
        _count(len(change["moved_ids"]), "id moved", "ids moved"),
        _count(len(change["attribute_changes"]), "attribute changed", "attributes changed"),
        _count(len(change["links_changed"]), "entry re-decided", "entries re-decided"),
        _count(len(change["warnings"]), "warning", "warnings"),
    ]
    return ", ".join(part for part in parts if part) or "nothing changed"


def _attribute_sentence(person: str, change: Mapping[str, Any]) -> str:
    key, before, after = change["key"], _shown(change["before"]), _shown(change["after"])
    if change["before"] is None:
        return f"{person} would get {key} {after}."
    if change["after"] is None:
        return f"{person} would lose {key} (now {before})."
    return f"{person}: {key} would be {after} (now {before})."


def _shown(value: Any) -> str:
    return f"“{value}”" if isinstance(value, str) else msgspec.json.encode(value).decode()


def _count(n: int, one: str, many: str) -> str:
    if n == 0:
        return ""
    return f"1 {one}" if n == 1 else f"{n} {many}"


# -- identity rules (identity-rules.md §3 "Identity rules") ----------------------------------


def rule_sentences(rules: IdentityRules) -> list[str]:
    """The project's identity rules, a sentence each; none when it has none."""
    lines = [f"Kind {k.name}: the ids in which the pattern {k.pattern} is found." for k in rules.kinds]
    for kind, blocked in rules.blocked.items():
        parts = [", ".join(sorted(blocked.values))] if blocked.values else []
        parts += [f"ids matching {pattern}" for pattern in blocked.patterns]
        lines.append(f"Never linked, of kind {kind}: {'; '.join(parts)}.")
    lines += [_limit_sentence(limit) for limit in rules.limits]
    if rules.limits or rules.priority:
        kinds = sorted((USER_ID, *(k.name for k in rules.kinds), EMAIL, ANONYMOUS_ID), key=rules.rank)
        lines.append(f"Priority, highest first (a link over a limit drops the id of the lower kind): {', '.join(kinds)}.")
    return lines


def _limit_sentence(limit: Limit) -> str:
    ids = "id" if limit.max == 1 else "ids"
    when = "ever" if limit.window_days is None else f"joined within {_count(limit.window_days, 'day', 'days')}"
    return f"At most {limit.max} {limit.kind} {ids} per person, {when}."
