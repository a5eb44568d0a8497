"""The identity rules page: the project's `identity_rules` (identity-rules.md §3 "Identity rules"),
`max_user_ids` and illegal ids in plain sentences, a form to change them, and a preview of what
the changed settings would have done over the last days of the link log (POST /api/rules/preview's
replay) before they are saved. Saving goes through `PATCH /api/project/settings`'s handler.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from idstitch.errors import RequestError
from idstitch.server import api_routes, ui_forms
from idstitch.server.http_errors import status_of
from idstitch.server.identity_routes import preview_rule_change
from idstitch.server.ui_auth import UIRoute, require_form, require_key, state_of
from idstitch.server.ui_forms import FormError
from idstitch.server.ui_pages import page, redirect
from idstitch.settings import ProjectSettings
from idstitch.store.projects import SecretKey
from idstitch.web.descriptions import rule_sentences

router = APIRouter(route_class=UIRoute, include_in_schema=False)

DEFAULT_DAYS = "30"
FIELDS = ("identity_rules", "max_user_ids", "illegal_ids", "illegal_id_patterns")


def _typed(settings: ProjectSettings) -> dict[str, str]:
    """The form's fields as the settings of now fill them."""
    return {
        "identity_rules": ui_forms.pretty(settings.identity_rules.to_json()),
        "max_user_ids": "" if settings.max_user_ids is None else str(settings.max_user_ids),
        "illegal_ids": "\n".join(settings.illegal_ids),
        "illegal_id_patterns": "\n".join(settings.illegal_id_patterns),
        "days": DEFAULT_DAYS,
    }


def _rules_page(request: Request, key: SecretKey, status_code: int = 200, **context: Any) -> Response:
    settings = state_of(request).project(key.project_id).settings
    context.setdefault("fields", _typed(settings))
    context.setdefault("problems", {})
    context.setdefault("preview", None)
    return page(request, key, "rules.html", "rules", status_code=status_code, title="Identity rules", settings=settings,
                rules=rule_sentences(settings.identity_rules), **context)


@router.get("/ui/rules")
async def rules_form(request: Request) -> Response:
    key = await require_key(request)
    return _rules_page(request, key)


@router.post("/ui/rules")
async def rules_post(request: Request) -> Response:
    """`action=preview`: what the typed settings would have done over the last `days`; else save them."""
    key, form = await require_form(request)
    current = state_of(request).project(key.project_id).settings
    typed = {name: form.get(name) for name in (*FIELDS, "days")}
    changes, problems = ui_forms.rules_changes(form, current)
    try:
        days = ui_forms.days(form.get("days", DEFAULT_DAYS))
    except FormError as error:
        problems["days"] = str(error)
    if problems:
        return _rules_page(request, key, 400, fields=typed, problems=problems,
                           error="Nothing was saved or previewed: see the fields marked below.")
    if form.get("action") == "preview":
        try:
            preview = await preview_rule_change(state_of(request), key.project_id, changes, days)
        except RequestError as error:
            return _rules_page(request, key, status_of(error), fields=typed, error=str(error))
        return _rules_page(request, key, fields=typed, preview=preview.to_json(), changes=changes, days=days)
    if not changes:
        return redirect("/ui/rules?notice=Nothing+changed.")
    try:
        # The API's own handler: ProjectSettings.updated, save through the writer, audit.
        await api_routes.patch_settings(request, key, changes)
    except HTTPException as error:
        return _rules_page(request, key, error.status_code, fields=typed, error=str(error.detail))
    return redirect("/ui/rules?notice=Rules+saved.")
