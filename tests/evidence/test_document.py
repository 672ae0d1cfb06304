"""What a pack shows stays on its pages: the PDF's text, as a reader sees it."""

from __future__ import annotations

import dataclasses
import io
import tracemalloc
from datetime import date

import pytest
from pypdf import PdfReader

from app.declarations.answers import MAX_LINES
from app.evidence import document, render
from app.evidence.content import Answer, DeclarationContent, EntryContent, PackContent

# Words joined by no-break spaces are one word to the line breaker, as is a run of letters.
JOINED = "\u00a0".join(["Nothing", "to", "declare.", *["filler"] * 40, "convicted"])
LONG_NAME = "Pat" + "o" * 140


class _Unsigned:
    def sign(self, pdf: bytes, pack_id: str) -> bytes:  # noqa: ARG002 (the signer's interface)
        return pdf


def _pack() -> PackContent:
    declaration = DeclarationContent(
        id="d1",
        recipient_name=LONG_NAME,
        recipient_email="pat@example.test",
        template_name="Annual review",
        template_version=1,
        status="submitted",
        counterparty=None,
        created_at="2026-11-30 09:00:00 UTC",
        sent_at="2026-11-30 09:00:00 UTC",
        submitted_at="2026-11-30 10:00:00 UTC",
        answers=[Answer("Anything to declare?", JOINED)],
        attestation="I attest.",
        attestation_accepted=True,
        signature_name="Pat",
        submitted_ip="192.0.2.1",
        response_sha256="ab" * 32,
    )
    return PackContent(
        pack_id="p1",
        title="Wide text",
        firm_name="Acme Ltd",
        firm_frn=None,
        period_from=date(2026, 11, 1),
        period_to=date(2026, 11, 30),
        declaration_filter=None,
        counterparty_filter=None,
        generated_by="Owner",
        generated_at="2026-11-30 11:00:00 UTC",
        signing_key_id="k1",
        declarations=[declaration],
    )


def test_a_word_wider_than_its_line_is_split_onto_the_page() -> None:
    """An answer of words joined by no-break spaces, or a name with no space, ran off the
    page's edge in one line: the end of the answer ("convicted") out of the reader's sight, the
    name printed over the summary's next columns. Each is now split into lines that fit."""
    rendered = render.render_pdf(_pack(), _Unsigned())  # type: ignore[arg-type]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(rendered.pdf)).pages)
    lines = text.split("\n")
    assert not [line for line in lines if "Nothing" in line and "convicted" in line]
    assert not [line for line in lines if LONG_NAME in line]
    # Split, not cut: every character is still there, in order.
    joined = "".join(lines).replace("\u00a0", " ")
    assert JOINED.replace("\u00a0", " ") in joined
    assert LONG_NAME in joined


def test_long_tables_are_split_and_each_entry_says_what_it_concerns() -> None:
    """xhtml2pdf lays a table out again at each page it spans, its time growing with the
    square of its rows: the appendix of a pack within its limits (a few thousand entries) ran
    past the render's four minutes. Tables hold at most TABLE_ROWS rows each, headed; and an
    entry names the record it concerns, which the appendix left out."""
    entries = [
        EntryContent(
            n,
            "2026-11-30 10:00:00 UTC",
            "declaration.sent",
            "Owner",
            f"declaration d{n}",
            "ab" * 32,
        )
        for n in range(1, 2 * document.TABLE_ROWS + 2)
    ]
    html = document.build(dataclasses.replace(_pack(), entries=entries), "F", "M", "")
    appendix = html[html.index("<h2>Audit appendix</h2>") :]
    assert appendix.count("<table") == 3
    assert appendix.count("<th") == 3 * 4
    rendered = render.render_pdf(dataclasses.replace(_pack(), entries=entries[:3]), _Unsigned())  # type: ignore[arg-type]
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(rendered.pdf)).pages)
    assert "declaration d3" in text


