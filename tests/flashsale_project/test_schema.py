"""The OpenAPI document describes every operation of the REST contract."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_and_describes_every_operation(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= {
        ("/api/auth/register/", "post"),
        ("/api/auth/token/", "post"),
        ("/api/sales/", "get"),
        ("/api/sales/{sale_id}/", "get"),
        ("/api/sales/{sale_id}/challenge/", "post"),
        ("/api/sales/{sale_id}/purchase/", "post"),
        ("/api/orders/", "get"),
        ("/api/orders/{order_id}/", "get"),
    }
    purchase = schema["paths"]["/api/sales/{sale_id}/purchase/"]["post"]
    assert set(purchase["responses"]) >= {"201", "400", "401", "403", "404", "409", "429", "503"}
    assert any(parameter["name"] == "Idempotency-Key" for parameter in purchase["parameters"])
