"""The server-rendered pages through Django's test client (real Redis and PostgreSQL)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.selectors import forget_local_identities, session_hash_cache_key
from orders.models import Order
from orders.tasks import drain_sale_orders
from sales.models import Admission
from sales.purchase import purchase_attempt
from sales.services import sale_create, sale_update
from tests.factories import make_product, make_sale, make_user

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-1"


def logged_in(client: Client, username: str) -> Client:
    page = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert page.status_code == 302
    return client


def sale_config(html: str) -> dict:
    found = re.search(r'<script id="sale-config" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_home_lists_live_sales_then_upcoming_ones_and_not_ended_ones(client: Client) -> None:
    live = make_sale(product=make_product(name="Live Phone"))
    upcoming = make_sale(starts_in=600, product=make_product(name="Soon Phone"))
    make_sale(starts_in=-7200, duration=3600, product=make_product(name="Old Phone"))

    page = client.get("/")

    html = page.content.decode()
    assert page.status_code == 200
    assert html.index("Live Phone") < html.index("Soon Phone")
    assert "Old Phone" not in html
    assert f'href="/sales/{live.pk}/"' in html
    assert f'href="/sales/{upcoming.pk}/"' in html


def test_the_product_page_shows_the_product_the_prices_the_stock_and_the_countdown(client: Client, settings) -> None:
    settings.FLASHSALE_WS_URL = "ws://127.0.0.1:8001"
    product = make_product(name="Aurora X1", description="A fine phone.", list_price=Decimal("799.00"))
    sale = make_sale(stock=10, starts_in=120, price=Decimal("1.00"), product=product, pow_difficulty=12)

    page = client.get(f"/sales/{sale.pk}/")

    html = page.content.decode()
    assert page.status_code == 200
    assert '<h1 id="product-name">Aurora X1</h1>' in html
    assert "A fine phone." in html
    assert re.search(r"<del class=\"list-price\">.*\$799\.00</del>", html)
    assert re.search(r"<strong class=\"sale-price\">.*\$1\.00</strong>", html)
    assert "<strong data-stock>10</strong> of 10 left" in html
    assert "data-countdown-block>" in html  # Not hidden before the start.
    assert f'href="/accounts/login/?next=/sales/{sale.pk}/"' in html
    config = sale_config(html)
    assert config["socket_url"] == f"ws://127.0.0.1:8001/ws/sales/{sale.pk}/"
    assert (config["status"], config["remaining_stock"], config["pow_difficulty"]) == ("scheduled", 10, 12)
    assert config["purchase_url"] == f"/api/sales/{sale.pk}/purchase/"
    assert config["challenge_url"] == f"/api/sales/{sale.pk}/challenge/"


def test_the_start_is_written_on_the_shops_clock_for_the_browser_to_add_the_shoppers(client: Client, settings) -> None:
    # Given a shop in Shanghai and a sale at midnight on 11.11 there
    settings.SHOP_TIME_ZONE = "Asia/Shanghai"
    starts_at = datetime(2027, 11, 10, 16, 0, tzinfo=UTC)
    sale = sale_create(
        product=make_product(name="Singles Day Phone"),
        price=Decimal("1.00"),
        total_stock=10,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
    )

    # When the product page and the home page are read
    page = client.get(f"/sales/{sale.pk}/").content.decode()
    home = client.get("/").content.decode()

    # Then each names the shop's wall time and carries the instant, with an offset, for the browser
    assert '<body data-shop-zone="Asia/Shanghai">' in page
    assert (
        '<time datetime="2027-11-10T16:00:00+00:00" data-local-time="seconds" data-starts-at>'
        "Nov 11, 00:00:00 Asia/Shanghai</time>"
    ) in page
    assert sale_config(page)["starts_at"] == "2027-11-10T16:00:00+00:00"
    assert "storefront/local-time.js" in page
    assert "Times in your time zone and the shop's (Asia/Shanghai)." in page
    assert '<time datetime="2027-11-10T16:00:00+00:00" data-local-time>Nov 11, 00:00 Asia/Shanghai</time>' in home


def test_without_a_websocket_url_the_page_uses_its_own_host(client: Client, settings) -> None:
    settings.FLASHSALE_WS_URL = ""
    sale = make_sale()

    config = sale_config(client.get(f"/sales/{sale.pk}/").content.decode())

    assert config["socket_url"] == f"ws://testserver/ws/sales/{sale.pk}/"


def test_a_logged_in_shopper_gets_a_disabled_buy_button_and_a_csrf_cookie(client: Client) -> None:
    make_user(username="ann")
    sale = make_sale(starts_in=60)

    page = logged_in(client, "ann").get(f"/sales/{sale.pk}/")

    html = page.content.decode()
    assert re.search(r'<button type="button" class="buy-button" data-buy disabled[^>]*>Buy now</button>', html)
    assert "Log in to buy" not in html
    assert page.cookies["csrftoken"].value


def test_a_queue_mode_sales_page_holds_the_waiting_room(client: Client) -> None:
    # Given a queue-mode sale whose line opens ten minutes before its start
    make_user(username="amy")
    sale = make_sale(starts_in=3600, admission=Admission.QUEUE, serving_rate=2)
    sale.pre_queue_opens_at = sale.starts_at - timedelta(minutes=10)
    sale_update(sale=sale)

    # When a visitor opens its page, then a shopper
    visitor = client.get(f"/sales/{sale.pk}/").content.decode()
    shopper = logged_in(client, "amy").get(f"/sales/{sale.pk}/").content.decode()

    # Then the visitor is asked to log in to join the line
    assert "Log in to join the line" in visitor
    assert "data-queue" not in visitor
    # And the shopper's page holds the waiting room, Buy hidden until they have a place
    assert re.search(r'<section class="queue" data-queue aria-labelledby="queue-heading">', shopper)
    assert re.search(r'<p class="queue-status" data-queue-status role="status" aria-live="polite">', shopper)
    assert re.search(
        r'<button type="button" class="buy-button" data-buy disabled[^>]* hidden>Buy now</button>', shopper
    )
    config = sale_config(shopper)
    assert (config["admission"], config["queue_url"]) == ("queue", f"/api/sales/{sale.pk}/queue/")
    assert config["line_opens_at"] == sale.pre_queue_opens_at.isoformat()
    assert config["shopper"] == get_user_model().objects.get(username="amy").pk
    assert (config["shuffle_pre_queue"], config["turn_seconds"]) == (False, settings.FLASHSALE_QUEUE_TURN_SECONDS)


def test_a_direct_sales_page_has_its_waiting_room_hidden(client: Client) -> None:
    make_user(username="abe")
    sale = make_sale(starts_in=60)

    html = logged_in(client, "abe").get(f"/sales/{sale.pk}/").content.decode()

    # Hidden, for the page to show if an operator switches the sale to queue mode
    assert '<section class="queue" data-queue aria-labelledby="queue-heading" hidden>' in html
    assert sale_config(html)["admission"] == "direct"


def test_an_unknown_sale_is_an_html_404(client: Client) -> None:
    page = client.get("/sales/999999/")

    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_pages_load_nothing_from_other_sites(client: Client) -> None:
    sale = make_sale()

    for path in ("/", f"/sales/{sale.pk}/", "/accounts/login/", "/accounts/signup/"):
        html = client.get(path).content.decode()
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path


def test_login_caches_the_session_hash_so_the_first_purchase_makes_no_sql_query(client: Client) -> None:
    # Given a shopper who logs in on the page, and a live sale
    user = make_user(username="bea")
    sale = make_sale(stock=3)
    cache.delete(session_hash_cache_key(user.pk))
    logged_in(client, "bea")
    assert cache.get(session_hash_cache_key(user.pk)) == user.get_session_auth_hash()
    forget_local_identities()
    client.get(f"/sales/{sale.pk}/")  # Sets the CSRF cookie.
    csrf = client.cookies["csrftoken"].value
    # When they buy with their session
    with CaptureQueriesContext(connection) as queries:
        answer = client.post(
            f"/api/sales/{sale.pk}/purchase/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=csrf
        )
    # Then the purchase path asked PostgreSQL nothing
    assert answer.json()["status"] == "SUCCESS"
    assert len(queries) == 0


def test_sign_up_creates_a_shopper_logs_them_in_and_returns_them_to_the_sale(client: Client) -> None:
    sale = make_sale()

    page = client.post(
        f"/accounts/signup/?next=/sales/{sale.pk}/",
        {
            "username": "cleo",
            "email": "cleo@example.com",
            "password1": "a-long-pass-phrase",
            "password2": "a-long-pass-phrase",
            "next": f"/sales/{sale.pk}/",
        },
    )

    assert page.status_code == 302
    assert page["Location"] == f"/sales/{sale.pk}/"
    user = get_user_model().objects.get(username="cleo")
    assert cache.get(session_hash_cache_key(user.pk)) == user.get_session_auth_hash()
    assert "Log out" in client.get("/").content.decode()


def test_sign_up_refuses_a_taken_name_and_differing_passwords(client: Client) -> None:
    make_user(username="dan")

    page = client.post(
        "/accounts/signup/",
        {"username": "DAN", "password1": "a-long-pass-phrase", "password2": "another-pass-phrase"},
    )

    html = page.content.decode()
    assert page.status_code == 200
    assert "That username is taken." in html
    assert "The two passwords differ." in html


def test_sign_up_never_redirects_to_another_site(client: Client) -> None:
    page = client.post(
        "/accounts/signup/",
        {
            "username": "eve",
            "password1": "a-long-pass-phrase",
            "password2": "a-long-pass-phrase",
            "next": "https://evil.example/",
        },
    )

    assert page["Location"] == "/"


def test_logout_is_a_post_that_ends_the_session(client: Client) -> None:
    make_user(username="fay")
    logged_in(client, "fay")

    page = client.post("/accounts/logout/")

    assert page.status_code == 302
    assert "Log in" in client.get("/").content.decode()


def test_orders_need_a_login(client: Client) -> None:
    page = client.get("/orders/")

    assert page.status_code == 302
    assert page["Location"] == "/accounts/login/?next=/orders/"


def test_orders_show_the_shoppers_own_orders_with_their_status(client: Client) -> None:
    # Given two shoppers who each won a unit (orders written as the worker writes them)
    gus, hal = make_user(username="gus"), make_user(username="hal")
    sale = make_sale(stock=5, product=make_product(name="Aurora X1"))
    won = {user.pk: purchase_attempt(sale_id=sale.pk, user_id=user.pk).order_id for user in (gus, hal)}
    drain_sale_orders(sale.pk)
    assert Order.objects.count() == 2
    # When Gus opens his orders
    html = logged_in(client, "gus").get("/orders/").content.decode()
    # Then he sees his order and not Hal's
    assert f'data-order-id="{won[gus.pk]}"' in html
    assert str(won[hal.pk]) not in html
    assert "Aurora X1" in html
    assert "Pending payment" in html


def test_an_order_not_written_yet_is_announced_and_followed_without_a_reload_timer(client: Client) -> None:
    make_user(username="ida")
    awaited = "0b0e4c0e-5c8b-4a5e-9a53-1f0d8c3b7a10"

    html = logged_in(client, "ida").get(f"/orders/?order={awaited}").content.decode()

    assert f"Order {awaited} is being recorded." in html
    assert "window.location.reload" not in html
    assert "storefront/orders-page.js" in html
    found = re.search(r'<script id="orders-config" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    config = json.loads(found.group(1))
    assert config["following"] == [{"order_id": awaited, "api_url": f"/api/orders/{awaited}/", "status": None}]
    assert "is being recorded" not in logged_in(Client(), "ida").get("/orders/?order=junk").content.decode()


def test_a_winners_sale_page_renders_you_own_this_before_and_after_the_order_is_written(client: Client) -> None:
    # Given a shopper who won a unit the worker has not written to PostgreSQL yet
    kim = make_user(username="kim")
    make_user(username="lou")
    sale = make_sale(stock=5)
    order_id = str(purchase_attempt(sale_id=sale.pk, user_id=kim.pk).order_id)

    # When they open the sale's page, before and after the drain
    before = logged_in(client, "kim").get(f"/sales/{sale.pk}/").content.decode()
    drain_sale_orders(sale.pk)
    after = client.get(f"/sales/{sale.pk}/").content.decode()
    other = logged_in(Client(), "lou").get(f"/sales/{sale.pk}/").content.decode()

    # Then Buy says they own it, takes no click, and links their order; not for anyone else
    for html in (before, after):
        assert f"You own this: order {order_id[:8]}</button>" in html
        assert f'data-owned-order="{order_id}" disabled' in html
        assert f'href="/orders/{order_id}/"' in html
        assert sale_config(html)["owned_order_id"] == order_id
    assert "You own this" not in other
    assert sale_config(other)["owned_order_id"] is None
