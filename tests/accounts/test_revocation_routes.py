"""Revocation on every route, against the real servers (granian's two workers, the TCP door
with tokens and the TCP door trusting a gateway's ``user_id``).

Deactivating a user, by the admin's checkbox, a model save, the service or ``manage.py``,
refuses the token and the session they held, and the gateway's ``user_id``, within a second
on the challenge endpoint, the purchase API and the TCP door, and no unit is sold to them.
Changing a password, by ``set_password`` and a save, the admin's password form, Django's
``PasswordChangeView`` or ``manage.py changepassword``, refuses every token and every other
session issued before it; the session that made the change goes on working.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

from accounts.services import token_issue, user_deactivate
from orders.models import Order
from sales import inventory
from sales.models import FlashSale
from tests.clients import Browser, challenge, purchase, tcp_ask
from tests.factories import make_sale, make_shopper, make_user
from tests.polling import wait_for
from tests.processes import ROOT, ChildProcess, child_env

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPT, CHALLENGE = 0x01, 0x02
PASSWORD = "pw-for-tests-1"
NEW_PASSWORD = "Fresh-pw-for-tests-2"
PROMISED_SECONDS = 1.0
WEB_TRIES = 6
"""Requests per check on the web server: each may land on either of its two workers."""


@dataclass(frozen=True)
class Doors:
    web: ChildProcess
    tcp: ChildProcess
    gateway: ChildProcess  # The TCP door trusting a gateway's user_id.


@dataclass
class Scene:
    """The doors, and the people at them: browsers on the web server, and a staff member at
    the admin, on a web process of its own (``admin_server``)."""

    doors: Doors
    request: pytest.FixtureRequest
    opened: list[Browser] = field(default_factory=list)

    def browser(self, target: ChildProcess | None = None) -> Browser:
        self.opened.append(Browser(target or self.doors.web))
        return self.opened[-1]

    def staff(self) -> tuple[User, Browser]:
        """A superuser logged in to the admin."""
        staff = get_user_model().objects.create_superuser(f"boss{make_user().pk}", "boss@example.com", PASSWORD)
        admin = self.browser(self.request.getfixturevalue("admin_server"))
        admin.log_in("/admin/login/", staff.username, PASSWORD)
        return staff, admin


@dataclass(frozen=True)
class Holder:
    """A shopper holding an access token and a storefront session, each issued before the route."""

    user: User
    token: str
    browser: Browser


@pytest.fixture
def scene(
    web_server: ChildProcess, tcp_server: ChildProcess, trusted_tcp_server: ChildProcess, request: pytest.FixtureRequest
) -> Iterator[Scene]:
    made = Scene(Doors(web=web_server, tcp=tcp_server, gateway=trusted_tcp_server), request)
    yield made
    for browser in made.opened:
        browser.close()


@pytest.fixture
def doors(scene: Scene) -> Doors:
    return scene.doors


@pytest.fixture
def holder(scene: Scene) -> Holder:
    user, token = make_shopper()
    browser = scene.browser()
    browser.log_in("/accounts/login/", user.username, PASSWORD)
    return Holder(user=user, token=token, browser=browser)


def manage(*args: str, stdin: str = "") -> None:
    """``manage.py`` as an operator runs it, in a session of its own: with no terminal to
    open, ``changepassword`` reads its prompts from stdin."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=child_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)


# --- What each door answers -------------------------------------------------------------


def web_statuses(doors: Doors, sale: FlashSale, ask: Callable[..., Any], **credentials: Any) -> set[int]:
    return {ask(doors.web, sale.pk, **credentials).status_code for _ in range(WEB_TRIES)}


def token_on_web(doors: Doors, sale: FlashSale, token: str, ask: Callable[..., Any] = challenge) -> set[int]:
    return web_statuses(doors, sale, ask, token=token)


def session_on_web(doors: Doors, sale: FlashSale, browser: Browser, ask: Callable[..., Any] = challenge) -> set[int]:
    return web_statuses(doors, sale, ask, token=None, **browser.session_headers())


def token_on_tcp(doors: Doors, sale: FlashSale, token: str, kind: int = CHALLENGE) -> str:
    return str(tcp_ask(doors.tcp, kind, {"product_id": sale.pk, "token": token})["status"])


