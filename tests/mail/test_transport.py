"""COVERPROOF_SMTP_URL parsing and the message the sender builds."""

from __future__ import annotations

import uuid

import pytest

from app.config import ConfigError, Settings
from app.mail.outbox import Mail
from app.mail.transport import SmtpTransport, build_message, smtp_transport, transport_for


def test_smtp_with_credentials_requires_starttls() -> None:
    transport = smtp_transport("smtp://user%40corp:p%2Fss@mail.example.test")
    assert (transport.hostname, transport.port) == ("mail.example.test", 587)
    assert (transport.username, transport.password) == ("user@corp", "p/ss")
    assert transport.start_tls is True
    assert transport.use_tls is False
    assert "p/ss" not in repr(transport)


def test_smtp_without_credentials_uses_starttls_when_offered_unless_required() -> None:
    assert smtp_transport("smtp://relay.internal:25").start_tls is None
    assert smtp_transport("smtp://relay.internal:25?starttls=required").start_tls is True


def test_production_always_requires_starttls_on_smtp() -> None:
    """Mail carries sign-in and reset links: in production a relay that offers no STARTTLS, or
    a network that strips the offer, must not get them in the clear."""
    assert smtp_transport("smtp://relay.internal:25", production=True).start_tls is True
    settings = Settings(_env_file=None, env="production", smtp_url="smtp://relay.internal:25")  # type: ignore[call-arg]
    transport = transport_for(settings)
    assert isinstance(transport, SmtpTransport)
    assert transport.start_tls is True


def test_smtps_is_implicit_tls() -> None:
    transport = smtp_transport("smtps://u:p@mail.example.test")
    assert (transport.port, transport.use_tls, transport.start_tls) == (465, True, False)


def test_insecure_is_plain_on_loopback_only() -> None:
    transport = smtp_transport("smtp+insecure://127.0.0.1:1025")
    assert (transport.use_tls, transport.start_tls, transport.port) == (False, False, 1025)
    for url in ("smtp+insecure://mail.example.test:25", "smtp+insecure://u:hunter2@127.0.0.1:25"):
        with pytest.raises(ConfigError) as refused:
            smtp_transport(url)
        assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://u:hunter2@mail.example.test",
        "smtp://u:hunter2@:25",
        "smtp://u:hunter2@mail.example.test:99999",
        "smtp://u:hunter2@mail.example.test?starttls=maybe",
        "smtp://u:hunter2@mail.example.test?verify=no",
    ],
)
def test_unusable_urls_are_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        smtp_transport(url)
    assert "hunter2" not in str(refused.value)
    assert "COVERPROOF_SMTP_URL" in str(refused.value)


def test_message_has_text_and_html_alternatives_and_a_stable_message_id() -> None:
    mail = Mail(uuid.uuid4(), "a@example.test", "Hello", "Plain https://x.test/1", "<p>Hi</p>")
    message = build_message(mail, "CoverProof <no-reply@coverproof.test>")
    assert message["From"] == "CoverProof <no-reply@coverproof.test>"
    assert message["Message-ID"] == f"<{mail.id}@coverproof.test>"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert "https://x.test/1" in plain.get_content()
    assert html is not None
    assert "<p>Hi</p>" in html.get_content()
