"""The pack as print HTML for xhtml2pdf: cover, summary, each declaration, cover status and
the audit appendix, with the pack id and page numbers in every page's footer.

Every piece of recorded text goes through ``html.escape``: answers, names and titles are data
and can never become markup (nor reach for a file or URL while rendering).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from html import escape

from app.declarations.answers import MAX_LINES
from app.evidence.content import (
    CheckpointContent,
    DeclarationContent,
    PackContent,
    VerificationContent,
)

# overflow-wrap: a word wider than its line (a long one, or words joined by no-break spaces)
# is split to fit, where it ran off the page: out of the reader's sight, though in the file.
CSS = """
@page {
  size: a4 portrait;
  margin: 1.8cm 1.8cm 2.4cm 1.8cm;
  @frame footer {
    -pdf-frame-content: page-footer;
    left: 1.8cm; width: 17.4cm; bottom: 0.9cm; height: 1cm;
  }
}
body { font-family: %(font)s; font-size: 9pt; line-height: 1.3; color: #111;
  overflow-wrap: break-word; }
h1 { font-size: 20pt; margin: 0 0 8pt 0; }
h2 { font-size: 13pt; margin: 14pt 0 4pt 0; -pdf-keep-with-next: true; }
h3 { font-size: 10.5pt; margin: 10pt 0 3pt 0; padding-top: 4pt; border-top: 0.5pt solid #999;
  -pdf-keep-with-next: true; }
