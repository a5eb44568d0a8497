"""The device and campaign properties a client did not send, read from what it did send.

posthog-js sends `$browser`, `$os`, `$device_type` and the campaign keys of the page itself.
Other clients send less: idstitch.js, Segment (`context.userAgent`) and server-side SDKs send only
a user agent (`$raw_user_agent`), and server-side SDKs only the page's URL (`$current_url`). We
fill in the same keys posthog-js would have sent, so first_touch.py lifts them onto the person
whichever client spoke. A key the client sent is never replaced. User agents are parsed with
ua-parser (the maintained uap-core rules), cached, since one browser sends the same one all day.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ua_parser import parse

from idstitch.first_touch import CAMPAIGN_KEYS

# Longer user agents are not parsed (a real one is a few hundred characters).
MAX_USER_AGENT_LENGTH = 1000
_DEVICE_KEYS = ("$browser", "$browser_version", "$os", "$os_version", "$device_type")
_HOST_KEYS = ("$os", "$os_version")
_TABLETS = ("iPad", "Tablet", "Kindle", "Nexus 7", "Nexus 9", "Nexus 10")


def with_device_and_campaign(properties: dict[str, Any]) -> dict[str, Any]:
    """`properties` with what its user agent and URL say added (a new dict only if anything is)."""
    added: dict[str, Any] = {}
    user_agent = properties.get("$raw_user_agent")
    if isinstance(user_agent, str):
        # A server SDK sends its own host's `$os` (posthog-python): the user agent is the visitor's.
        server = properties.get("$is_server") is True
        sent = [key for key in _DEVICE_KEYS if key in properties and not (server and key in _HOST_KEYS)]
        if not sent:
            added.update(device_properties(user_agent))
    url = properties.get("$current_url")
    if isinstance(url, str) and not any(key in properties for key in CAMPAIGN_KEYS):
        added.update(campaign_properties(url))
    return {**properties, **added} if added else properties


@lru_cache(maxsize=4096)
def device_properties(user_agent: str) -> dict[str, Any]:
    """posthog-js's names for what a user agent says: browser, OS, their versions, device type."""
    if not user_agent or len(user_agent) > MAX_USER_AGENT_LENGTH:
        return {}
    result = parse(user_agent)
    found: dict[str, Any] = {}
    if result.user_agent is not None and result.user_agent.family != "Other":
        found["$browser"] = result.user_agent.family
        version = _browser_version(result.user_agent.major, result.user_agent.minor)
        if version is not None:
            found["$browser_version"] = version
    if result.os is not None and result.os.family != "Other":
        found["$os"] = result.os.family
        parts = [p for p in (result.os.major, result.os.minor, result.os.patch) if p]
        if parts:
            found["$os_version"] = ".".join(parts)
    device = result.device.family if result.device is not None else "Other"
    if found and device != "Spider":  # a crawler, an HTTP library: no device a person holds
        found["$device_type"] = _device_type(user_agent, device, found.get("$os"))
    return found


def campaign_properties(url: str) -> dict[str, str]:
    """The UTM parameters and click ids in a URL's query (the first of each, non-empty)."""
    try:
        query = urlsplit(url).query
    except ValueError:  # an invalid IPv6 host: there is no query to read
        return {}
    found: dict[str, str] = {}
    for name, value in parse_qsl(query):
        if name in CAMPAIGN_KEYS and value and name not in found:
            found[name] = value
    return found


def _browser_version(major: str | None, minor: str | None) -> int | float | None:
    # posthog-js sends a number: 124 for Chrome 124.0.6367.91, 17.4 for Safari 17.4.
    if not major or not major.isdigit():
        return None
    if minor and minor.isdigit() and int(minor):
        return float(f"{major}.{minor}")
    return int(major)


def _device_type(user_agent: str, device: str, os: Any) -> str:
    if any(name in device or name in user_agent for name in _TABLETS):
        return "Tablet"
    if os == "Android" and "Mobile" not in user_agent:
        return "Tablet"  # Android tablets leave "Mobile" out of their user agent
    if device not in ("Other", "Mac") or "Mobile" in user_agent:
        return "Mobile"
    return "Desktop"