def test_a_pack_past_the_render_time_says_to_narrow_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The largest packs within the counts (1,000 declarations and 10,000 entries) can take
    longer than a render may: the firm is told to narrow the pack, not only that it failed."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.01)
    entries = [
        EntryContent(n, "2026-11-30 10:00:00 UTC", "declaration.sent", "Owner", "", "ab" * 32)
        for n in range(1, 400)
    ]
    with pytest.raises(render.RenderError, match="fewer declarations or a shorter period"):
        render.render_pdf(dataclasses.replace(_pack(), entries=entries), _Unsigned())  # type: ignore[arg-type]


def test_the_cover_says_what_the_audit_appendix_holds() -> None:
    """It said the appendix lists the trail "for the period": a reader would take it for the
    firm's whole trail of those days, where it holds every entry about the pack's declarations
    and counterparties, whenever made, and none of the firm's others (docs/api.md)."""
    html = document.build(_pack(), "F", "M", "")
    cover = html[: html.index("<h2>")]
    assert "for the period" not in cover
    assert "about the declarations and counterparties in this pack, whenever made" in cover


def test_an_answers_lines_stay_lines() -> None:
    """A long answer's paragraphs, and its explanation's, are printed as the recipient wrote
    them: HTML reads a line break as a space, and they ran together into one line."""
    written = Answer("Describe it", "First paragraph.\nSecond paragraph.", "Why:\nbecause.")
    pack = _pack()
    declaration = dataclasses.replace(pack.declarations[0], answers=[written])
    pack = dataclasses.replace(pack, declarations=[declaration])
    rendered = render.render_pdf(pack, _Unsigned())  # type: ignore[arg-type]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(rendered.pdf)).pages)
    lines = [line.strip() for line in text.split("\n")]
    assert "First paragraph." in lines
    assert "Second paragraph." in lines
    assert "Explanation: Why:" in lines
    assert "because." in lines


def test_an_answers_lines_are_paragraphs_not_breaks_in_one() -> None:
    """xhtml2pdf lays out a paragraph in time that grows with the square of its line breaks:
    an answer of 5,000 line feeds, printed as one paragraph of breaks, took a pack past its
    time to render. Each line is a paragraph of its own, which takes time in proportion."""
    lines = MAX_LINES
    written = Answer("History", "a" + "\n" * (lines - 1) + "b", "x\ny")
    pack = _pack()
    declaration = dataclasses.replace(pack.declarations[0], answers=[written])
    html = document.build(dataclasses.replace(pack, declarations=[declaration]), "f", "m", "")
    assert "<br" not in html[html.index("History") :]
    assert html.count('<p class="a">') == lines + 2


def test_an_answer_stored_with_more_lines_than_allowed_prints_the_rest_as_one() -> None:
    """Answers are held to MAX_LINES as given; one stored before, with thousands of lines,
    prints those past them as one paragraph, every word still there, rather than a paragraph
    each, which took a pack past its time to render."""
    written = Answer("History", "\n".join(f"w{n}" for n in range(5_000)))
    pack = _pack()
    declaration = dataclasses.replace(pack.declarations[0], answers=[written])
    html = document.build(dataclasses.replace(pack, declarations=[declaration]), "f", "m", "")
    assert html.count('<p class="a">') == MAX_LINES
    rest = " ".join(f"w{n}" for n in range(MAX_LINES - 1, 5_000))
    assert f'<p class="a">{rest}</p>' in html


def test_a_document_past_its_limit_is_refused_before_it_is_made_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The document is counted as it is made, a declaration at a time, and refused once it
    passes the limit (1 MB here): escaping makes an answer of ``&`` five times as long, so 800
    kB of answers, within what collect counts, would have built 4 MB, and encoded it again,
    before it was measured."""
    monkeypatch.setattr(render, "MAX_DOCUMENT_BYTES", 2**20)
    answers = [Answer(f"Question {i}", "&" * 20_000) for i in range(4)]
    declaration = dataclasses.replace(_pack().declarations[0], answers=answers)
    pack = dataclasses.replace(_pack(), declarations=[declaration] * 10)
    tracemalloc.start()
    try:
        with pytest.raises(render.RenderError) as refused:
            render.render_pdf(pack, _Unsigned())  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # What was kept (under 1 MB), and the declaration that passed it (400 kB) and its UTF-8.
    assert peak < 2.5 * 2**20, peak
    assert str(refused.value).startswith("The pack is too large to render (at least 1.")
