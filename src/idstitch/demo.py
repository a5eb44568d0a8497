"""Demo data: a month of a small SaaS product's visitors, sent through the real ingest path.

`idstitch demo` builds PostHog capture batches (what posthog-js sends) and hands each one to the
same functions the server's `/batch/` route uses: `posthog.decode_request`, then
`ingest_function` in the one `Writer`. Only the clock is simulated: each batch is "received" a
moment after its last event, so warnings, links and sessions are spread over the month as if
the server had been running all along.

What is in it (for a few hundred visitors, deterministic for a seed):

- anonymous visitors browsing the marketing site in one to three sessions;
- sign-ups: anonymous sessions first (inferred later), then a sign-up session with `$identify`
  (identified), attributes (email, name, plan, company, an avatar URL for most) and app usage;
  some log in on a phone too, some upgrade their plan;
- scripted people the docs and tests name: Ada Lovelace (`user-ada`, ada@example.com, two
  devices, an inferred session on each), Grace Hopper and Alan Turing sharing a kiosk (a refused
  merge), plus a few illegal ids, a `$merge_dangerously` over the public token, and attributes
  the privacy rules drop (warnings of several types).

Avatar URLs point at Gravatar identicons: the UI renders them with `<img src>` and the server
never fetches them.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from idstitch.clock import format_time, utc_now
from idstitch.ingest import posthog
from idstitch.ingest.pipeline import Writer, ingest_function
from idstitch.store.backends import Store
from idstitch.store.projects import Project
from idstitch.store.transactions import claims_for

BATCH_SIZE = 200
BATCH_WINDOW = timedelta(minutes=30)
DAYS = 30
_NAMESPACE = uuid.UUID("6f1c2d1e-3b5a-4f7e-9a51-1d5e0c7a9b42")

FIRST_NAMES = (
    "Amara", "Bjorn", "Chen", "Dara", "Emeka", "Farah", "Gustavo", "Hana", "Ivan", "Jonas", "Kenji", "Lena", "Mateo",
    "Noor", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Okafor", "Lindqvist", "Wei", "Murphy", "Adeyemi", "Haddad", "Pereira", "Sato", "Petrov", "Becker", "Tanaka",
    "Novak", "Garcia", "Rahman", "Ivanova", "Iyer", "Walsh", "Moreno", "Berg", "Aziz", "Nair", "Horvath", "Liu",
)
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", "Tyrell", "Soylent")
PLANS = (("free", 55), ("pro", 30), ("team", 12), ("enterprise", 3))
UPGRADES = {"free": "pro", "pro": "team", "team": "enterprise"}
SITE = "https://www.example.com"
APP = "https://app.example.com"
MARKETING = ("/", "/pricing", "/features", "/blog/identity-resolution", "/docs", "/docs/quickstart", "/customers", "/changelog")
APP_PAGES = ("/app", "/app/dashboards", "/app/persons", "/app/settings", "/app/billing")
APP_EVENTS = ("Created dashboard", "Invited teammate", "Exported CSV", "Connected source")
DEVICES = (
    ("Chrome", "Mac OS X", "Desktop"), ("Safari", "Mac OS X", "Desktop"), ("Firefox", "Windows", "Desktop"),
    ("Edge", "Windows", "Desktop"), ("Chrome", "Linux", "Desktop"),
)
PHONES = (("Mobile Safari", "iOS", "Mobile"), ("Chrome", "Android", "Mobile"))
SOURCES = (None, None, "google", "twitter", "newsletter", "producthunt", "github")


@dataclass(frozen=True, slots=True)
class Device:
    anonymous_id: str
    browser: tuple[str, str, str]


@dataclass(slots=True)
class Timeline:
    """The PostHog events of the whole demo, in creation order (uuids follow that order)."""

    seed: int
    now: datetime
    rng: random.Random
    events: list[dict[str, Any]] = field(default_factory=list)
    # (user id, laptop, time of the sign-up) of each sign-up, for the shared-computer cases.
    signed_up: list[tuple[str, Device, datetime]] = field(default_factory=list)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{uuid.UUID(int=self.rng.getrandbits(128)).hex[:20]}"

    def device(self, phone: bool = False, name: str | None = None) -> Device:
        return Device(name or self.new_id("anon-"), self.rng.choice(PHONES if phone else DEVICES))

    def add(self, at: datetime, distinct_id: str, event: str, device: Device, session: str | None,
            properties: dict[str, Any] | None = None, **top: Any) -> datetime:
        at = min(at, self.now - timedelta(minutes=2))
        browser, os, kind = device.browser
        props: dict[str, Any] = {"$lib": "web", "$browser": browser, "$os": os, "$device_type": kind,
                                 "$device_id": device.anonymous_id}
        if session:
            props["$session_id"] = session
        props.update(properties or {})
        self.events.append({
            "uuid": str(uuid.uuid5(_NAMESPACE, f"{self.seed}:{len(self.events)}")),
            "event": event,
            "distinct_id": distinct_id,
            "timestamp": format_time(at),
            "properties": props,
            **top,
        })
        return at

    def browse(self, at: datetime, distinct_id: str, device: Device, pages: tuple[str, ...], count: int,
               base: str = SITE, first_touch: bool = False, session: str | None = None) -> tuple[datetime, str]:
        """A session of `count` pageviews about a minute apart; returns (its last time, its id)."""
        session = session or self.new_id("sess-")
        for i in range(count):
            props: dict[str, Any] = {"$current_url": base + self.rng.choice(pages)}
            if first_touch and i == 0:
                source = self.rng.choice(SOURCES)
                if source:
                    props.update({"utm_source": source, "$referrer": f"https://{source}.com/"})
            at = self.add(at, distinct_id, "$pageview", device, session, props)
            at += timedelta(seconds=self.rng.randint(20, 180))
        return at, session


def _plan(rng: random.Random) -> str:
    return rng.choices([p for p, _ in PLANS], weights=[w for _, w in PLANS])[0]


def gravatar(email: str) -> str:
    digest = hashlib.md5(email.strip().lower().encode()).hexdigest()  # noqa: S324 - Gravatar's URL scheme
    return f"https://www.gravatar.com/avatar/{digest}?d=identicon&s=128"


def _sign_up(t: Timeline, at: datetime, number: int) -> None:
    rng = t.rng
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first}.{last}{number}@example.com".lower()
    user_id = f"user-{number:04d}"
    plan = _plan(rng)
    laptop = t.device()
    # Anonymous visits first: they become "inferred" once this device identifies.
    for _ in range(rng.randint(1, 2)):
        end, _ = t.browse(at, laptop.anonymous_id, laptop, MARKETING, rng.randint(2, 5), first_touch=True)
        at = end + timedelta(hours=rng.uniform(3, 60))
    if at > t.now - timedelta(hours=2):
        return  # their sign-up would be in the future: they stay an anonymous visitor
    at, session = t.browse(at, laptop.anonymous_id, laptop, ("/pricing", "/signup"), 2)
    attributes: dict[str, Any] = {"email": email, "name": f"{first} {last}", "plan": plan, "company": rng.choice(COMPANIES)}
    if rng.random() < 0.7:
        attributes["avatar"] = gravatar(email)
    at = t.add(at, laptop.anonymous_id, "Signed up", laptop, session, {"plan": plan, "$current_url": SITE + "/signup"})
    t.add(at + timedelta(seconds=2), user_id, "$identify", laptop, session,
          {"$anon_distinct_id": laptop.anonymous_id, "$set": attributes,
           "$set_once": {"first_plan": plan, "signed_up_at": format_time(at)}, "$current_url": APP + "/app"})
    t.signed_up.append((user_id, laptop, at))
    at += timedelta(minutes=3)
    for _ in range(rng.randint(1, 4)):
        at += timedelta(hours=rng.uniform(6, 96))
        if at >= t.now - timedelta(hours=1):
            break
        end, session = t.browse(at, user_id, laptop, APP_PAGES, rng.randint(2, 6), base=APP)
        for _ in range(rng.randint(0, 2)):
            end = t.add(end + timedelta(seconds=30), user_id, rng.choice(APP_EVENTS), laptop, session)
        at = end
    if rng.random() < 0.3:  # the phone: anonymous first, then a login joins it
        phone = t.device(phone=True)
        at += timedelta(hours=rng.uniform(2, 48))
        if at >= t.now - timedelta(days=1):
            return
        end, _ = t.browse(at, phone.anonymous_id, phone, MARKETING, rng.randint(1, 3))
        end, session = t.browse(end + timedelta(hours=rng.uniform(1, 20)), phone.anonymous_id, phone, ("/login",), 1, base=APP)
        t.add(end, user_id, "$identify", phone, session,
              {"$anon_distinct_id": phone.anonymous_id, "$add": {"logins": 1}, "$current_url": APP + "/app"})
        at = end
    if plan in UPGRADES and rng.random() < 0.15:
        at += timedelta(hours=rng.uniform(12, 72))
        if at >= t.now:
            return
        t.add(at, user_id, "Upgraded plan", laptop, t.new_id("sess-"), {"$set": {"plan": UPGRADES[plan]}, "from": plan})


def _anonymous(t: Timeline, at: datetime) -> None:
    rng = t.rng
    device = t.device(phone=rng.random() < 0.35)
    for visit in range(rng.randint(1, 3)):
        if at >= t.now - timedelta(hours=1):
            return
        at, session = t.browse(at, device.anonymous_id, device, MARKETING, rng.randint(1, 6), first_touch=visit == 0)
        if rng.random() < 0.08:  # Hotjar-style identify(null, attrs): attributes for the visitor
            t.add(at, device.anonymous_id, "$set", device, session, {"$set": {"theme": rng.choice(["dark", "light"])}})
        if rng.random() < 0.03:  # a newsletter form that sends the email before any login: dropped
            t.add(at, device.anonymous_id, "Subscribed to newsletter", device, session,
                  {"$set": {"email": f"reader{rng.randint(100, 999)}@example.org"}})
        at += timedelta(hours=rng.uniform(4, 120))


def _scripted(t: Timeline) -> None:
    """The people the README, the docs and the UI tests name."""
    now = t.now
    day = timedelta(days=1)
    # Ada: an anonymous visit on her laptop, a sign-up two days later, then her phone.
    laptop = t.device(name="anon-ada-laptop")
    t.browse(now - 6 * day, "anon-ada-laptop", laptop, ("/", "/pricing", "/features"), 3, first_touch=True, session="sess-ada-first-visit")
    at, _ = t.browse(now - 4 * day, "anon-ada-laptop", laptop, ("/pricing", "/signup"), 2, session="sess-ada-signup")
    ada = {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro", "company": "Analytical Engines",
           "avatar": gravatar("ada@example.com")}
    at = t.add(at, "anon-ada-laptop", "Signed up", laptop, "sess-ada-signup", {"plan": "pro", "$current_url": SITE + "/signup"})
    t.add(at + timedelta(seconds=2), "user-ada", "$identify", laptop, "sess-ada-signup",
          {"$anon_distinct_id": "anon-ada-laptop", "$set": ada, "$set_once": {"first_plan": "pro"}, "$current_url": APP + "/app"})
    at, session = t.browse(now - 3 * day, "user-ada", laptop, APP_PAGES, 4, base=APP)
    t.add(at, "user-ada", "Created dashboard", laptop, session, {"name": "Weekly sign-ups"})
    phone = t.device(phone=True, name="anon-ada-phone")
    t.browse(now - 2 * day, "anon-ada-phone", phone, ("/blog/identity-resolution",), 2, session="sess-ada-phone-browse")
    at, _ = t.browse(now - 1 * day, "anon-ada-phone", phone, ("/login",), 1, base=APP, session="sess-ada-phone-login")
    t.add(at, "user-ada", "$identify", phone, "sess-ada-phone-login",
          {"$anon_distinct_id": "anon-ada-phone", "$add": {"logins": 1}, "$current_url": APP + "/app"})

    # Grace signs in at a shared kiosk; Alan, already a customer, logs in there without a reset:
    # joining two identified users is refused (row F).
    kiosk = t.device(name="anon-shared-kiosk")
    alan_laptop = t.device(name="anon-alan-laptop")
    at, session = t.browse(now - 9 * day, "anon-alan-laptop", alan_laptop, ("/signup",), 1)
    t.add(at, "user-alan", "$identify", alan_laptop, session,
          {"$anon_distinct_id": "anon-alan-laptop", "$set": {"email": "alan@example.com", "name": "Alan Turing", "plan": "team"}})
    at, session = t.browse(now - 8 * day, "anon-shared-kiosk", kiosk, ("/login",), 1, base=APP)
    t.add(at, "user-grace", "$identify", kiosk, session,
          {"$anon_distinct_id": "anon-shared-kiosk", "$set": {"email": "grace@example.com", "name": "Grace Hopper", "plan": "enterprise",
                                                              "avatar": gravatar("grace@example.com")}})
    at, session = t.browse(now - 7 * day, "user-grace", kiosk, APP_PAGES, 2, base=APP)
    t.add(at + timedelta(hours=3), "user-alan", "$identify", kiosk, session, {"$anon_distinct_id": "anon-shared-kiosk"})
    # A support script "merges" them with the public token: refused.
    t.add(now - 6 * day, "user-grace", "$merge_dangerously", kiosk, None, {"alias": "user-alan"})
    # Attributes the privacy rules drop, and an operation on the wrong type.
    t.add(now - 5 * day, "user-grace", "Updated profile", kiosk, None, {"$set": {"backup_contact": "grace.hopper@navy.example"}})
    t.add(now - 2 * day, "user-alan", "Updated profile", alan_laptop, None, {"$add": {"plan": 1}})

    # A buggy integration identifies with generic ids: never linked.
    for i, (user_id, anonymous) in enumerate((("undefined", "anon-buggy-1"), ("user-ok-1", None), ("null", "anon-buggy-2"))):
        device = t.device(name=anonymous or f"anon-buggy-{i + 3}")
        at, session = t.browse(now - (3 + i) * day, device.anonymous_id, device, MARKETING, 2)
        t.add(at, user_id, "$identify", device, session, {"$anon_distinct_id": anonymous})


def _shared_computers(t: Timeline, pairs: int = 3) -> None:
    """Colleagues logging in on each other's laptop without a reset: refused merges (row F)."""
    people = t.signed_up[:]
    t.rng.shuffle(people)
    for (_, laptop, first), (user_id, _, second) in zip(people[0:2 * pairs:2], people[1:2 * pairs:2]):
        at = max(first, second) + timedelta(hours=t.rng.uniform(1, 30))
        session = t.new_id("sess-")
        at = t.add(at, laptop.anonymous_id, "$pageview", laptop, session, {"$current_url": APP + "/login"})
        t.add(at + timedelta(seconds=20), user_id, "$identify", laptop, session, {"$anon_distinct_id": laptop.anonymous_id})


