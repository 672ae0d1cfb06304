"""The mailbox an address delivers to, as the mail limits count it."""

from __future__ import annotations

import re
import stringprep
import unicodedata

import idna

from app.visible import ignorable

# Providers that deliver a local part's dotted spellings to one mailbox (j.doe and jdoe).
_DOTS_IGNORED = frozenset({"gmail.com", "googlemail.com"})


def mailbox(email: str) -> str:
    """``email`` folded (case, and compatibility: fullwidth letters are letters), unquoted,
    without a ``+tag`` (most providers deliver a+anything@ to a@), with its domain as DNS names
    it, and for the providers that ignore them, without dots in its local part: counted by
    address as written, one inbox could be sent a limit's worth of mail per spelling."""
    local, at, domain = email.rpartition("@")
    if not at:
        return _folded(email)
    local = _folded(local)
    if len(local) >= 2 and local[0] == local[-1] == '"':
        # Quoted ("alice"@, "a\lice"@): the same local part, which a server delivers as alice@.
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    local = local.split("+", 1)[0]
    domain = _as_dns_names_it(domain)
    if domain in _DOTS_IGNORED:
        local, domain = local.replace(".", ""), "gmail.com"  # googlemail.com is the same box
    return f"{local}@{domain}"


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _as_dns_names_it(domain: str) -> str:
    """A domain's ASCII form as IDNA 2008 (with UTS 46's mapping, as registries and mail
    servers use it) writes it: bücher.de and xn--bcher-kva.de are one domain, however it is
    composed, cased or written in fullwidth letters, and with its dots written as ideographic
    full stops; straße.de is not strasse.de. Without the root's dot, however written. One IDNA
    2008 refuses (a joiner in it), as IDNA 2003, which some servers still use, writes it (the
    joiner dropped); one neither encodes, folded and without what either would drop."""
    for encode in (lambda d: idna.encode(d, uts46=True), lambda d: d.encode("idna")):
        try:
            return str(encode(domain).decode("ascii")).rstrip(".")
        except UnicodeError:  # idna.IDNAError among them
            continue
    # What shows as nothing dropped, and what IDNA 2003 maps to nothing (its table B.1, a
    # Mongolian soft hyphen among them): after the root's dot either left IDNA 2003 an empty
    # label, and each count of them was a mailbox of its own.
    shown = "".join(c for c in domain if not (ignorable(c) or stringprep.in_table_b1(c)))
    return _folded(shown).rstrip(".\u3002\uff0e\uff61")
