"""``/api/docs/``: the OpenAPI schema as Swagger UI, its assets served by this server (the
drf-spectacular-sidecar wheel), reached from the storefront's footer."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from .conftest import Stack, screenshot


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_footer_leads_to_the_api_docs_which_show_the_purchase_operation(
    page: Page, storefront_stack: Stack
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(f"{request.url}: {request.failure}"))

    page.goto("/")
    page.get_by_role("link", name="API documentation").click()
    page.wait_for_url("**/api/docs/")

    purchase = page.locator(".opblock-post", has_text="/api/sales/{sale_id}/purchase/")
    expect(purchase).to_be_visible()
    purchase.locator(".opblock-summary").click()
    expect(purchase.locator(".responses-table")).to_contain_text("201")
    screenshot(page, "api-docs")
    assert failed == []
    # Everything the page loaded came from this server: no CDN.
    assert requested and all(url.startswith(storefront_stack.url) for url in requested), requested


@pytest.mark.django_db
def test_the_api_docs_page_loads_swagger_ui_from_this_servers_static_files(client: Client) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert "/api/schema/" in html
