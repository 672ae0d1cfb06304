"""Password handling: Argon2id, the strength check, and equal work for unknown addresses."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth import passwords
from app.errors import BadUserInput


class CountingHasher:
    """The real hasher, counting verifications (it still does every one of them)."""

    def __init__(self, real: Any) -> None:
        self.real, self.verifications = real, 0

    def hash(self, password: str) -> str:
        return str(self.real.hash(password))

    def verify(self, stored: str, password: str) -> bool:
        self.verifications += 1
        return bool(self.real.verify(stored, password))  # raises on a mismatch, as the real one


async def test_an_unknown_address_costs_one_argon2_verification_like_a_known_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", counting)
    stored = await passwords.hash_password("a long enough passphrase 9")
    assert await passwords.verify_password(stored, "a long enough passphrase 9") is True
    assert await passwords.verify_password(stored, "not the passphrase at all") is False
    assert await passwords.verify_password(None, "a long enough passphrase 9") is False
    assert counting.verifications == 3


def test_hashes_are_argon2id_with_owasp_parameters() -> None:
    stored = passwords._hasher.hash("another long passphrase 77")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "another long passphrase" not in stored


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short pass", "Use 12 to 128 characters."),
        ("x" * 129, "Use 12 to 128 characters."),
        ("password1234", "This password is too easy to guess; try a longer passphrase."),
        ("pat@example.test1", "This password is too easy to guess; try a longer passphrase."),
    ],
)
async def test_weak_passwords_are_refused_with_a_message(password: str, message: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        await passwords.check_strength(password, email="pat@example.test")
    assert refused.value.extensions["fields"] == [{"field": "password", "message": message}]


async def test_a_long_passphrase_passes() -> None:
    await passwords.check_strength("correct horse battery staple 42", email="pat@example.test")


@pytest.mark.parametrize("length", [73, 128])
async def test_a_passphrase_longer_than_zxcvbn_scores_is_judged_by_its_start(length: int) -> None:
    """zxcvbn raises ValueError past 72 characters: a strong passphrase of 73 to 128, which the
    schema allows, failed sign-up and reset with an internal error."""
    strong = "violet harbour quietly juggles seventeen brass lanterns beneath a crooked moon 4711!"
    await passwords.check_strength((strong * 2)[:length], email="pat@example.test")
    with pytest.raises(BadUserInput):
        await passwords.check_strength("a" * length, email="pat@example.test")
