"""Debian's Chromium driven by Python playwright, for every browser suite (tests/ui, tests/sdk,
tests/compat); Playwright never downloads a browser of its own.

A missing browser or playwright is a failure, never a skip: `make test` installs both
(scripts/test-deps and requirements.lock), so a skip would only hide that the browser tests
did not run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@contextmanager
def chromium_browser(extra_args: Sequence[str] = ()) -> Iterator[Any]:
    """A launched Chromium for one module (Playwright's sync API keeps an event loop on the main
    thread while it runs, so a fixture using it is module-scoped)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/test-deps)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"playwright is missing ({error}): install requirements.lock into the virtualenv")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