def user_id_on_gateway(doors: Doors, sale: FlashSale, user_id: int, kind: int = CHALLENGE) -> str:
    return str(tcp_ask(doors.gateway, kind, {"product_id": sale.pk, "user_id": user_id})["status"])


def door_answers(doors: Doors, sale: FlashSale, holder: Holder) -> dict[str, object]:
    """What each way in answers the holder's challenge request."""
    return {
        "web, token": token_on_web(doors, sale, holder.token),
        "web, session": session_on_web(doors, sale, holder.browser),
        "tcp, token": token_on_tcp(doors, sale, holder.token),
        "gateway, user_id": user_id_on_gateway(doors, sale, holder.user.pk),
    }


SERVED = {"web, token": {200}, "web, session": {200}, "tcp, token": "OK", "gateway, user_id": "OK"}
REFUSED = {
    "web, token": {401},
    "web, session": {401},
    "tcp, token": "UNAUTHENTICATED",
    "gateway, user_id": "UNAUTHENTICATED",
}


def within_a_second(answers: Callable[[], Mapping[str, object]], expected: Mapping[str, object]) -> None:
    """Wait the promised second for ``answers()`` to be ``expected``; else show which door did not."""
    seen: dict[str, object] = {}

    def reached() -> bool:
        seen.update(answers())
        return seen == expected

    try:
        wait_for(reached, what="the revocation", timeout=PROMISED_SECONDS, interval=0.02)
    except AssertionError:
        assert seen == expected, "not within the promised second"


def nothing_sold_to(sale: FlashSale, user: User) -> bool:
    return user.pk not in inventory.sale_buyers(sale.pk) and not Order.objects.filter(user_id=user.pk).exists()


# --- Deactivation -----------------------------------------------------------------------


def in_the_admin(scene: Scene, user: User) -> None:
    _, admin = scene.staff()
    saved = admin.submit(f"/admin/auth/user/{user.pk}/change/", is_active=None)  # The box unticked.
    assert saved.status_code == 302, saved.text


def by_a_model_save(scene: Scene, user: User) -> None:
    user.is_active = False
    user.save()


def with_the_service(scene: Scene, user: User) -> None:
    user_deactivate(user=user)


def with_manage_py(scene: Scene, user: User) -> None:
    manage("flashsale", "deactivate", user.username)


@pytest.mark.parametrize("deactivate", [in_the_admin, by_a_model_save, with_the_service, with_manage_py])
def test_deactivating_by_any_route_refuses_the_token_session_and_user_id_everywhere_within_a_second(
    scene: Scene, doors: Doors, holder: Holder, deactivate: Callable[[Scene, User], None]
) -> None:
    # Given a shopper every door serves, and a live sale with stock
    sale = make_sale(stock=10)
    assert door_answers(doors, sale, holder) == SERVED  # Each process now keeps what it knows of them.

    # When they are deactivated
    deactivate(scene, holder.user)

    # Then every door refuses them within a second, and nothing is sold to them
    within_a_second(lambda: door_answers(doors, sale, holder), REFUSED)
    assert token_on_web(doors, sale, holder.token, ask=purchase) == {401}
    assert session_on_web(doors, sale, holder.browser, ask=purchase) == {401}
    assert token_on_tcp(doors, sale, holder.token, kind=ATTEMPT) == "UNAUTHENTICATED"
    assert user_id_on_gateway(doors, sale, holder.user.pk, kind=ATTEMPT) == "UNAUTHENTICATED"
    assert nothing_sold_to(sale, holder.user)
    assert get_user_model().objects.get(pk=holder.user.pk).is_active is False


# --- Password changes -------------------------------------------------------------------


def by_set_password_and_save(scene: Scene, user: User) -> None:
    user.set_password(NEW_PASSWORD)
    user.save()


def in_the_admins_password_form(scene: Scene, user: User) -> None:
    _, admin = scene.staff()
    saved = admin.submit(f"/admin/auth/user/{user.pk}/password/", password1=NEW_PASSWORD, password2=NEW_PASSWORD)
    assert saved.status_code == 302, saved.text


