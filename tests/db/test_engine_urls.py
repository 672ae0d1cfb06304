"""How a database URL is read, the same for every pool."""

from __future__ import annotations

import pytest

from app.db.engine import engine_url, lane_connect_kwargs


def test_libpq_and_asyncpg_spellings_of_tls_read_alike() -> None:
    for query in ("sslmode=verify-full", "ssl=verify-full"):
        url = f"postgresql://app:p%2Fw@db.example:5432/cp?{query}&application_name=api"
        assert lane_connect_kwargs(url)["ssl"] == "verify-full"
        assert lane_connect_kwargs(url)["server_settings"]["application_name"] == "api"
        assert "sslmode" not in engine_url(url).query


def test_tls_given_twice_is_refused_without_the_password() -> None:
    """Whichever came last would win, silently, and could ask for less than the other."""
    with pytest.raises(ValueError, match="both ssl and sslmode") as refused:
        engine_url("postgresql://app:hunter2@db.example/cp?sslmode=verify-full&ssl=disable")
    assert "hunter2" not in str(refused.value)
