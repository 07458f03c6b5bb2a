"""Fixtures of the operator's tools: the browser and the collected static files the
storefront's end-to-end tests use, for the admin's console page."""

from tests.storefront.conftest import browser, collected_static, ws_server  # noqa: F401 - fixtures
