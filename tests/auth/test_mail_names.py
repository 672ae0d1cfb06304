"""Names a firm gives, as mails from our address carry them: what passes and what does not."""

from __future__ import annotations

import pytest

from app.auth.mails import name_for_mail
from app.ratelimit.mailbox import mailbox
from app.visible import hides_something, plain_name


@pytest.mark.parametrize(
    "name",
    [
        "J.P. Morgan Ltd",
        "Smith & Co. Ltd",
        "A.B.C. Ltd",
        "St. James's Place",
        "Fit and proper (v2.1)",
        "Conflicts Policy.pdf",
        "Rates v3.xlsx",
        "Smith-Jones Ltd",
        "PI cover 2026/27",
    ],
)
def test_ordinary_names_pass(name: str) -> None:
    """Initials, versions and a file's name are no host name: a firm writes them as it likes."""
    assert name_for_mail(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Co.Ltd",
        "Bonus.zip",
        "Acme _forms.example",
        "Acme forms.example-",
        "forms\u200b.example",
        "coverproof\u180b.app",
        "coverproof-secure\u034f.example",
        "forms\ufe0f.example",
    ],
)
def test_what_a_mail_client_would_link_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="domain name"):
        name_for_mail(name)


def test_one_mailbox_however_it_is_spelled() -> None:
    spellings = [
        "J.Doe+x@GoogleMail.com",
        "jdoe@gmail.com",
        "j.d.o.e+y@gmail.com",
        '"jdoe"@gmail.com',  # quoted: the same local part
        '"j\\doe+z"@gmail.com',  # a quoted pair: j then d
    ]
    assert {mailbox(s) for s in spellings} == {"jdoe@gmail.com"}
    assert mailbox("j.doe@example.test") == "j.doe@example.test"  # dots count elsewhere
    assert mailbox('"alice"@example.test') == "alice@example.test"


@pytest.mark.parametrize(
    "name",
    [
        "\u200b",  # a name that shows as nothing: an anonymous request from our address
        "\u2060",
        "\ufeff",
        "Acme\U000e0041\U000e0042 Ltd",  # tag characters: words no reader sees
        "Acme\u200b Ltd",
    ],
)
def test_a_name_that_shows_as_nothing_or_hides_something_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="show as nothing"):
        name_for_mail(name)


def test_a_joined_emoji_or_persian_name_passes() -> None:
    for name in [
        "Smith \U0001f468\u200d\U0001f4bc Ltd",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    ]:
        assert name_for_mail(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "\u8fbb\U000e0100 \u592a\u90ce",  # an ideographic variation selector: the registered glyph
        "\u845b\U000e0100\u98fe \u5317\u658e",
        "\u182e\u1823\u1829\u182d\u1823\u182f\u180e\u1820",  # Mongolian, its vowel separator
        "\u5f20 \U00031350",  # an ideograph newer than this Python's tables (Unicode 15)
    ],
)
def test_names_people_write_with_selectors_pass(name: str) -> None:
    assert plain_name(name) == name
    assert name_for_mail(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "\u8fbb\U000e0100\U000e0101 \u592a\u90ce",  # two selectors: bits, not a glyph
        "Acme\U000e0100 Ltd",  # an ideographic selector after a letter
        "Acme\u180b Ltd",  # a Mongolian one after a letter
    ],
)
def test_selectors_where_no_script_needs_them_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="show as nothing"):
        plain_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "Acme Ltd" + "".join(chr(0x3A000 + b) for b in b"wire 5000"),  # bits in plane 3
        "Acme\U0003ffff\U0002fffe Ltd",  # noncharacters
        "Acme\U0003a000\ufe0f\u200d\U0003a001 Ltd",
    ],
)
def test_code_points_no_block_holds_are_refused(name: str) -> None:
    """Only the blocks of ideographs newer than this Python's tables pass unassigned: nothing
    is assigned elsewhere in planes 2 and 3, and such a run carries bits no one reads."""
    with pytest.raises(ValueError, match="show as nothing"):
        plain_name(name)


def test_an_ideograph_added_to_an_older_block_passes_and_a_blocks_unassigned_tail_does_not() -> (
    None
):
    """U+2B739 (extension C, Unicode 15.0) is an ideograph; U+2EE5E and U+3347A lie past the
    last ideographs of extensions I and J, assigned to nothing."""
    assert plain_name("\u738b\U0002b739") == "\u738b\U0002b739"
    for name in ["\U0002ee5e\U0002ee5f", "\U0003347a\U0003347b\U0003347c"]:
        with pytest.raises(ValueError, match="show as nothing"):
            plain_name(name)


def _tags(letters: str) -> str:
    return "".join(chr(0xE0000 + ord(c)) for c in letters)


ENGLAND = "\U0001f3f4" + _tags("gbeng") + "\U000e007f"


@pytest.mark.parametrize(
    "name",
    [
        f"Rose Ltd {ENGLAND}",
        "Thistle Ltd \U0001f3f4" + _tags("gbsct") + "\U000e007f",
        "Dragon Ltd \U0001f3f4" + _tags("gbwls") + "\U000e007f",
        "Step 1\ufe0f\u20e3 Ltd",  # a keycap: the selector between the digit and the keycap
        "Hash #\ufe0f\u20e3 and star *\ufe0f\u20e3",
    ],
)
def test_the_home_nations_flags_and_keycaps_pass(name: str) -> None:
    assert not hides_something(name)
    assert plain_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Acme \U0001f3f4" + _tags("wire5000") + "\U000e007f",  # tags of other letters: ASCII unseen
        "Acme \U0001f3f4" + _tags("gbeng"),  # no cancel tag
        "Acme " + _tags("gbeng") + "\U000e007f",  # no black flag
        "Acme " + ENGLAND + _tags("x"),  # a tag after the flag
        # Another flag's tags alone after a flag: read as a flag once the first was, they passed.
        "Acme " + ENGLAND + _tags("gbsct") + "\U000e007f",
        "Acme \U0001f3f4" + _tags("gbsct") + "\U000e007f" + _tags("gbwls") + "\U000e007f",
        "Acme \U0001f3f4" + _tags("GBENG") + "\U000e007f",  # not the flag's letters
        "Step 1\ufe0f done",  # a keycap's selector without the keycap
        "Step A\ufe0f\u20e3",  # the selector after a letter
        "Step 1\ufe0f\ufe0f\u20e3",  # two selectors
    ],
)
def test_tags_and_selectors_outside_those_sequences_are_refused(name: str) -> None:
    assert hides_something(name)
    with pytest.raises(ValueError, match="show as nothing"):
        plain_name(name)
