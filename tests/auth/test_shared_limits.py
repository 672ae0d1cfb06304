"""Rate limits hold across two server processes that share Redis."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from app.main import create_app
from tests.browser import PASSWORD, SIGN_IN, browser_for, codes, loopback_ip, signed_up
from tests.conftest import Database, make_settings, started
from tests.mail.smtp import SmtpServer

REDIS_URL = os.environ.get("COVERPROOF_TEST_REDIS_URL", "redis://127.0.0.1:6379")


async def test_a_sign_in_burst_split_over_two_instances_accepts_at_most_the_limit(
    database: Database, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=smtp.url, rate_limit_storage=REDIS_URL)
    one, two = create_app(settings), create_app(settings)
    async for first in started(one):
        async for second in started(two):
            owner = browser_for(first)
            async with owner.client:
                email = await signed_up(owner, smtp)
            ip = loopback_ip()  # one caller, over both instances
            browsers = [browser_for(first if n % 2 else second, ip) for n in range(50)]
            results = await asyncio.gather(
                *(b.gql(SIGN_IN, {"e": email, "p": PASSWORD}) for b in browsers)
            )
            for b in browsers:
                await b.client.aclose()
    outcomes = [codes(r)[0] if "errors" in r else "OK" for r in results]
    assert outcomes.count("OK") == 10, outcomes
    assert outcomes.count("RATE_LIMITED") == 40
