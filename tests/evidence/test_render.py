"""Render slots: a slot is held while its render's thread runs, even after the request that
asked for the render has gone (cancelled), so the slots still bound how many renders run."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.evidence import render
from app.evidence.local_storage import LocalStorage
from app.evidence.storage import FirmPlace


async def _until(check: Any, seconds: float = 5.0) -> None:
    """Polls: what it waits for happens in another thread, which has no event to set."""
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _nothing() -> None:
    pass


@pytest.mark.parametrize("outcome", ["returns", "raises", "crashes"])
async def test_a_cancelled_render_keeps_its_slot_until_its_thread_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    started, finish = threading.Event(), threading.Event()
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))

    def blocking(pack: Any, signer: Any) -> Any:
        started.set()
        finish.wait(10)
        if outcome == "raises":  # render_pdf has logged its cause
            raise render.RenderError("The PDF could not be rendered.")
        if outcome == "crashes":  # what render_pdf does not catch
            raise ValueError("a font went missing")
        return "rendered"

    monkeypatch.setattr(render, "render_pdf", blocking)
    slots = asyncio.Semaphore(1)
    try:
        caller = asyncio.create_task(render.render(slots, None, None, _nothing))  # type: ignore[arg-type]
        await _until(started.is_set)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert slots.locked()  # the thread still renders: nobody else may start one
        finish.set()
        await _until(lambda: not slots.locked())
        await asyncio.sleep(0.05)
        gc.collect()  # an unretrieved failure is reported when its future is collected
        assert reported == []  # an abandoned render's failure is not reported as unretrieved
        logged = [r for r in caplog.records if r.message == "evidence pack render failed"]
        assert len(logged) == (outcome == "crashes")  # with nobody waiting, it is logged here
    finally:
        finish.set()
        loop.set_exception_handler(None)


async def test_a_render_answers_its_caller_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "render_pdf", lambda *_: "rendered")
    slots = asyncio.Semaphore(1)
    assert await render.render(slots, None, None, _nothing) == "rendered"  # type: ignore[arg-type]
    assert not slots.locked()

    def failing(pack: Any, signer: Any) -> Any:
        raise render.RenderError("The PDF could not be rendered.")

    monkeypatch.setattr(render, "render_pdf", failing)
    with pytest.raises(render.RenderError):
        await render.render(slots, None, None, _nothing)  # type: ignore[arg-type]
    assert not slots.locked()


@pytest.mark.parametrize("cancelled", ["rendering", "waiting for a slot"])
async def test_a_cancelled_render_keeps_its_firms_place_until_its_thread_ends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cancelled: str
) -> None:
    """With two slots a firm may make one pack at a time: a request cancelled while its
    render's thread runs must not let the firm start another beside it, nor one cancelled
    while it waited for a slot keep the firm's place."""
    started, finish = threading.Event(), threading.Event()

    def blocking(pack: Any, signer: Any) -> Any:
        started.set()
        finish.wait(10)
        return "rendered"

    monkeypatch.setattr(render, "render_pdf", blocking)
    storage = LocalStorage(tmp_path, render_concurrency=2)
    firm = uuid.uuid4()

    async def make_pack() -> Any:
        async with storage.admit(firm) as place:
            return await render.render(storage.render_slots, None, None, place.hold())  # type: ignore[arg-type]

    try:
        if cancelled == "waiting for a slot":
            for _ in range(2):
                await storage.render_slots.acquire()  # every slot taken elsewhere
        caller = asyncio.create_task(make_pack())
        if cancelled == "rendering":
            await _until(started.is_set)
        else:
            await _until(lambda: storage.firm_busy(firm))
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        if cancelled == "rendering":
            assert storage.firm_busy(firm)  # its thread still renders, in one of the slots
            finish.set()
            await _until(lambda: not storage.firm_busy(firm))
        else:
            assert not storage.firm_busy(firm)  # no render started: nothing holds it
            assert not started.is_set()
    finally:
        finish.set()


async def test_a_finished_pack_gives_its_firms_place_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(render, "render_pdf", lambda *_: "rendered")
    storage = LocalStorage(tmp_path, render_concurrency=2)
    firm = uuid.uuid4()
    async with storage.admit(firm) as place:
        assert storage.firm_busy(firm)
        assert await render.render(storage.render_slots, None, None, place.hold()) == "rendered"  # type: ignore[arg-type]
        assert storage.firm_busy(firm)  # the pack is still being stored
    assert not storage.firm_busy(firm)
    assert not storage.render_slots.locked()


def test_a_firms_place_is_given_up_once_by_its_last_holder() -> None:
    given_up: list[bool] = []
    place = FirmPlace(lambda: given_up.append(True))
    let_go = place.hold()
    place.let_go()
    assert given_up == []  # the render still holds it
    let_go()
    assert given_up == [True]
    with pytest.raises(RuntimeError):
        place.let_go()
    assert given_up == [True]
