"""Access tokens: verified in process (no Redis, no SQL), refused once expired, once their
key is retired, and once revoked, in every process, by the revocation's message (no process
waits for a timer or a restart to hear it; how long the message takes is the machine's)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from accounts.revocation import revocations, user_tokens_revoke
from accounts.selectors import user_id_for_token
from accounts.services import user_deactivate
from accounts.tokens import TokenRefused, access_token_issue, access_token_verify
from core.errors import Unauthenticated
from core.events import subscription
from core.redis_store import RedisUnavailable, inventory_redis
from core.steps import drive
from devstack.localservers import LocalRedis
from tests.clients import purchase
from tests.factories import auth, make_sale, make_shopper, make_shoppers, make_user
from tests.polling import wait_for
from tests.processes import ChildProcess

pytestmark = pytest.mark.django_db


def test_a_token_names_its_user_and_verifies_without_any_network_call(own_redis: LocalRedis) -> None:
    issued = access_token_issue(user_id=42)
    before = int(inventory_redis().info("stats")["total_commands_processed"])

    claims = access_token_verify(issued.token)

    after = int(inventory_redis().info("stats")["total_commands_processed"])
    assert claims.user_id == 42
    assert after - before == 1  # The INFO that read `before`.


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token.replace(".42.", ".43.", 1),  # Another user.
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # Another signature.
        lambda token: "v2" + token[2:],
        lambda token: token + ".",
        lambda token: "é" + token,
        lambda token: "\ud800" + token,
        lambda token: token * 4,
    ],
)
def test_a_forged_token_is_refused(tamper: Callable[[str], str]) -> None:
    token = access_token_issue(user_id=42).token
    with pytest.raises(TokenRefused):
        access_token_verify(tamper(token))


def test_an_expired_token_is_refused_at_its_expiry() -> None:
    issued = access_token_issue(user_id=7, now=1_000_000.0)
    assert access_token_verify(issued.token, now=issued.expires_at - 1).user_id == 7
    with pytest.raises(TokenRefused, match="expired"):
        access_token_verify(issued.token, now=issued.expires_at)


def test_retiring_a_key_refuses_its_tokens_and_the_next_key_signs() -> None:
    with override_settings(ACCESS_TOKEN_KEYS=["old:first-secret"]):
        old = access_token_issue(user_id=7).token
    with override_settings(ACCESS_TOKEN_KEYS=["new:second-secret", "old:first-secret"]):
        assert access_token_verify(old).user_id == 7  # Still listed: still valid.
        new = access_token_issue(user_id=7).token
    with override_settings(ACCESS_TOKEN_KEYS=["new:second-secret"]):
        with pytest.raises(TokenRefused, match="retired key"):
            access_token_verify(old)
        assert access_token_verify(new).user_id == 7
    assert new.split(".")[1] == "new"


def test_the_purchase_path_refuses_an_expired_token_with_401(client: Client) -> None:
    sale = make_sale()
    user, _ = make_shopper()
    expired = access_token_issue(user_id=user.pk, now=time.time() - 7200).token

    response = purchase(client, sale.pk, expired)

    assert response.status_code == 401
    assert response.json() == {"status": "UNAUTHENTICATED", "detail": "The token has expired; ask for a new one."}


def test_bearer_works_like_token(client: Client) -> None:
    sale = make_sale()
    _, token = make_shopper()
    response = purchase(client, sale.pk, None, Authorization=f"Bearer {token}")
    assert response.status_code == 201


def test_a_revoked_token_is_refused_in_this_process_and_a_new_one_works(client: Client) -> None:
    sale = make_sale(stock=5)
    assert subscription.wait_until_live()
    user, token = make_shopper()

    user_tokens_revoke(user_id=user.pk)
    # Asked without buying (the orders list checks the same token), so no purchase can slip in first.
    wait_for(lambda: client.get("/api/orders/", headers=auth(token)).status_code == 401, what="the revocation")
    fresh = client.post(
        "/api/auth/token/", {"username": user.username, "password": "pw-for-tests-1"}, content_type="application/json"
    )

    assert purchase(client, sale.pk, token).json()["detail"] == "The token was revoked; ask for a new one."
    assert purchase(client, sale.pk, fresh.json()["token"]).status_code == 201


def test_a_process_that_starts_after_a_revocation_loads_it() -> None:
    user, token = make_shopper()
    user_tokens_revoke(user_id=user.pk)
    revocations.forget()  # As a process that was not listening then.

    drive(revocations.reload_steps())

    with pytest.raises(Unauthenticated, match="revoked"):
        user_id_for_token(token)


@pytest.mark.django_db(transaction=True)
def test_revocation_reaches_every_web_process(web_server: ChildProcess) -> None:
    sale = make_sale(stock=100)
    (user_id, token), *_ = make_shoppers(1)
    assert purchase(web_server, sale.pk, token).status_code == 201  # Both workers may have seen it.

    user_tokens_revoke(user_id=user_id)
    # The promise (docs/accounts.md): refused everywhere, by the message. Each attempt may
    # land on either of the two granian workers: every one must refuse.
    wait_for(
        lambda: all(purchase(web_server, sale.pk, token).status_code == 401 for _ in range(10)),
        what="every process refusing the revoked token",
        interval=0.02,
    )
    assert all(purchase(web_server, sale.pk, token).status_code == 401 for _ in range(20))


def test_deactivating_a_shopper_refuses_their_token_and_their_login(client: Client) -> None:
    sale = make_sale()
    assert subscription.wait_until_live()
    user, token = make_shopper()

    user_deactivate(user=user)

    # The purchase path hears of it through the subscription; the orders API also finds the
    # user inactive in SQL, so it refuses at once.
    wait_for(lambda: purchase(client, sale.pk, token).status_code == 401, what="the revocation", interval=0.02)
    assert client.get("/api/orders/", headers=auth(token)).status_code == 401
    assert purchase(client, sale.pk, token).status_code == 401
    login = client.post(
        "/api/auth/token/", {"username": user.username, "password": "pw-for-tests-1"}, content_type="application/json"
    )
    assert login.status_code == 400


@pytest.mark.parametrize("change", ["deactivate", "password"])
def test_a_save_whose_revocation_redis_cannot_take_is_not_made(own_redis: LocalRedis, change: str) -> None:
    user = make_user()
    stored = get_user_model().objects.values_list("is_active", "password").get(pk=user.pk)
    own_redis.stop()

    if change == "deactivate":
        user.is_active = False
    else:
        user.set_password("another-pw-for-tests-2")
    with pytest.raises(RedisUnavailable):
        user.save()

    assert get_user_model().objects.values_list("is_active", "password").get(pk=user.pk) == stored


def test_a_valid_token_renews_itself_and_the_orders_api_takes_both_schemes(client: Client) -> None:
    _, token = make_shopper()

    renewed = client.post("/api/auth/token/", "", content_type="application/json", headers=auth(token))
    orders_token = client.get("/api/orders/", headers=auth(token))
    orders_bearer = client.get("/api/orders/", headers={"Authorization": f"Bearer {renewed.json()['token']}"})

    assert renewed.status_code == 200
    assert set(renewed.json()) == {"token", "expires_at"}
    assert (orders_token.status_code, orders_bearer.status_code) == (200, 200)
