"""Default deny: a root field runs for an anonymous or unverified caller only if marked public.

A new field is private unless declared with ``metadata=PUBLIC``. The check runs on the root
fields of every operation, whatever fragments or aliases reach them; everything below a root
field is reachable only through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLResolveInfo
from strawberry.extensions import SchemaExtension

PUBLIC = {"public": True}


def _is_public(info: GraphQLResolveInfo[Any]) -> bool:
    if info.field_name.startswith("__"):
        return True  # introspection; turned off in production by DisableIntrospection
    definition = info.parent_type.fields[info.field_name].extensions.get("strawberry-definition")
    return bool(definition is not None and definition.metadata.get("public"))


class AccessGate(SchemaExtension):
    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if info.path.prev is None and not _is_public(info):
            _ = info.context.actor  # raises UNAUTHENTICATED or EMAIL_NOT_VERIFIED
        return _next(root, info, *args, **kwargs)
