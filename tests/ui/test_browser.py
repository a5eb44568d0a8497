"""The operator's day in a real browser: Debian's Chromium against `idstitch serve` loaded by
`idstitch demo`. Each step saves a screenshot under test-artifacts/ui/ for people to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import ServerProcess
from tests.ui.conftest import UI_SECRET_KEY, loopback_only


def shoot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def sign_in(page: Any, server: ServerProcess, artifacts: Path | None = None) -> None:
    page.goto(server.base_url + "/ui/")
    assert page.url.startswith(server.base_url + "/ui/login")
    if artifacts is not None:
        shoot(page, artifacts, "01-sign-in")
    page.get_by_label("Secret key").fill(UI_SECRET_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/users")


def test_find_a_user_by_email_and_see_their_inferred_sessions(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server, artifacts)
    assert page.get_by_role("heading", name="Users").is_visible()
    assert page.locator("table.list tbody tr").count() == 50
    shoot(page, artifacts, "02-users")

    page.get_by_role("searchbox", name="Search").fill("ada@example.com")
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/users?q=ada%40example.com*")
    assert page.get_by_role("heading", name="Ids and emails matching “ada@example.com”").is_visible()
    shoot(page, artifacts, "03-search-by-email")

    page.get_by_role("link", name="Ada Lovelace").first.click()
    page.wait_for_url("**/ui/persons/*")
    assert page.get_by_role("heading", name="Ada Lovelace").is_visible()
    avatar = page.locator(".profile-head .avatar img")
    assert avatar.get_attribute("src").startswith("https://www.gravatar.com/avatar/")
    assert avatar.evaluate("img => img.complete && img.naturalWidth > 0")  # drawn by the browser from its URL
    ids = page.locator("#ids tbody tr")
    assert ids.count() == 3
    assert "User id" in ids.filter(has_text="user-ada").inner_text()
    first_visit = page.locator("#sessions tbody tr", has_text="sess-ada-first-visit")
    assert first_visit.locator(".badge-inferred").inner_text() == "Inferred"
    signup = page.locator("#sessions tbody tr", has_text="sess-ada-signup")
    assert signup.locator(".badge-identified").inner_text() == "Identified"
    assert "Identified as user-ada" in page.locator("#merging").inner_text()
    assert page.locator("#attributes tbody tr", has_text="email").locator("td").nth(1).inner_text() == "ada@example.com"
    assert page.locator("#links tbody tr").count() == 2
    assert page.locator("#events .timeline li").count() >= 10
    shoot(page, artifacts, "04-person-profile")

    first_visit.get_by_role("link").click()
    page.wait_for_url("**/ui/sessions/sess-ada-first-visit")
    assert "inferred" in page.locator(".explain").inner_text()
    assert page.locator("table.list tbody tr").count() == 3
    shoot(page, artifacts, "05-session")


def test_a_refused_merge_shows_its_warning_in_the_link_log(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server)
    page.goto(demo_server.base_url + "/ui/find?distinct_id=user-alan")
    page.wait_for_url("**/ui/persons/*")
    refused = page.locator("#links tr.refused-row").first
    assert refused.locator(".badge-refused").is_visible()
    assert "cannot_merge_already_identified" in refused.inner_text()
    shoot(page, artifacts, "06-person-refused-merge")


def test_sessions_filtered_to_the_inferred_ones(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server)
    page.get_by_role("link", name="Sessions").click()
    page.wait_for_url("**/ui/sessions")
    page.get_by_label("Inferred").select_option("yes")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/sessions?*inferred=yes*")
    rows = page.locator("table.list tbody tr")
    assert rows.count() > 1
    assert rows.locator(".badge-inferred").count() == rows.count()
    shoot(page, artifacts, "07-sessions-inferred")


def test_warnings_are_grouped_by_type_with_examples(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server)
    page.get_by_role("link", name="Warnings").click()
    page.wait_for_url("**/ui/warnings")
    groups = page.locator("section.warning-group")
    kinds = {groups.nth(i).locator("h2").inner_text() for i in range(groups.count())}
    assert {"cannot_merge_already_identified", "illegal_distinct_id", "merge_requires_secret_key", "pii_on_anonymous"} <= kinds
    group = groups.filter(has_text="illegal_distinct_id")
    assert group.locator(".stats dd").first.inner_text() == "3"
    assert group.locator(".examples li").count() == 3
    assert group.locator("svg.sparkline rect").count() == 14
    shoot(page, artifacts, "08-warnings")


def test_build_a_segment_see_the_chart_and_save_it(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server)
    page.get_by_role("link", name="Segments").click()
    page.wait_for_url("**/ui/segments")
    page.get_by_label("Condition 1: kind").select_option("did")
    page.locator("#key_0").fill("Signed up")
    page.get_by_label("Count", exact=True).select_option("persons")
    page.get_by_label("Of events").fill("Signed up")
    page.get_by_label("Over time").select_option("week")
    page.get_by_label("Break down by attribute").fill("plan")
    page.get_by_role("button", name="Show users and chart").click()
    page.wait_for_url("**/ui/segments?*breakdown=plan*")
    chart = page.locator("svg#chart-time")
    assert chart.get_attribute("role") == "img"
    assert "by plan" in chart.locator("title").first.text_content()
    assert chart.locator("rect").count() >= 4
    legend = page.locator(".legend").inner_text()
    assert "pro" in legend and "free" in legend
    totals = page.locator("svg#chart-breakdown")
    assert totals.locator("rect").count() >= 3
    assert int(page.locator("#matching-title .count").inner_text()) >= 10
    assert page.locator("[data-answered-by]").inner_text().startswith("From the analytics copy (duckdb)")
    shoot(page, artifacts, "09-segment-chart")

    # While the next chart is on its way the page says so (the submit held back here to look).
    busy = page.evaluate("""() => {
        const form = document.querySelector("form.builder");
        form.addEventListener("submit", (event) => event.preventDefault(), {once: true});
        const button = [...form.querySelectorAll("button")].find((b) => b.textContent.includes("Show users and chart"));
        form.requestSubmit(button);
        return [document.getElementById("results").getAttribute("aria-busy"), button.textContent];
    }""")
    assert busy == ["true", "Loading…"]
    page.reload()

    page.get_by_label("Name").fill("Signed up, by plan")
    page.get_by_role("button", name="Save segment").click()
    page.wait_for_url("**/ui/segments?segment_id=*")
    assert page.locator(".notice").inner_text() == "Segment saved."
    assert page.locator(".saved-list li.current").inner_text().startswith("Signed up, by plan")
    assert page.locator("#key_0").input_value() == "Signed up"  # the saved filter, back in the form
    shoot(page, artifacts, "10-segment-saved")


def test_settings_show_the_tokens_and_a_new_key_once(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server)
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url("**/ui/settings")
    assert page.locator(".token").first.inner_text() == demo_server.ingest_token
    page.get_by_label("Label for a new key").fill("browser-test")
    page.get_by_role("button", name="Create secret key").click()
    secret = page.locator("#new-secret").input_value()
    assert secret.startswith("sk_")
    shoot(page, artifacts, "11-settings-new-key")
    page.goto(demo_server.base_url + "/ui/settings")
    assert secret not in page.content()


def test_turning_attributes_on_asks_for_the_privacy_confirmation(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    page = browser_page
    sign_in(page, demo_server)
    page.goto(demo_server.base_url + "/ui/settings")
    page.get_by_label("Collect user attributes").uncheck()
    page.get_by_role("button", name="Save settings").click()
    assert page.locator(".notice").inner_text() == "Settings saved."
    confirmation = page.get_by_label("I confirm that collecting these attributes complies with my privacy policy", exact=False)
    assert confirmation.is_visible()
    shoot(page, artifacts, "12-settings-attributes-off")

    page.get_by_label("Collect user attributes").check()
    page.get_by_role("button", name="Save settings").click()
    assert "tick the privacy confirmation" in page.get_by_role("alert").inner_text()
    page.get_by_label("Collect user attributes").check()
    page.get_by_label("I confirm that collecting", exact=False).check()
    page.get_by_role("button", name="Save settings").click()
    assert page.locator(".notice").inner_text() == "Settings saved."
    assert page.get_by_label("Collect user attributes").is_checked()


def test_the_keyboard_reaches_everything_with_visible_focus(browser_page: Any, demo_server: ServerProcess):
    page = browser_page
    sign_in(page, demo_server)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.id")
    assert focused == "q"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_signing_out_returns_to_the_sign_in_page(browser_page: Any, demo_server: ServerProcess):
    page = browser_page
    sign_in(page, demo_server)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login?signed_out=1")
    page.goto(demo_server.base_url + "/ui/users")
    assert "/ui/login" in page.url


def overflow(page: Any) -> int:
    """How far the page scrolls sideways (0 when it fits the window)."""
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


def kiosk_merge(server: ServerProcess) -> str:
    """Ann and Bob each log in at the shop's kiosk; an operator merges Bob into Ann by mistake.
    Answers the merged person's id."""
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        ingest = {"Authorization": f"Bearer {server.ingest_token}"}
        for message in (
            {"user_id": "ann-kiosk", "anonymous_id": "shop-kiosk-3", "set": {"name": "Ann Archer", "plan": "pro"}},
            {"user_id": "bob-kiosk", "anonymous_id": "bob-kiosk-phone", "set": {"name": "Bob Baker", "plan": "free"}},
        ):
            assert http.post("/ingest/identify", json=message, headers=ingest).status_code == 200
        merged = http.post("/api/persons/merge", json={"target_distinct_id": "ann-kiosk", "source_distinct_id": "bob-kiosk"},
                           headers={"Authorization": f"Bearer {server.secret_key}"})
    assert merged.status_code == 200, merged.text
    return str(merged.json()["id"])


