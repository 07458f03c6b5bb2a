"""The live stack the storefront's end-to-end tests run against, all real processes:
granian (WSGI, serving ``/static/`` from a collectstatic output as ``make run`` does),
uvicorn (the WebSockets), the session's Celery worker (for the tests with a ``page``); and
Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from playwright.sync_api import Browser, Page, sync_playwright

from tests.processes import OPEN_ADMISSION, ROOT, ChildProcess, start_web, start_ws

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


@dataclass(frozen=True)
class Stack:
    web: ChildProcess
    ws: ChildProcess

    @property
    def url(self) -> str:
        return self.web.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws.port}"


@pytest.fixture(scope="session")
def collected_static() -> Iterator[Path]:
    """``collectstatic`` into a directory of this session (not the checkout's staticfiles/)."""
    with tempfile.TemporaryDirectory(prefix="flashsale-static-") as directory:
        with override_settings(STATIC_ROOT=directory):
            call_command("collectstatic", interactive=False, verbosity=0)
        yield Path(directory)


@pytest.fixture(scope="session")
def ws_server(django_db_setup: None) -> Iterator[ChildProcess]:
    child = start_ws(env=OPEN_ADMISSION)
    yield child
    child.stop()


@pytest.fixture(scope="session")
def storefront_stack(ws_server: ChildProcess, collected_static: Path) -> Iterator[Stack]:
    web = start_web(
        env={**OPEN_ADMISSION, "FLASHSALE_WS_URL": f"ws://127.0.0.1:{ws_server.port}"},
        static_root=collected_static,
    )
    yield Stack(web=web, ws=ws_server)
    web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Playwright's sync API leaves its event loop marked as running on this thread, which
    # Django takes for an async context and refuses the ORM. The tests call the ORM only
    # between Playwright calls, never inside its loop, so the check is off while it runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def screenshot(page: object, name: str) -> Path:
    """Keep a picture of the page as a test artifact (``artifacts/`` is git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


SLOW = 30_000  # ms: the machine is shared; a state may take a while to arrive.


@pytest.fixture
def page(browser: Browser, storefront_stack: Stack, celery_worker: ChildProcess) -> Iterator[Page]:
    """A browser tab on the live stack, its orders drained by the worker; any JavaScript error
    on it fails the test."""
    context = browser.new_context(base_url=storefront_stack.url, viewport={"width": 1100, "height": 760})
    context.set_default_timeout(SLOW)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], "JavaScript errors on the page"
