"""Fixtures the fast-path tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette

from app.schema.fastpath import FastPathState


@pytest.fixture
def state(app: Starlette) -> Iterator[FastPathState]:
    """The app's fast-path switch and counters; switched back on after the test."""
    fast_path: FastPathState = app.state.coverproof.fast_path
    yield fast_path
    fast_path.enabled = True