def test_the_operator_previews_and_undoes_a_wrong_merge(browser_page: Any, demo_server: ServerProcess, artifacts: Path):
    person_id = kiosk_merge(demo_server)
    page = browser_page
    sign_in(page, demo_server)
    page.goto(f"{demo_server.base_url}/ui/persons/{person_id}")
    assert page.get_by_role("heading", name="Ann Archer").is_visible()
    merge_row = page.locator("#links tbody tr", has_text="bob-kiosk").filter(has_text="merge")
    merge_row.get_by_role("link", name="Undo").click()

    page.wait_for_url("**/ui/links/*/undo?person_id=*")
    assert page.get_by_role("heading", name="Undo entry #").is_visible()
    after = page.locator("section[aria-labelledby=after-title] tbody tr")
    assert after.count() == 2
    assert "plan pro" in after.filter(has_text="Ann Archer").inner_text()
    assert "bob-kiosk, bob-kiosk-phone" in after.filter(has_text="Bob Baker").inner_text()
    shoot(page, artifacts, "13-undo-preview")
    page.set_viewport_size({"width": 390, "height": 844})
    assert overflow(page) <= 0, "the undo preview scrolls sideways on a phone"
    page.set_viewport_size({"width": 1280, "height": 900})

    page.locator("form.confirm").get_by_role("button", name="Undo entry #").click()
    page.wait_for_url(f"**/ui/persons/{person_id}?notice=*")
    assert "undone" in page.locator(".notice").inner_text()
    assert page.get_by_role("heading", name="Ann Archer").is_visible()
    assert "undone (by #" in page.locator("#links tbody tr", has_text="bob-kiosk").filter(has_text="merge").inner_text()
    assert page.locator("#ids tbody tr").count() == 2
    assert page.locator("#attributes tbody tr", has_text="plan").locator("td").nth(1).inner_text() == "pro"
    shoot(page, artifacts, "14-undone-ann")

    page.locator(".affected").get_by_role("link", name="Bob Baker").click()
    page.wait_for_url("**/ui/persons/*")
    assert page.get_by_role("heading", name="Bob Baker").is_visible()
    assert {page.locator("#ids tbody tr td").nth(i * 6).inner_text() for i in range(2)} == {"bob-kiosk", "bob-kiosk-phone"}
    assert page.locator("#attributes tbody tr", has_text="plan").locator("td").nth(1).inner_text() == "free"
    shoot(page, artifacts, "15-undone-bob")


def test_pages_fit_a_phone_screen(chromium: Any, demo_server: ServerProcess, artifacts: Path):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.route("**/*", loopback_only(demo_server.base_url))
    page = context.new_page()
    try:
        sign_in(page, demo_server)
        for name, path in (("users", "/ui/users"), ("person", "/ui/find?distinct_id=user-ada"),
                           ("sessions", "/ui/sessions"), ("warnings", "/ui/warnings"),
                           ("segments", "/ui/segments?rows=1&kind_0=attribute&key_0=plan&op_0=is_set&breakdown=plan&action=build"),
                           ("settings", "/ui/settings"), ("rules", "/ui/rules"),
                           ("merge", "/ui/find?distinct_id=user-ada"), ("split", "/ui/find?distinct_id=user-ada")):
            page.goto(demo_server.base_url + path)
            if name in ("merge", "split"):  # the person's own forms, from its page
                page.goto(page.url + ("/merge?q=user-alan&source=user-alan" if name == "merge" else "/split"))
            assert overflow(page) <= 0, f"{path} scrolls sideways by {overflow(page)}px on a phone"
            page.screenshot(path=str(artifacts / f"narrow-{name}.png"))
    finally:
        context.close()