def demo_events(now: datetime, *, visitors: int = 300, seed: int = 7) -> list[dict[str, Any]]:
    """Every demo event as PostHog sends it, oldest first."""
    t = Timeline(seed, now, random.Random(seed))
    for number in range(visitors):
        start = now - timedelta(days=t.rng.uniform(1, DAYS), hours=t.rng.uniform(0, 12))
        if t.rng.random() < 0.42:
            _sign_up(t, start, number)
        else:
            _anonymous(t, start)
    _shared_computers(t)
    _scripted(t)
    return sorted(t.events, key=lambda e: (e["timestamp"], e["uuid"]))


def batches(events: list[dict[str, Any]], token: str, size: int = BATCH_SIZE) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """PostHog `/batch/` bodies of at most `size` events spanning at most BATCH_WINDOW, each
    "received" two seconds after its last event (so links and warnings get their times)."""
    chunk: list[dict[str, Any]] = []
    opened: datetime | None = None
    for event in [*events, None]:
        at = _time(event["timestamp"]) if event is not None else None
        if chunk and (at is None or len(chunk) >= size or opened is None or at - opened > BATCH_WINDOW):
            received = _time(chunk[-1]["timestamp"]) + timedelta(seconds=2)
            yield received, {"api_key": token, "batch": chunk, "sent_at": format_time(received)}
            chunk, opened = [], None
        if event is not None:
            chunk.append(event)
            opened = opened or at


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(slots=True)
class DemoReport:
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    warnings: int = 0


class _Clock:
    """The writer's clock during the load: the simulated receive time of the current batch."""

    def __init__(self) -> None:
        self.moment = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.moment


def load_demo(store: Store, project: Project, *, visitors: int = 300, seed: int = 7, now: datetime | None = None) -> DemoReport:
    """Send the demo through the server's ingest functions into `store` (a running server may
    share it: the writer takes the store's write locks per batch)."""
    now = now or utc_now()
    clock = _Clock()
    writer = Writer(store.write_session(clock), clock)
    report = DemoReport()
    try:
        for received, body in batches(demo_events(now, visitors=visitors, seed=seed), project.ingest_token):
            clock.moment = min(received, now)
            decoded = posthog.decode_request(body, clock.moment)
            results = writer.write_now(
                ingest_function(project.id, project.settings, decoded.commands, decoded.rejected),
                claims=claims_for(project.id, decoded.commands),
            )
            report.events += len(body["batch"])
            report.rejected += len(decoded.rejected) + sum(1 for r in results if r.rejection is not None)
            report.duplicates += sum(1 for r in results if r.duplicate)
            report.accepted += sum(1 for r in results if r.rejection is None and not r.duplicate)
            report.warnings += sum(len(r.warnings) for r in results)
    finally:
        writer.close()
    return report
