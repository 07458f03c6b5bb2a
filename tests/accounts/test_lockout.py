"""Sign-in cannot be turned against a shopper (issue: "after 10 failed passwords for one
username, that account's correct password is refused for 15 minutes"). Against the suite's
granian server with the default throttles; each party is a loopback address of its own
(127.0.0.0/8 is all loopback), which the server sees as the peer."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from accounts.throttles import login_attempt_slowed
from tests.clients import purchase
from tests.factories import make_sale, make_shopper
from tests.processes import Child

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests-1"  # tests.factories.make_user's


def _client(server: Child, address: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_an_attackers_failures_from_one_address_do_not_stop_the_owner_from_another(web_server: Child) -> None:
    # Given a shopper with a token, and an attacker who knows their username
    user, token = make_shopper()
    sale = make_sale(stock=5)
    base = f"127.{random.randint(10, 250)}.{random.randint(0, 250)}"
    attacker, owner = f"{base}.2", f"{base}.3"

    # When the attacker fails 12 passwords from one address (more than LOGIN_THROTTLE_ACCOUNT's 10)
    with _client(web_server, attacker) as http:
        guesses = [
            http.post("/api/auth/token/", json={"username": user.username, "password": f"guess{n}"}).status_code
            for n in range(12)
        ]
    # Then the owner signs in from another address, at once
    with _client(web_server, owner) as http:
        signed_in = http.post("/api/auth/token/", json={"username": user.username, "password": PASSWORD})
        renewed = http.post("/api/auth/token/", headers={"Authorization": f"Token {token}"})
    # ... the token they held buys as before
    bought = purchase(web_server, sale.pk, token)
    # ... and from the attacker's address the right password is answered later, not refused
    with _client(web_server, attacker) as http:
        started = time.monotonic()
        from_attacker = http.post("/api/auth/token/", json={"username": user.username, "password": PASSWORD})
        waited = time.monotonic() - started

    assert guesses[:10] == [400] * 10
    assert set(guesses[10:]) == {400}  # slower, never 429
    assert signed_in.status_code == 200, signed_in.text
    assert not login_attempt_slowed(client_ip=owner, username=user.username)
    assert renewed.status_code == 200
    assert bought.status_code == 201, bought.text
    assert from_attacker.status_code == 200
    assert waited >= 2.0  # LOGIN_SLOW_SECONDS' default
