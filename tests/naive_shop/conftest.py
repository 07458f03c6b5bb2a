"""Fixtures of the benchmark's tests: the baseline endpoints mounted, in-process and served."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from django.urls import clear_url_caches
from pytest_django.fixtures import Settings

import flashsale_project.urls
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web


def _reload_urls() -> None:
    importlib.reload(flashsale_project.urls)
    clear_url_caches()


@pytest.fixture
def bench_endpoints(settings: Settings) -> Iterator[None]:
    """``FLASHSALE_BENCH_ENDPOINTS`` on for this test's in-process requests (the URLconf is
    read once, so it is reloaded both ways)."""
    settings.FLASHSALE_BENCH_ENDPOINTS = True
    _reload_urls()
    yield
    settings.FLASHSALE_BENCH_ENDPOINTS = False
    _reload_urls()


@pytest.fixture(scope="module")
def bench_web(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian (two workers) with the baseline endpoints mounted, admission limits off."""
    child = start_web(env={**OPEN_ADMISSION, "FLASHSALE_BENCH_ENDPOINTS": "1"})
    yield child
    child.stop()
