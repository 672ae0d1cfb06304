"""The ASGI types this package needs, spelled out here rather than imported from Starlette.

Only app/http, app/schema and app/resolvers may import the web layer (tests/test_project.py
checks it); these aliases are structurally the same as ``starlette.types``, so the middleware
plugs into Starlette unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
