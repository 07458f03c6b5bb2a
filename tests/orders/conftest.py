"""The orders suites' webhook fixtures: Celery workers of their own with short retry
schedules (the real retry path, in seconds instead of a day), each on a queue of its own so
the session's shared worker never takes their deliveries, and a real receiver on loopback."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings

from tests.processes import ChildProcess, start_worker

from .receiver import Receiver

PATIENT = {
    # A receiver down for a while: 40 retries a few tenths of a second apart, never a dead
    # letter while the test waits for every delivery to have failed, then brings it back.
    "WEBHOOKS_RETRY_DELAYS_SECONDS": ",".join(["0.3"] * 40),
    "WEBHOOKS_RETRY_JITTER": "0.5",
    "WEBHOOKS_PAUSE_AFTER_FAILURES": "100000",
    "WEBHOOKS_TIMEOUT_SECONDS": "5",
}
SHORT = {
    # Four attempts, then a dead letter; six failures in a row pause the endpoint.
    "WEBHOOKS_RETRY_DELAYS_SECONDS": "0.1,0.1,0.1",
    "WEBHOOKS_RETRY_JITTER": "0",
    "WEBHOOKS_PAUSE_AFTER_FAILURES": "6",
    "WEBHOOKS_PAUSE_AFTER_SECONDS": "0",
    "WEBHOOKS_TIMEOUT_SECONDS": "5",
}


def new_secret() -> str:
    """A Standard Webhooks secret (the conftest loads before Django: no import of the app)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _worker(name: str, schedule: dict[str, str], *, pool: str = "solo") -> ChildProcess:
    queue = f"{name}-{os.getpid()}"
    return start_worker(name=name, queue=queue, pool=pool, WEBHOOKS_QUEUE=queue, **schedule)


@pytest.fixture(scope="session")
def patient_worker(django_db_setup: None) -> Iterator[ChildProcess]:
    child = _worker("webhooks-patient", PATIENT)
    yield child
    child.stop()


@pytest.fixture(scope="session")
def short_worker(django_db_setup: None) -> Iterator[ChildProcess]:
    child = _worker("webhooks-short", SHORT)
    yield child
    child.stop()


def deliveries_to(worker: ChildProcess, settings: Settings) -> None:
    """This process sends its delivery tasks to ``worker``'s queue, with its schedule."""
    settings.WEBHOOKS_QUEUE = worker.env["WEBHOOKS_QUEUE"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(secret=new_secret()).start()
    yield found
    found.release()
    found.stop()