p { margin: 0 0 4pt 0; }
p.f { margin: 0 0 1pt 0; }
p.q { margin: 3pt 0 0 0; color: #333; }
p.a { margin: 0 0 2pt 12pt; font-weight: bold; }
table { width: 100%%; margin: 0 0 6pt 0; }
th { background-color: #e8e8e8; text-align: left; font-weight: bold; }
th, td { border: 0.5pt solid #999; padding: 2pt 3pt; vertical-align: top; }
td.label { width: 32%%; background-color: #f5f5f5; }
.hash { font-family: %(mono)s; font-size: 7pt; }
.small { font-size: 7.5pt; }
.ok { color: #0a6b1f; font-weight: bold; }
.bad { color: #a00000; font-weight: bold; }
#page-footer { font-size: 7.5pt; color: #444; }
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _lines(value: str | None, first: str = "") -> str:
    """The text as paragraphs, one per line (``first`` before the first): HTML reads a line
    break as a space, and a long answer's paragraphs ran into one. A paragraph each, not one
    with breaks: xhtml2pdf lays out a paragraph in time that grows with the square of its
    breaks, and a recipient's 5,000 line feeds took a pack past its time to render."""
    lines = ("" if value is None else value).split("\n")
    lines[0] = first + lines[0]
    # Answers are held to MAX_LINES as they are given; one stored before that, with thousands,
    # prints its lines past them as one paragraph, as HTML ran them together before.
    if len(lines) > MAX_LINES:
        lines[MAX_LINES - 1 :] = [" ".join(lines[MAX_LINES - 1 :])]
    return "".join(f'<p class="a">{_e(line) or "&#160;"}</p>' for line in lines)


def _rows(pairs: Iterable[tuple[str, object]], mono: frozenset[str] = frozenset()) -> str:
    """A two-column table of label and value (a value of None reads "-")."""
    cells = "".join(
        f'<tr><td class="label">{_e(label)}</td><td class="{"hash" if label in mono else "v"}">'
        f"{_e('-' if value is None else value)}</td></tr>"
        for label, value in pairs
    )
    return f"<table>{cells}</table>"


def _facts(pairs: Iterable[tuple[str, object]], mono: frozenset[str] = frozenset()) -> str:
    """Label: value lines. Paragraphs, not tables, where a pack repeats them per declaration:
    xhtml2pdf lays out table cells several times slower, and big packs must stay quick."""
    return "".join(
        f'<p class="f"><b>{_e(label)}:</b> <span class="{"hash" if label in mono else "v"}">'
        f"{_e('-' if value is None else value)}</span></p>"
        for label, value in pairs
    )


# Rows of one table: xhtml2pdf lays a table out again at each page it spans, so a long one
# takes time growing with the square of its rows (2,000 entries in one table: 132 s; in tables
# of 40 rows: 29 s), and a pack well within its limits outran the render's.
TABLE_ROWS = 40


def _tables(header: str, rows: list[str]) -> str:
    """``rows`` (each one or more <tr>) in tables of at most TABLE_ROWS, each headed."""
    return "".join(
        f'<table repeat="1">{header}{"".join(rows[i : i + TABLE_ROWS])}</table>'
        for i in range(0, len(rows), TABLE_ROWS)
    )


def _header(*columns: tuple[str, int]) -> str:
    """A header row of (title, width in percent) cells."""
    cells = "".join(f'<th width="{width}%">{_e(title)}</th>' for title, width in columns)
    return f"<tr>{cells}</tr>"


def _cover(pack: PackContent) -> str:
    scope = [
        ("Firm", pack.firm_name),
        ("FCA firm reference number", pack.firm_frn or "Not recorded"),
        ("Pack", pack.title),
        ("Pack id", pack.pack_id),
        ("Period", f"{pack.period_from.isoformat()} to {pack.period_to.isoformat()} (UTC)"),
        ("Declarations", _declarations_scope(pack)),
        ("Counterparties", _counterparties_scope(pack)),
        ("Generated by", pack.generated_by),
        ("Generated at", pack.generated_at),
    ]
    return (
        f"<h1>Evidence pack</h1><p>{_e(pack.title)}</p>{_rows(scope)}"
        '<p class="small">This pack was generated by CoverProof from the firm\'s records at the '
        "time shown. Each response carries the SHA-256 of its canonical content, recorded when "
        "it was submitted; the audit appendix lists every entry of the tamper-evident audit "
        "trail about the declarations and counterparties in this pack, whenever made, and the "
        "result of verifying the whole chain when the pack was made.</p>"
    )


def _declarations_scope(pack: PackContent) -> str:
    """Which declarations the pack holds, as collect.scoped_declarations chose them."""
    if pack.declaration_filter is not None:
        return (
            f"The {_count(pack.declaration_filter, 'declaration')} named in the request, "
            "whatever their dates"
        )
    if pack.counterparty_filter is not None:
        return (
            "Only those created or submitted in the period for the "
            f"{_count(pack.counterparty_filter, 'counterparty')} named in the request"
        )
    return "All declarations created or submitted in the period"


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


def _counterparties_scope(pack: PackContent) -> str:
    if pack.counterparty_filter is not None:
        return f"The {_count(pack.counterparty_filter, 'counterparty')} named in the request"
    return "All counterparties of those declarations"


def _summary(pack: PackContent) -> str:
    if not pack.declarations:
        return "<h2>Summary</h2><p>No declarations are in scope.</p>"
    rows = [
        f"<tr><td>{n}</td><td>{_e(d.recipient_name)}</td><td>{_e(d.template_name)}</td>"
        f"<td>{_e(d.status)}</td><td>{_e(d.submitted_at or '-')}</td></tr>"
        for n, d in enumerate(pack.declarations, 1)
    ]
    header = _header(
        ("#", 5), ("Recipient", 27), ("Template", 33), ("Status", 12), ("Submitted at", 23)
    )
    return f"<h2>Summary: {len(pack.declarations)} declaration(s)</h2>{_tables(header, rows)}"


COVERS_FORM = "The response and the form above, as it was sent"
COVERS_RESPONSE = (
    "The response only: given before receipts covered the form, so nothing shows whether the "
    "form above was reworded since"
)


def _declaration(n: int, d: DeclarationContent) -> str:
    facts = [
        ("Recipient", f"{d.recipient_name} <{d.recipient_email}>"),
        ("Template", f"{d.template_name} (version {d.template_version})"),
        ("Counterparty", d.counterparty),
        ("Status", d.status),
        ("Declaration id", d.id),
        ("Created at", d.created_at),
        ("Sent at", d.sent_at),
    ]
    parts = [f"<h3>{n}. {_e(d.recipient_name)}: {_e(d.template_name)}</h3>", _facts(facts)]
    if d.submitted_at is None:
        parts.append("<p>No response has been submitted.</p>")
        return "".join(parts)
    answers = "".join(
        f'<p class="q">{_e(a.question)}</p>{_lines(a.answer)}'
        + (_lines(a.explanation, "Explanation: ") if a.explanation else "")
        for a in d.answers
    )
    parts.append(answers)
    accepted = {True: "Accepted", False: "Not accepted", None: "-"}[d.attestation_accepted]
    response = [
        ("Attestation", d.attestation),
        ("Attestation accepted", accepted),
        ("Signature name", d.signature_name),
        ("Submitted at", d.submitted_at),
        ("Submitted from IP", d.submitted_ip),
        ("Response SHA-256", d.response_sha256),
        ("Receipt covers", COVERS_FORM if d.receipt_covers_form else COVERS_RESPONSE),
    ]
    parts.append(_facts(response, mono=frozenset({"Response SHA-256"})))
    return "".join(parts)


def _counterparties(pack: PackContent) -> str:
    if not pack.counterparties:
        return "<h2>Counterparty cover status</h2><p>No counterparties are in scope.</p>"
    rows = [
        f"<tr><td>{_e(c.name)}</td><td>{_e(c.kind)}</td><td>{_e(c.frn or '-')}</td>"
        f"<td>{_e(c.cover)}</td><td>{_e(c.cover_until or '-')}</td></tr>"
        for c in pack.counterparties
    ]
    header = _header(("Counterparty", 34), ("Kind", 22), ("FRN", 12), ("Cover", 14), ("Until", 18))
    return f"<h2>Counterparty cover status (at {_e(pack.generated_at)})</h2>{_tables(header, rows)}"


def _verification(v: VerificationContent | None) -> str:
    if v is None:
        return ""
    verdict = '<span class="ok">INTACT</span>' if v.ok else '<span class="bad">BROKEN</span>'
    facts = [
        ("Entries checked", f"{v.entries_checked} (seq 1 to {v.head_seq})"),
        ("Chain head seq", v.head_seq),
        ("Chain head hash", v.head_hash),
        ("Signed checkpoints matched", v.checkpoints_checked),
    ]
    if v.failure:
        facts.append(("Failure", v.failure))
    return (
        f"<h3>Chain verification: {verdict}</h3>{_rows(facts, mono=frozenset({'Chain head hash'}))}"
    )


_SIGNED = (
    '<p class="small">This PDF is certified by CoverProof with a PAdES signature that allows no '
    "change after signing; the certificate is published at "
    "/.well-known/coverproof-pack-certificate.pem.</p>"
)


def _checkpoint(cp: CheckpointContent | None, key_id: str) -> str:
    if cp is None:
        return "<h3>Latest signed checkpoint</h3><p>No checkpoint has been signed yet.</p>"
    facts = [
        ("Seq", cp.seq),
        ("Head hash", cp.head_hash),
        ("Signed at", cp.signed_at),
        ("Key id", cp.key_id),
        ("Ed25519 signature (base64)", cp.signature),
    ]
    return (
        "<h3>Latest signed checkpoint</h3>"
        f"{_rows(facts, mono=frozenset({'Head hash', 'Ed25519 signature (base64)'}))}"
        f'<p class="small">The platform key in use now has id {_e(key_id)}; its public key is '
        "published at /.well-known/coverproof-audit-key, and with the keys used before it at "
        "/.well-known/coverproof-audit-keys.pem.</p>"
    )


def _appendix(pack: PackContent) -> str:
    rows = [
        f"<tr><td>{e.seq}</td><td>{_e(e.occurred_at)}</td><td>{_e(e.action)}</td>"
        f"<td>{_e(e.actor)}</td></tr>"
        + f'<tr><td></td><td colspan="3" class="hash">{_e(e.target) + "<br/>" if e.target else ""}'
        f"{_e(e.hash)}</td></tr>"
        for e in pack.entries
    ]
    header = _header(("Seq", 6), ("Time", 27), ("Action", 25), ("Actor", 42))
    table = (
        _tables(header, rows)
        if pack.entries
        else "<p>No audit entries concern these declarations or counterparties.</p>"
    )
    return (
        '<pdf:nextpage /><h2>Audit appendix</h2><p class="small">Every audit entry about a '
        "declaration or a counterparty in this pack, in chain order; under each, what it "
        "concerns (a kind of record and its id) and its SHA-256 chain hash.</p>"
        f"{table}{_verification(pack.verification)}"
        f"{_checkpoint(pack.checkpoint, pack.signing_key_id)}{_SIGNED}"
    )


def parts(pack: PackContent, font: str, mono: str, font_faces: str) -> Iterator[str]:
    """The document in order, a piece at a time (a declaration each), each made only when the
    one before has been taken: render.within_limit counts them and stops as soon as they pass
    the pack's content limit, so a document too large to render is never made whole.
    ``font_faces`` holds the @font-face rules for ``font``/``mono``."""
    footer = (
        f'<div id="page-footer">Evidence pack {_e(pack.pack_id)} &#183; {_e(pack.firm_name)}'
        " &#183; Page <pdf:pagenumber /> of <pdf:pagecount /></div>"
    )
    css = font_faces + CSS % {"font": font, "mono": mono}
    yield (
        '<!DOCTYPE html><html><head><meta charset="utf-8"/>'
        f"<title>{_e(pack.title)}</title><style>{css}</style></head><body>{footer}"
    )
    yield _cover(pack)
    yield _summary(pack)
    yield _counterparties(pack)
    if pack.declarations:
        yield "<pdf:nextpage /><h2>Declarations</h2>"
    for n, d in enumerate(pack.declarations, 1):
        yield _declaration(n, d)
    yield _appendix(pack)
    yield "</body></html>"


def build(pack: PackContent, font: str, mono: str, font_faces: str) -> str:
    """The whole document at once, uncounted (for tests and the benchmark; a pack is made with
    ``parts``, counted)."""
    return "".join(parts(pack, font, mono, font_faces))
