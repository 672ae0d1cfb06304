"""What of a text is shown: Unicode's default-ignorable code points are not (a zero-width
space, a soft hyphen, a variation selector), so a text of only those, and spaces, says
nothing, however long it is."""

from __future__ import annotations

import unicodedata

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


def shows_anything(text: str) -> bool:
    """Whether the text holds a character that is neither white space nor ignorable."""
    return any(not (c.isspace() or ignorable(c)) for c in text)
