"""What of a text is shown: Unicode's default-ignorable code points are not (a zero-width
space, a soft hyphen, a variation selector), so a text of only those, and spaces, says
nothing, however long it is."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

# Unicode's Default_Ignorable_Code_Point beyond the format characters (Cf): combining and
# variation marks, fillers, tags.
_IGNORABLE = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def ignorable(c: str) -> bool:
    """Whether the character is default-ignorable: shown as nothing."""
    code = ord(c)
    return unicodedata.category(c) == "Cf" or any(lo <= code <= hi for lo, hi in _IGNORABLE)


# Not default-ignorable, nor white space, yet drawn as nothing: the blank Braille pattern,
# which passed for a name ("\u2800 asks you to complete: ...").
_BLANK = frozenset(["\u2800"])


def shows_anything(text: str) -> bool:
    """Whether the text holds a character that is neither white space, ignorable nor blank."""
    return any(not (c.isspace() or ignorable(c) or c in _BLANK) for c in text)


# Embedding, override and isolate controls, which reorder the text that follows them, and the
# marks that move what stands beside them (left-to-right, right-to-left, Arabic letter).
BIDI = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_BREAKS = frozenset({"Cc", "Zl", "Zp"})  # Unicode's categories of controls and separators


def has_control(text: str, *, lines: bool = False) -> bool:
    """Whether ``text`` holds a control character (C0, DEL or C1: U+0085 ends a line too) or a
    line or paragraph separator (U+2028, U+2029); with ``lines``, line feeds and tabs pass."""
    return any(unicodedata.category(c) in _BREAKS and not (lines and c in "\n\t") for c in text)


_JOINERS = frozenset(["\u200c", "\u200d"])
_SELECTORS = frozenset(map(chr, range(0xFE00, 0xFE10)))


# Ideographs, where a variation selector of the ideographic set picks a registered glyph
# (a family name written as its bearer writes it).
_IDEOGRAPHS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
# The ideographs Unicode assigned after this Python's tables (14.0): one in extension C and
# extensions I and H (as 15.1's tables list them), and extension J (17.0). Only these, not
# their blocks' unassigned tails: elsewhere in planes 2 and 3 nothing is assigned, and a run
# of such code points shows as nothing, or boxes, while it carries whatever bits were put in.
_NEWER_IDEOGRAPHS = ((0x2B739, 0x2B739), (0x2EBF0, 0x2EE5D), (0x31350, 0x323AF), (0x323B0, 0x33479))
_IDEOGRAPHIC_SELECTORS = (0xE0100, 0xE01EF)
_MONGOLIAN_LETTERS, _MONGOLIAN_SELECTORS = (0x1820, 0x18AF), (0x180B, 0x180F)
# A keycap emoji (1\ufe0f\u20e3) is a digit, # or *, the emoji selector, then the keycap that
# encloses them, which shows.
_KEYCAP_BASES, _KEYCAP = frozenset("0123456789#*"), "\u20e3"
# The flags of England, Scotland and Wales: a black flag, tag letters spelling the place, a
# cancel tag. Only these three: any other run of tags would carry ASCII no reader sees.
_SUBDIVISION_FLAGS = re.compile(
    "|".join(
        "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in place) + "\U000e007f"
        for place in ("gbeng", "gbsct", "gbwls")
    )
)


def _within(c: str, span: tuple[int, int]) -> bool:
    return bool(c) and span[0] <= ord(c) <= span[1]


def hides_something(text: str) -> bool:
    """Whether ``text`` holds a character shown as nothing (or not assigned yet) other than a
    joiner between two characters beyond ASCII that show, or one variation selector after such
    a character (an emoji's selector may precede its joiner), as emoji and Persian need; the
    selector of a keycap emoji (a digit, # or * then U+FE0F U+20E3) and the tags of the flags
    of England, Scotland and Wales; one ideographic variation selector after an ideograph, or
    a Mongolian one after a Mongolian letter, as names written in them need."""
    # Each checked as the black flag it is drawn over, in one pass: replaced one flag after
    # another, England's flag followed by Scotland's tags alone became Scotland's flag, and then
    # a black flag, and tags that showed nothing passed.
    text = _SUBDIVISION_FLAGS.sub("\U0001f3f4", text)
    for i, c in enumerate(text):
        if not (ignorable(c) or unicodedata.category(c) == "Cn"):
            continue
        before = text[i - 1] if i else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if _newer_ideograph(c):
            continue
        if c in _SELECTORS and _shows_beyond_ascii(before):
            continue
        if c == "\ufe0f" and before in _KEYCAP_BASES and after == _KEYCAP:
            continue
        if _within(c, _IDEOGRAPHIC_SELECTORS) and any(_within(before, s) for s in _IDEOGRAPHS):
            continue
        if _within(c, _MONGOLIAN_SELECTORS) and _within(before, _MONGOLIAN_LETTERS):
            continue
        joined = _shows_beyond_ascii(before) or (before in _SELECTORS and i > 1)
        if c in _JOINERS and joined and _shows_beyond_ascii(after):
            continue
        return True
    return False


def _newer_ideograph(c: str) -> bool:
    return any(_within(c, block) for block in _NEWER_IDEOGRAPHS)


def _shows_beyond_ascii(c: str) -> bool:
    if _newer_ideograph(c):
        return True
    return c > "\x7f" and not (
        c.isspace() or ignorable(c) or c in _BLANK or unicodedata.category(c) == "Cn"
    )


Unshown = Literal["reorders", "control", "hides"]


def shown_otherwise(text: str, *, lines: bool = False) -> Unshown | None:
    """What in ``text`` would show it otherwise than it is stored, hashed and printed: a
    character that reorders it ("reorders"), a control character or line break ("control";
    with ``lines``, line feeds and tabs pass), or a character shown as nothing ("hides");
    None if nothing does. Each caller words the refusal for what the text is."""
    if any(ord(c) in BIDI for c in text):
        return "reorders"
    if has_control(text, lines=lines):
        return "control"
    if hides_something(text):
        return "hides"
    return None


_NAME_REFUSALS: dict[Unshown, str] = {
    "reorders": "A name may not hold characters that reorder text.",
    "control": "A name is one line of text, without control characters.",
    "hides": "A name may not hold characters that show as nothing.",
}


def plain_name(name: str) -> str:
    """A name shown as it is stored, on one line (a counterparty's, a contact's): nothing that
    reorders it, breaks it, or shows as nothing, and something that shows."""
    problem = shown_otherwise(name)
    if problem is not None:
        raise ValueError(_NAME_REFUSALS[problem])
    if not shows_anything(name):
        raise ValueError(_NAME_REFUSALS["hides"])
    return name
