"""What no answer of the API may carry, whatever it was sent."""

from __future__ import annotations

import re

from tests.conftest import ROOT

# A stack trace, a source path, or a database driver's own words.
LEAKS = re.compile(
    r"Traceback|File \"|site-packages|\.py\b|sqlalchemy|asyncpg|psycopg|" + re.escape(str(ROOT)),
    re.IGNORECASE,
)
