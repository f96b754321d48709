"""Browser fixtures: Playwright for Python driving Debian's chromium (never a downloaded
browser) against a real `tokenrelay serve` process. Screenshots go to test-artifacts/."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server_process import ServerProcess, tokenrelay_serve

CHROMIUM = Path(os.environ.get("TOKENRELAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _missing(what: str, fix: str) -> None:
    """Skip on a developer's machine without the browser; fail in CI, where it must be."""
    message = f"{what} is missing: {fix}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, and the asyncio tests of any later module (tests/e2e/test_faults.py, test_nginx.py,
# and everything after tests/e2e) need the thread free again: with a wider scope their
# `asyncio.run` failed, and they skipped (a browser test now sorts before them)
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright (Python package)", "pip install playwright (the dev extra has it)")
    if not CHROMIUM.exists():
        _missing(
            f"chromium at {CHROMIUM}", "run scripts/install-browser.sh (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # a dropped connection must leave the stream running long enough for the page to resume
    env = {
        "TOKENRELAY_DISCONNECT_GRACE_S": "30",
        # the planner's weather tool must not leave this machine: nothing listens on port 9
        "TOKENRELAY_WEATHER_BASE_URL": "http://127.0.0.1:9",
        "TOKENRELAY_GEOCODING_BASE_URL": "http://127.0.0.1:9",
    }
    with tokenrelay_serve(Path(tmp_path_factory.mktemp("web")), env=env) as server:
        yield server


def watched_page(
    browser: Any,
    request: pytest.FixtureRequest,
    *,
    width: int = 1100,
    height: int = 760,
    expected: Callable[[str], bool] = lambda text: False,
) -> Iterator[Any]:
    """A fresh page in a Korean browser: its script errors and console errors fail the test,
    except console lines `expected` accepts; a screenshot is saved at the end. Fixtures yield
    from it (`yield from watched_page(...)`)."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="ko-KR")
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and not expected(msg.text) else None
        ),
    )
    try:
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    assert errors == [], f"the page reported errors: {errors}"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its console errors fail the test; a screenshot is saved at the end."""
    yield from watched_page(browser, request)
