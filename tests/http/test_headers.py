"""Security headers on every response, no-store on every /graphql answer, a fresh request id."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest

Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]

JSON = {"content-type": "application/json"}

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains; preload",
    "content-security-policy": (
        "default-src 'none'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb")


def _ok(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post("/graphql", json={"query": "{ viewer { role } }"})


def _invalid_json(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post("/graphql", content=b"{not json", headers=JSON)


def _not_found(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.get("/nope")


def _get_operation(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.get("/graphql", params={"query": "{ viewer { role } }"})


def _put(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.put("/graphql", json={"query": "{ viewer { role } }"})


def _too_large(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post("/graphql", content=b" " * 100_001, headers=JSON)


def _healthz(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.get("/healthz")


EVERY_KIND: list[tuple[Send, int]] = [
    (_ok, 200),
    (_invalid_json, 400),
    (_not_found, 404),
    (_get_operation, 405),
    (_put, 405),
    (_too_large, 413),
    (_healthz, 200),
]
KIND_IDS = ["graphql-200", "invalid-json-400", "404", "get-405", "put-405", "413", "healthz"]


def permissions(value: str) -> dict[str, str]:
    """``camera=(), usb=()`` as ``{"camera": "()", "usb": "()"}``."""
    return dict(part.strip().split("=", 1) for part in value.split(","))


@pytest.mark.parametrize(("send", "status"), EVERY_KIND, ids=KIND_IDS)
async def test_every_response_carries_the_security_headers(
    client: httpx.AsyncClient, send: Send, status: int
) -> None:
    response = await send(client)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    # Each answer depends on the Origin (a foreign one is refused), and carries its own id.
    assert "Origin" in [v.strip() for v in response.headers.get("vary", "").split(",")]
    assert len(response.headers.get_list("x-request-id")) == 1
    assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize(("send", "status"), EVERY_KIND, ids=KIND_IDS)
async def test_every_response_denies_powerful_browser_features(
    client: httpx.AsyncClient, send: Send, status: int
) -> None:
    response = await send(client)
    assert response.status_code == status
    policy = permissions(response.headers["permissions-policy"])
    assert {feature: policy.get(feature) for feature in DENIED_FEATURES} == dict.fromkeys(
        DENIED_FEATURES, "()"
    )


def _forbidden_origin(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post(
        "/graphql",
        json={"query": "{ viewer { role } }"},
        headers={"origin": "https://evil.example"},
    )


def _form(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post("/graphql", data={"query": "{ viewer { role } }"})


def _csv_only(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post(
        "/graphql", json={"query": "{ viewer { role } }"}, headers={"accept": "text/csv"}
    )


def _field_error(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post("/graphql", json={"query": "{ firm { name } }"})


def _graphiql(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.get("/graphql", headers={"accept": "text/html"})


@pytest.mark.parametrize(
    ("send", "status"),
    [
        (_ok, 200),
        (_field_error, 200),
        (_invalid_json, 400),
        (_forbidden_origin, 403),
        (_get_operation, 405),
        (_csv_only, 406),
        (_form, 415),
        (_graphiql, 200),
    ],
    ids=["200", "field-error", "400", "403", "405", "406", "415", "graphiql"],
)
async def test_every_graphql_answer_is_no_store(
    client: httpx.AsyncClient, send: Send, status: int
) -> None:
    response = await send(client)
    assert response.status_code == status
    assert response.headers.get("cache-control") == "no-store"


@pytest.mark.parametrize(
    ("send", "status"), [(_too_large, 413), (_put, 405)], ids=["413", "put-405"]
)
async def test_graphql_answers_from_the_middleware_and_router_are_no_store_too(
    client: httpx.AsyncClient, send: Send, status: int
) -> None:
    response = await send(client)
    assert response.status_code == status
    assert response.headers.get("cache-control") == "no-store"


async def test_each_response_gets_its_own_request_id(client: httpx.AsyncClient) -> None:
    first, second = await _ok(client), await _ok(client)
    ids = [first.headers.get("x-request-id"), second.headers.get("x-request-id")]
    assert all(isinstance(value, str) and len(value) == 32 for value in ids)
    assert ids[0] != ids[1]


async def test_a_client_cannot_choose_its_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ viewer { role } }"}, headers={"x-request-id": "forged"}
    )
    assert response.headers["x-request-id"] != "forged"
    assert len(response.headers["x-request-id"]) == 32
