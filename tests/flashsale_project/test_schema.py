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


def test_every_operation_documents_the_stacks_answers_and_the_idempotency_keys_limits(client: Client) -> None:
    schema = client.get("/api/schema/").json()

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "503" in responses, (method, path)
            for code in ("429", "503"):
                if code in responses:
                    assert "Retry-After" in responses[code]["headers"], (method, path, code)
            if "{" in path:
                assert "404" in responses, (method, path)
    register = schema["paths"]["/api/auth/register/"]["post"]
    assert set(register["responses"]) >= {"201", "400", "415", "429", "503"}
    assert schema["components"]["schemas"]["RegisterInputRequest"]["additionalProperties"] is False
    token = schema["paths"]["/api/auth/token/"]["post"]
    assert set(token["responses"]) >= {"200", "400", "401", "429", "503"}
    assert "required" not in token["requestBody"]  # renewal sends none
    [key] = [p for p in schema["paths"]["/api/sales/{sale_id}/purchase/"]["post"]["parameters"] if p["in"] == "header"]
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}
