"""The browser SDK in Chromium against a real `idstitch serve`, from a page on another origin.

Every wait polls with a bound (conftest.poll); nothing sleeps for a fixed time.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sdk.conftest import INGEST_TOKEN, Idstitch, Site, poll

pytestmark = pytest.mark.timeout(120)

STATE_COOKIE = f"idstitch_{INGEST_TOKEN}"
PENDING_MESSAGES = "Object.keys(localStorage).filter(k => k.includes('_q_')).length"


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    load(page, url)
    return page


def load(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("window.idstitch && window.idstitch.loaded === true", timeout=10_000)


def follow(page: Any, url: str) -> None:
    """Navigate as a link would, so the next page has a referrer."""
    with page.expect_navigation():
        page.evaluate("url => { location.href = url; }", url)
    page.wait_for_function("window.idstitch && window.idstitch.loaded === true", timeout=10_000)


def drained(page: Any) -> bool:
    """Every queued message was answered with a 2xx (the SDK read the status across origins)."""
    return page.evaluate(PENDING_MESSAGES) == 0


@pytest.fixture
def pages(site: Site, idstitch: Idstitch) -> Site:
    site.api_url = idstitch.url
    site.options = {"flushInterval": 50}
    return site


def test_anonymous_page_views_join_the_person_at_login(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/landing?utm_source=newsletter&utm_campaign=spring&gclid=g-1"))
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    follow(page, pages.url("/pricing"))
    assert page.evaluate("idstitch.identify('user-ada', {plan: 'pro'})") is True
    page.evaluate("idstitch.track('Started trial', {days: 14})")

    events = poll(lambda: (e := idstitch.events("user-ada")) and len(e) == 4 and e, "four events on user-ada")
    person = idstitch.person("user-ada")
    assert [e["event"] for e in events] == ["$pageview", "$pageview", "$identify", "Started trial"]
    assert [e["distinct_id"] for e in events] == [anonymous_id, anonymous_id, "user-ada", "user-ada"]
    assert sorted(person["distinct_ids"]) == sorted([anonymous_id, "user-ada"])
    assert person["is_identified"] is True
    assert person["user_ids"] == ["user-ada"]
    properties = person["properties"]
    assert properties["plan"] == "pro"
    assert properties["$initial_utm_source"] == "newsletter"
    assert properties["$initial_utm_campaign"] == "spring"
    assert properties["$initial_gclid"] == "g-1"
    assert properties["$initial_pathname"] == "/landing"
    assert properties["$initial_referrer"] == "$direct"
    assert properties["$initial_host"] == f"shop.idstitch.test:{pages.port}"
    # idstitch.js sends the user agent; the server reads the device from it (ua-parser).
    assert properties["$initial_browser"] == properties["$browser"]
    assert (properties["$os"], properties["$device_type"]) == ("Linux", "Desktop")
    assert properties["$pathname"] == events[-1]["properties"]["$pathname"]
    assert len({e["session_id"] for e in events}) == 1 and events[0]["session_id"]
    assert events[0]["properties"]["$lib"] == "idstitch-js"
    assert events[1]["properties"]["$referrer"] == pages.url("/landing?utm_source=newsletter&utm_campaign=spring&gclid=g-1")
    poll(lambda: drained(page), "the queue to drain")
    context.close()


def test_two_devices_of_one_user_end_as_one_person(browser, pages: Site, idstitch: Idstitch):
    laptop, phone = browser.new_context(), browser.new_context()
    anonymous_ids = []
    for context in (laptop, phone):
        page = open_page(context, pages.url("/"))
        anonymous_ids.append(page.evaluate("idstitch.getAnonymousId()"))
        page.evaluate("idstitch.identify('user-bo')")
    assert anonymous_ids[0] != anonymous_ids[1]

    person = poll(
        lambda: (p := idstitch.person("user-bo")) and len(p["distinct_ids"]) == 3 and p, "both devices on user-bo"
    )
    assert sorted(person["distinct_ids"]) == sorted([*anonymous_ids, "user-bo"])
    assert idstitch.event_names("user-bo").count("$pageview") == 2
    laptop.close()
    phone.close()


def test_logout_then_another_user_on_the_same_browser_gives_two_persons(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/"))
    first_anonymous = page.evaluate("idstitch.getAnonymousId()")
    device = page.evaluate("idstitch.getDeviceId()")
    first_session = page.evaluate("idstitch.getSessionId()")
    page.evaluate("idstitch.identify('user-cy'); idstitch.track('Cy was here')")
    page.evaluate("idstitch.reset()")  # logout
    second_anonymous = page.evaluate("idstitch.getAnonymousId()")
    assert second_anonymous != first_anonymous
    assert page.evaluate("idstitch.getSessionId()") != first_session
    assert page.evaluate("idstitch.getDeviceId()") == device  # reset() keeps the device
    assert page.evaluate("idstitch.getUserId()") is None
    load(page, pages.url("/login"))
    page.evaluate("idstitch.identify('user-di'); idstitch.track('Di was here')")
    # Identifying as someone else while identified starts a new visitor too (Heap).
    page.evaluate("idstitch.identify('user-ed')")
    third_anonymous = page.evaluate("idstitch.getAnonymousId()")
    assert third_anonymous not in (first_anonymous, second_anonymous)
    page.evaluate("idstitch.reset(true)")
    assert page.evaluate("idstitch.getDeviceId()") != device

    cy, di, ed = (
        poll(lambda: idstitch.person(user), f"person {user}") for user in ("user-cy", "user-di", "user-ed")
    )
    poll(lambda: "Di was here" in idstitch.event_names("user-di"), "Di's event")
    assert len({cy["id"], di["id"], ed["id"]}) == 3
    assert sorted(cy["distinct_ids"]) == sorted([first_anonymous, "user-cy"])
    assert sorted(di["distinct_ids"]) == sorted([second_anonymous, "user-di"])
    assert sorted(ed["distinct_ids"]) == sorted([third_anonymous, "user-ed"])
    assert idstitch.event_names("user-cy") == ["$pageview", "$identify", "Cy was here"]
    assert idstitch.event_names("user-di") == ["$pageview", "$identify", "Di was here"]
    poll(lambda: drained(page), "the queue to drain")
    context.close()


def test_calls_made_before_the_script_loads_are_delivered_in_order(browser, pages: Site, idstitch: Idstitch):
    pages.inline["/early"] = (
        "idstitch('track', 'first', {n: 1}); idstitch('identify', 'user-fay', {plan: 'free'});"
        " idstitch('track', 'second'); idstitch('setAttributes', {step: 3}); idstitch('track', 'third');"
        " window.queuedBeforeLoad = idstitch.q.length;"
    )
    context = browser.new_context()
    page = open_page(context, pages.url("/early"))
    assert page.evaluate("window.queuedBeforeLoad") == 6  # init and five calls waited for the script

    names = poll(lambda: (n := idstitch.event_names("user-fay")) and len(n) == 6 and n, "six events on user-fay")
    assert names == ["$pageview", "first", "$identify", "second", "$set", "third"]
    assert idstitch.person("user-fay")["properties"]["step"] == 3
    uuids = [e["uuid"] for e in idstitch.events("user-fay")]
    assert uuids == sorted(uuids)  # UUIDv7s minted in call order
    context.close()


def test_no_event_is_lost_while_the_server_is_down(browser, site: Site, idstitch_later: Idstitch):
    server = idstitch_later  # its port is chosen, nothing listens on it yet
    site.api_url = server.url
    site.script_url = site.url("/idstitch.js")  # the site serves the SDK itself: the API is down
    site.options = {"flushInterval": 50, "maxBackoff": 1000}
    context = browser.new_context()
    page = open_page(context, site.url("/a"))
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    page.evaluate("idstitch.track('down-1')")
    load(page, site.url("/a"))  # a reload: the queue lives in localStorage
    page.evaluate("idstitch.track('down-2'); idstitch.identify('user-gil', {plan: 'pro'})")
    load(page, site.url("/b"))
    assert page.evaluate(PENDING_MESSAGES) >= 1

    server.start()
    expected = ["$pageview", "down-1", "$pageview", "down-2", "$identify", "$pageview"]
    names = poll(lambda: (n := idstitch_later.event_names("user-gil")) and len(n) >= 6 and n, "the queued events")
    assert names == expected  # each exactly once, in order
    assert idstitch_later.person("user-gil")["properties"]["plan"] == "pro"
    assert anonymous_id in idstitch_later.person("user-gil")["distinct_ids"]
    poll(lambda: drained(page), "the queue to drain")

    # Stopped and restarted on the same data directory: the same again.
    server.stop()
    page.evaluate("idstitch.track('during-restart')")
    load(page, site.url("/c"))
    server.start()
    names = poll(lambda: (n := server.event_names("user-gil")) and len(n) >= 8 and n, "events sent during the restart")
    assert names == [*expected, "during-restart", "$pageview"]
    poll(lambda: drained(page), "the queue to drain")
    context.close()


def test_a_message_queued_as_the_page_goes_away_still_arrives(browser, pages: Site, idstitch: Idstitch):
    pages.options = {"flushInterval": 60_000, "pageview": False}  # only the pagehide path can send it
    context = browser.new_context()
    page = open_page(context, pages.url("/leaving"))
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    page.evaluate("idstitch.track('Clicked away')")
    page.goto("about:blank")
    assert poll(lambda: idstitch.event_names(anonymous_id), "the event sent on pagehide") == ["Clicked away"]
    context.close()


def test_subdomains_share_the_anonymous_id_through_the_cookie(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/", host="a.shop"))
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    session_id = page.evaluate("idstitch.getSessionId()")
    cookies = [c for c in context.cookies() if c["name"] == STATE_COOKIE]
    assert [c["domain"] for c in cookies] == [".idstitch.test"]  # the widest domain Chromium accepts
    assert not [c for c in context.cookies() if c["name"].endswith("_probe")]

    other = open_page(context, pages.url("/", host="b.shop"))
    assert other.evaluate("idstitch.getAnonymousId()") == anonymous_id
    assert other.evaluate("idstitch.getSessionId()") == session_id  # tabs share the session

    # Cookies cleared: localStorage brings the id back, and the cookie with it.
    context.clear_cookies()
    load(page, pages.url("/again", host="a.shop"))
    assert page.evaluate("idstitch.getAnonymousId()") == anonymous_id
    assert [c["domain"] for c in context.cookies() if c["name"] == STATE_COOKIE] == [".idstitch.test"]

    person = poll(
        lambda: (p := idstitch.person(anonymous_id)) and len(idstitch.events(anonymous_id)) == 3 and p,
        "three page views on one person",
    )
    assert person["distinct_ids"] == [anonymous_id]
    context.close()


def test_illegal_ids_are_refused_in_the_page_with_a_warning(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/"))
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    for bad in ("'null'", "'undefined'", "' '", "0", "'\"guest\"'", "'[object Object]'", "true"):
        assert page.evaluate(f"idstitch.identify({bad})") is False, bad
    page.evaluate("idstitch.track('still counted')")
    assert page.evaluate("idstitch.getUserId()") is None

    poll(lambda: len(warnings) == 7, "seven console warnings")
    assert warnings[0] == '[idstitch] identify refused: "null" is a generic id and cannot name a user'
    names = poll(lambda: (n := idstitch.event_names(anonymous_id)) and len(n) == 2 and n, "two events")
    assert names == ["$pageview", "still counted"]
    assert idstitch.person(anonymous_id)["is_identified"] is False
    warned = [w for w in idstitch.get("/api/warnings").json()["results"] if anonymous_id in w["distinct_ids"]]
    assert warned == []  # no refused identify reached the server
    context.close()


def test_attributes_on_the_anonymous_visitor_and_their_operations(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/"))
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    page.evaluate(
        """
        idstitch.identify(null, {theme: 'dark'});            // Hotjar: attributes, no user id
        idstitch.setAttributesOnce({first_seen_on: 'home'});
        idstitch.setAttributesOnce({first_seen_on: 'later'});
        idstitch.setAttributes({plan: 'free', temp: 1});
        idstitch.addUserProperties({plan: 'trial'});          // Heap's name for setAttributes
        idstitch.unsetAttributes('temp');
        idstitch.increment('visits');
        idstitch.increment({visits: 2, credits: 10});
        """
    )
    expected = {"theme": "dark", "first_seen_on": "home", "plan": "trial", "visits": 3, "credits": 10}
    person = poll(
        lambda: (p := idstitch.person(anonymous_id)) and p["properties"].get("credits") == 10 and p,
        "the attributes",
    )
    assert {k: v for k, v in person["properties"].items() if not k.startswith("$")} == expected
    assert person["is_identified"] is False
    context.close()


def test_alias_joins_another_id_of_the_user(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/"))
    page.evaluate("idstitch.identify('user-hu'); idstitch.alias('legacy-7')")
    person = poll(lambda: (p := idstitch.person("legacy-7")) and p, "the alias")
    assert "user-hu" in person["distinct_ids"]
    context.close()


def test_opt_out_stops_sending_until_opt_in(browser, pages: Site, idstitch: Idstitch):
    context = browser.new_context()
    page = open_page(context, pages.url("/"))
    anonymous_id = page.evaluate("idstitch.getAnonymousId()")
    poll(lambda: drained(page), "the first page view to be sent")
    page.evaluate("idstitch.opt_out(); idstitch.track('hidden'); idstitch.identify('user-iz')")
    load(page, pages.url("/still-out"))  # the choice survives a reload; no page view either
    page.evaluate("idstitch.opt_in(); idstitch.track('visible')")
    names = poll(lambda: "visible" in (n := idstitch.event_names(anonymous_id)) and n, "the event after opt_in")
    assert names == ["$pageview", "visible"]
    assert idstitch.person("user-iz") is None
    context.close()


def test_hotjar_heap_and_highlight_calls_work_unchanged(browser, pages: Site, idstitch: Idstitch):
    # Hotjar's own stub, called before any script loaded: its queue is replayed.
    pages.inline["/hotjar"] = (
        "window.hj = window.hj || function () { (hj.q = hj.q || []).push(arguments); };"
        " hj('identify', 'user-jo', {plan: 'team'});"
    )
    calls = {
        "/hotjar": "",
        "/heap": "heap.identify('user-ko'); heap.addUserProperties({tier: 'gold'}); heap.track('Heap event', {a: 1});",
        "/highlight": "H.init('highlight-project', {networkRecording: true}); H.start(); H.identify('user-lu', {highlightDisplayName: 'Lu'});",
    }
    for path, call in calls.items():
        context = browser.new_context()
        page = open_page(context, pages.url(path))
        if call:
            page.evaluate(call)
        if path == "/heap":
            page.evaluate("heap.resetIdentity()")
            assert page.evaluate("idstitch.getUserId()") is None
        context.close()

    assert poll(lambda: idstitch.person("user-jo"), "user-jo")["properties"]["plan"] == "team"
    ko = poll(lambda: (p := idstitch.person("user-ko")) and "tier" in p["properties"] and p, "user-ko")
    assert ko["properties"]["tier"] == "gold"
    assert "Heap event" in poll(lambda: idstitch.event_names("user-ko"), "Heap's event")
    lu = poll(lambda: idstitch.person("user-lu"), "user-lu")
    assert lu["display_name"] == "Lu"
