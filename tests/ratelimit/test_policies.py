from __future__ import annotations

import dataclasses

import pytest

from app.ratelimit import Policy, policies


def test_every_named_policy_parses_to_its_constant() -> None:
    named = {
        "SIGN_IN_PER_EMAIL_AND_IP": (10, 60),
        "SIGN_IN_PER_EMAIL": (100, 60),
        "SIGN_IN_PER_IP": (30, 60),
        "MAIL_SEND_PER_EMAIL_AND_IP": (5, 3600),
        "MAIL_SEND_PER_EMAIL": (20, 3600),
        "MAIL_SEND_PER_IP": (20, 3600),
        "SIGN_UP_PER_IP": (10, 3600),
        "DECLARATION_MAILS_PER_FIRM": (1000, 3600),
        "DECLARATION_MAILS_PER_RECIPIENT": (5, 3600),
        "MUTATIONS_PER_USER": (120, 60),
        "PUBLIC_TOKEN_PER_TOKEN": (30, 60),
        "PUBLIC_TOKEN_PER_IP": (120, 60),
        "API_KEY_REQUESTS": (600, 60),
        "APQ_REGISTRATIONS_PER_USER": (60, 60),
        "WHOLE_CHAIN_READS_PER_CALLER": (20, 60),
        "ACCOUNT_REFUSALS_RECORDED_PER_CALLER": (1, 3600),
        "ACCOUNT_REFUSALS_RECORDED": (20, 3600),
    }
    for attribute, (amount, seconds) in named.items():
        policy: Policy = getattr(Policy, attribute)
        assert policy.limit == getattr(policies, attribute)
        assert policy.name == attribute.lower()
        assert (policy.item.amount, policy.window_seconds) == (amount, seconds)


def test_policy_names_are_distinct() -> None:
    names = [value.name for value in vars(Policy).values() if isinstance(value, Policy)]
    assert len(names) == 19
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("limit", ["ten a minute", "10/minute;100/hour", ""])
def test_a_limit_that_is_not_exactly_one_rate_is_refused(limit: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        Policy("bad", limit)


@pytest.mark.parametrize("name", ["Sign-In", "a/b", "", "x" * 65])
def test_a_name_that_would_need_escaping_in_a_key_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="policy name"):
        Policy(name, "1/minute")


def test_policies_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Policy.SIGN_IN_PER_EMAIL.limit = "1000/minute"  # type: ignore[misc]
