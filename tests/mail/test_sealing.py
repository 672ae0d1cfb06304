"""Sealing outbox bodies: AES-GCM round trip, and any change to the bytes is detected."""

from __future__ import annotations

import json
import uuid

import pytest

from app.mail.outbox import _associated, open_mail
from app.mail.sealing import SealBroken, mail_key, open_sealed, seal


def test_mail_key_is_32_bytes_and_depends_on_the_secret() -> None:
    key = mail_key("a" * 48)
    assert len(key) == 32
    assert key == mail_key("a" * 48)
    assert key != mail_key("b" * 48)
    assert key != b"a" * 32


def test_seal_open_round_trip_with_a_fresh_nonce_each_time() -> None:
    key = mail_key("secret" * 8)
    first, second = seal(key, b"hello", b"row"), seal(key, b"hello", b"row")
    assert first != second
    assert b"hello" not in first
    assert open_sealed(key, first, b"row") == b"hello"
    assert open_sealed(key, second, b"row") == b"hello"


@pytest.mark.parametrize("index", [0, 11, 12, -1])
def test_a_flipped_byte_does_not_open(index: int) -> None:
    key = mail_key("secret" * 8)
    sealed = bytearray(seal(key, b"https://example.test/verify?token=abc"))
    sealed[index] ^= 0x01
    with pytest.raises(SealBroken):
        open_sealed(key, bytes(sealed))


def test_other_key_associated_data_or_truncation_does_not_open() -> None:
    key = mail_key("secret" * 8)
    sealed = seal(key, b"body", b"id\nto@example.test")
    with pytest.raises(SealBroken):
        open_sealed(mail_key("other" * 8), sealed, b"id\nto@example.test")
    with pytest.raises(SealBroken):
        open_sealed(key, sealed, b"id\nattacker@example.test")
    with pytest.raises(SealBroken):
        open_sealed(key, sealed[:10])


def test_mail_queued_before_subjects_were_sealed_opens_with_its_columns_subject() -> None:
    """A body sealed without its subject (queued by the release before) is still sent; one
    sealed with it is sent only under that subject."""
    key, mail_id, to = mail_key("legacy" * 8), uuid.uuid4(), "someone@example.test"
    legacy = seal(key, json.dumps({"text": "t", "html": "h"}).encode(), _associated(mail_id, to))
    assert open_mail(key, mail_id, to, "Subject", legacy).subject == "Subject"
    sealed = seal(
        key,
        json.dumps({"subject": "Subject", "text": "t", "html": "h"}).encode(),
        _associated(mail_id, to),
    )
    assert open_mail(key, mail_id, to, "Subject", sealed).text == "t"
    with pytest.raises(SealBroken):
        open_mail(key, mail_id, to, "Another", sealed)
