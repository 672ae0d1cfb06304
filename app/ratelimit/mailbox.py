"""The mailbox an address delivers to, as the mail limits count it."""

from __future__ import annotations

import re

# Providers that deliver a local part's dotted spellings to one mailbox (j.doe and jdoe).
_DOTS_IGNORED = frozenset({"gmail.com", "googlemail.com"})


def mailbox(email: str) -> str:
    """``email`` lowered, unquoted, without a ``+tag`` (most providers deliver a+anything@ to
    a@), and for the providers that ignore them, without dots in its local part: counted by
    address as written, one inbox could be sent a limit's worth of mail per spelling."""
    local, at, domain = email.lower().rpartition("@")
    if not at:
        return email.lower()
    if len(local) >= 2 and local[0] == local[-1] == '"':
        # Quoted ("alice"@, "a\lice"@): the same local part, which a server delivers as alice@.
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    local = local.split("+", 1)[0]
    if domain in _DOTS_IGNORED:
        local, domain = local.replace(".", ""), "gmail.com"  # googlemail.com is the same box
    return f"{local}@{domain}"