def with_manage_py_changepassword(scene: Scene, user: User) -> None:
    manage("changepassword", user.username, stdin=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")


def fresh_token(doors: Doors, username: str, password: str) -> str:
    answer = Browser(doors.web)
    try:
        issued = answer.http.post("/api/auth/token/", json={"username": username, "password": password})
    finally:
        answer.close()
    assert issued.status_code == 200, issued.text
    return str(issued.json()["token"])


@pytest.mark.parametrize(
    "change_password", [by_set_password_and_save, in_the_admins_password_form, with_manage_py_changepassword]
)
def test_a_password_change_by_any_route_refuses_earlier_tokens_and_sessions_on_the_purchase_path(
    scene: Scene, doors: Doors, holder: Holder, change_password: Callable[[Scene, User], None]
) -> None:
    # Given a shopper every door serves
    sale = make_sale(stock=10)
    assert door_answers(doors, sale, holder) == SERVED

    # When their password changes
    change_password(scene, holder.user)

    # Then the token and the session they held are refused within a second, and sell nothing;
    # a gateway's user_id still names them (a password change is not a deactivation)
    within_a_second(lambda: door_answers(doors, sale, holder), {**REFUSED, "gateway, user_id": "OK"})
    assert token_on_web(doors, sale, holder.token, ask=purchase) == {401}
    assert session_on_web(doors, sale, holder.browser, ask=purchase) == {401}
    assert token_on_tcp(doors, sale, holder.token, kind=ATTEMPT) == "UNAUTHENTICATED"
    assert nothing_sold_to(sale, holder.user)
    # And the new password gets a token that buys
    new_token = fresh_token(doors, holder.user.username, NEW_PASSWORD)
    assert purchase(doors.web, sale.pk, new_token).status_code == 201


def test_the_session_that_changes_its_password_stays_logged_in_and_every_other_one_is_refused(
    scene: Scene, doors: Doors
) -> None:
    # Given a staff member with a token, a storefront session, and the admin open in another
    sale = make_sale(stock=10)
    staff, changing = scene.staff()  # Its session works on every web process (the cache's sessions).
    token = fresh_token(doors, staff.username, PASSWORD)
    other = scene.browser()
    other.log_in("/accounts/login/", staff.username, PASSWORD)
    for browser in (changing, other):
        assert session_on_web(doors, sale, browser) == {200}
    assert token_on_web(doors, sale, token) == {200}
    assert token_on_tcp(doors, sale, token) == "OK"

    # When they change their password on Django's PasswordChangeView (the admin's)
    changed = changing.submit(
        "/admin/password_change/", old_password=PASSWORD, new_password1=NEW_PASSWORD, new_password2=NEW_PASSWORD
    )
    assert changed.status_code == 302, changed.text

    # Then the other session and the token are refused within a second
    within_a_second(
        lambda: {
            "other session": session_on_web(doors, sale, other),
            "web, token": token_on_web(doors, sale, token),
            "tcp, token": token_on_tcp(doors, sale, token),
        },
        {"other session": {401}, "web, token": {401}, "tcp, token": "UNAUTHENTICATED"},
    )
    assert session_on_web(doors, sale, other, ask=purchase) == {401}
    assert token_on_tcp(doors, sale, token, kind=ATTEMPT) == "UNAUTHENTICATED"
    # And the session that made the change (update_session_auth_hash) goes on, and buys
    assert session_on_web(doors, sale, changing) == {200}
    bought = purchase(doors.web, sale.pk, None, **changing.session_headers())
    assert bought.status_code == 201, bought.text
    assert list(inventory.sale_buyers(sale.pk)) == [staff.pk]


def test_a_login_that_rehashes_the_password_revokes_nothing(doors: Doors) -> None:
    # Given a shopper whose stored hash Django upgrades at their next login (a short salt)
    sale = make_sale(stock=10)
    user = make_user()
    get_user_model().objects.filter(pk=user.pk).update(password=make_password(PASSWORD, salt="short"))
    token = token_issue(user=user).token
    assert token_on_web(doors, sale, token) == {200}
    upgraded_from = get_user_model().objects.get(pk=user.pk).password

    # When they log in again and Django re-hashes the same password
    again = fresh_token(doors, user.username, PASSWORD)

    # Then the hash changed, and both tokens still buy: the password did not
    assert get_user_model().objects.get(pk=user.pk).password != upgraded_from
    assert purchase(doors.web, sale.pk, token).status_code == 201
    assert token_on_tcp(doors, sale, again) == "OK"
