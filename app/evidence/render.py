"""Render a pack's content to PDF with xhtml2pdf, off the event loop and with bounded
concurrency.

Rendering is CPU-bound pure Python (seconds for hundreds of declarations), so it runs in a
worker thread while the event loop keeps serving other requests; the app-wide semaphore caps how
many renders wait on or hold a worker at once. xhtml2pdf itself serialises conversions within a
process (ReportLab keeps fonts in module globals), so more slots only queue more work.

The PDF is signed (PAdES, ``app/evidence/signature.py``) before its SHA-256 is taken, so the
hash on the record and in the audit trail is of the file a firm downloads.

Text stays real text (selectable, searchable, read back by tests with pypdf). DejaVu Sans is
embedded where the system has it, so names in any European script render; otherwise the PDF
falls back to the standard Helvetica/Courier. The renderer may read only that font folder and
nothing on the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pypdf import PdfReader
from xhtml2pdf import pisa  # type: ignore[import-untyped]
from xhtml2pdf.config.resources import (  # type: ignore[import-untyped]
    RenderLimitError,
    ResourceAccessPolicy,
)

from app.evidence import document
from app.evidence.content import PackContent
from app.evidence.signature import PackSigner

log = logging.getLogger("coverproof.evidence")

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT_FILES = {
    ("CPSans", "normal"): "DejaVuSans.ttf",
    ("CPSans", "bold"): "DejaVuSans-Bold.ttf",
    ("CPMono", "normal"): "DejaVuSansMono.ttf",
}
MAX_RENDER_SECONDS = 240
# The renderer holds some 170 times the document in memory (500 declarations: 2 MB of HTML,
# some 340 MB), so content, not counts, bounds a render: 1,000 declarations of ordinary
# answers fit; 1,000 of 100 KB answers would take the process down. It is counted as the
# content is read (collect) and as the document is made (``within_limit``), never once made:
# the memory a refused pack takes is bounded by it, not by the pack's scope.
MAX_DOCUMENT_BYTES = 8 * 2**20
MAX_DEPTH = 64


class RenderError(Exception):
    """The PDF could not be made; the message is safe to show the firm."""


class TooLarge(RenderError):
    """The pack's content passed MAX_DOCUMENT_BYTES; ``size`` bytes of it were counted when it
    did, and no more was read or made."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The pack is too large to render (at least {size / 2**20:.1f} MB of content, at "
            f"most {MAX_DOCUMENT_BYTES / 2**20:.0f} MB): choose fewer declarations or a shorter "
            "period."
        )


@dataclass(frozen=True)
class RenderedPack:
    pdf: bytes
    sha256: bytes
    page_count: int


@cache
def _fonts() -> tuple[str, str, str, Path | None]:
    """(body family, mono family, @font-face rules, the folder they come from)."""
    for folder in FONT_DIRS:
        if all((folder / name).is_file() for name in FONT_FILES.values()):
            faces = "".join(
                f'@font-face {{ font-family: {family}; src: url("{folder / name}");'
                f" font-weight: {weight}; }}\n"
                for (family, weight), name in FONT_FILES.items()
            )
            return "CPSans", "CPMono", faces, folder
    log.warning("DejaVu fonts not found; evidence packs use Helvetica (Latin-1 text only)")
    return "Helvetica", "Courier", "", None


def resource_policy() -> ResourceAccessPolicy:
    """What a render may read: the font folder, nothing else, nothing remote; and how long."""
    folder = _fonts()[3]
    return ResourceAccessPolicy(
        allow_remote=False,
        base_dir=None,
        extra_roots=(folder,) if folder else (),
        max_render_seconds=MAX_RENDER_SECONDS,
        max_document_bytes=MAX_DOCUMENT_BYTES,
        max_depth=MAX_DEPTH,
    )


def within_limit(parts: Iterable[str]) -> str:
    """``parts`` joined, counted (in UTF-8) as each is made, and refused (``TooLarge``) as soon
    as they pass MAX_DOCUMENT_BYTES, before the rest are made: escaping alone makes an answer of
    ``&`` five times as long as collect counted it, so a document measured once built had been
    built, and encoded again, at whatever size its scope gave it."""
    kept: list[str] = []
    size = 0
    for part in parts:
        size += len(part.encode())
        if size > MAX_DOCUMENT_BYTES:
            raise TooLarge(size)
        kept.append(part)
    return "".join(kept)


def render_pdf(pack: PackContent, signer: PackSigner) -> RenderedPack:
    """The pack as signed PDF bytes, with their SHA-256 and page count (blocking, and the
    signing runs its own event loop: call it from a worker thread)."""
    font, mono, faces, _ = _fonts()
    html = within_limit(document.parts(pack, font, mono, faces))
    policy = resource_policy()
    out = io.BytesIO()
    try:
        status = pisa.CreatePDF(html, dest=out, encoding="utf-8", resource_policy=policy)
    except RenderLimitError as error:  # the time a render may take, most likely
        log.warning("evidence pack %s went past a render limit: %s", pack.pack_id, error)
        raise RenderError(
            "The pack is too large to render in the time a pack may take: choose fewer "
            "declarations or a shorter period."
        ) from error
    except Exception as error:
        log.exception("evidence pack %s did not render", pack.pack_id)
        raise RenderError("The PDF could not be rendered.") from error
    if status.err:
        log.error("evidence pack %s rendered with %d error(s)", pack.pack_id, status.err)
        raise RenderError("The PDF could not be rendered.")
    try:
        pdf = signer.sign(out.getvalue(), pack.pack_id)
    except Exception as error:
        log.exception("evidence pack %s could not be signed", pack.pack_id)
        raise RenderError("The PDF could not be signed.") from error
    try:
        pages = len(PdfReader(io.BytesIO(pdf)).pages)
    except Exception as error:  # a PDF its own reader cannot count is no pack
        log.exception("evidence pack %s could not be read back", pack.pack_id)
        raise RenderError("The PDF could not be read back.") from error
    return RenderedPack(pdf=pdf, sha256=hashlib.sha256(pdf).digest(), page_count=pages)


async def render(
    slots: asyncio.Semaphore,
    pack: PackContent,
    signer: PackSigner,
    ended: Callable[[], None],
) -> RenderedPack:
    """Render and sign in a worker thread, holding one of the app's render slots until the
    thread ends, even when the caller is cancelled first: a thread cannot be stopped, and a
    slot freed early would let more renders run at once than there are slots. ``ended`` is
    called once the slot is given up: it lets go of the firm's place (``FirmPlace.hold``),
    which is the render's to hold for as long."""
    try:
        await slots.acquire()
    except BaseException:
        ended()
        raise
    try:
        work = asyncio.ensure_future(asyncio.to_thread(render_pdf, pack, signer))
    except BaseException:
        slots.release()
        ended()
        raise
    work.add_done_callback(_release(slots, ended))
    return await asyncio.shield(work)


def _release(
    slots: asyncio.Semaphore, ended: Callable[[], None]
) -> Callable[[asyncio.Future[RenderedPack]], None]:
    def done(work: asyncio.Future[RenderedPack]) -> None:
        slots.release()
        ended()
        if work.cancelled():
            return
        error = work.exception()  # retrieved, so asyncio does not report it again
        if error is not None and not isinstance(error, RenderError):
            # render_pdf logs what it catches; this, nobody else would see if the caller is
            # gone (a caller still waiting gets it too, and its request logs it again).
            log.error("evidence pack render failed", exc_info=error)

    return done
