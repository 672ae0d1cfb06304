"""Default deny, on the server, for every field.

- A root field runs for an anonymous or unverified caller only if marked public: a new field is
  private unless declared with ``metadata=PUBLIC``. The check runs on the root fields of every
  operation, whatever fragments or aliases reach them; everything below a root field is
  reachable only through it.
- A partner's API key may use only root fields that declare a scope (``scoped("...")``) it
  holds, and nested fields that declare a scope only if it holds that one too. Beyond its
  ``id``, a declaration or counterparty in a mutation's payload is read only with the read
  scope of its kind: the payload would otherwise show a key with the write scope alone what it
  may not read (a counterparty "updated" with nothing; a declaration's replay by its
  idempotency key, answers and all). That is checked before the mutation runs, since a refusal
  after it would leave its write standing.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import isawaitable
from typing import Any, cast

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    InlineFragmentNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

from app.errors import Forbidden
from app.partners.keys import ApiKeyIdentity
from app.ratelimit.policies import Policy

PUBLIC = {"public": True}


def scoped(scope: str) -> dict[str, Any]:
    """Field metadata: an API key needs ``scope`` to use this field."""
    return {"scope": scope}


def _metadata(info: GraphQLResolveInfo[Any]) -> dict[str, Any]:
    if info.field_name.startswith("__"):
        return {}
    definition = info.parent_type.fields[info.field_name].extensions.get("strawberry-definition")
    return dict(definition.metadata) if definition is not None else {}


READ_SCOPES = {"Declaration": "declarations:read", "Counterparty": "counterparties:read"}


def read_scope(type_name: str, field: str) -> str | None:
    """The read scope a key needs to select ``field`` of ``type_name`` in a mutation's
    payload (READ_SCOPES), or None: an id, or a type no read scope guards."""
    if field == "id" or field.startswith("__"):
        return None
    return READ_SCOPES.get(type_name)


def _reads(info: GraphQLResolveInfo[Any]) -> set[str]:
    """The scopes the root field's selection needs, through fragments: the read scopes of the
    kinds it reads (READ_SCOPES) and every nested field's own (``scoped``, as a declaration's
    counterparty has), each checked before the mutation runs, not once it has."""
    needed: set[str] = set()

    def walk(selections: SelectionSetNode, parent: GraphQLNamedType) -> None:
        for selection in selections.selections:
            if not _included(selection, info):
                continue  # skipped, as the executor skips it: it needs no scope
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if scope := read_scope(parent.name, name):
                    needed.add(scope)
                if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                    continue
                field = parent.fields.get(name)
                if field is None:
                    continue  # __typename
                definition = field.extensions.get("strawberry-definition")
                if definition is not None and (own := definition.metadata.get("scope")):
                    needed.add(own)
                if selection.selection_set:
                    walk(selection.selection_set, get_named_type(field.type))
                continue
            fragment: FragmentDefinitionNode | InlineFragmentNode
            if isinstance(selection, FragmentSpreadNode):
                fragment = info.fragments[selection.name.value]
            else:
                fragment = cast(InlineFragmentNode, selection)
            condition = fragment.type_condition
            named = info.schema.get_type(condition.name.value) if condition else parent
            walk(fragment.selection_set, named or parent)

    for node in info.field_nodes:
        if node.selection_set is not None:
            walk(node.selection_set, get_named_type(info.return_type))
    return needed


def _included(selection: SelectionNode, info: GraphQLResolveInfo[Any]) -> bool:
    """Whether @skip and @include leave the selection in, as the executor reads them (their
    ``if`` validated already: a Boolean, literal or variable)."""
    found = {"skip": False, "include": True}
    # The coerced values (graphql-core's VariableValues holds them as ``coerced``).
    variables = cast(dict[str, Any], getattr(info.variable_values, "coerced", info.variable_values))
    for directive in selection.directives or ():
        if directive.name.value in found:
            (argument,) = directive.arguments or ()
            found[directive.name.value] = bool(value_from_ast_untyped(argument.value, variables))
    return found["include"] and not found["skip"]


def _check_scope(info: GraphQLResolveInfo[Any], scopes: frozenset[str]) -> None:
    needed = _metadata(info).get("scope")
    if info.path.prev is None and needed is None and not info.field_name.startswith("__"):
        raise Forbidden("API keys cannot use this field.")
    if needed is not None and needed not in scopes:
        raise Forbidden(f"This API key lacks the {needed} scope.")
    if info.path.prev is None and info.operation.operation is OperationType.MUTATION:
        missing = sorted(_reads(info) - scopes)  # a query's root field needs the read scope
        if missing:
            raise Forbidden(f"This API key lacks the {missing[0]} scope.")


def _is_public(info: GraphQLResolveInfo[Any]) -> bool:
    if info.field_name.startswith("__"):
        return True  # introspection; turned off in production by DisableIntrospection
    definition = info.parent_type.fields[info.field_name].extensions.get("strawberry-definition")
    return bool(definition is not None and definition.metadata.get("public"))


class AccessGate(SchemaExtension):
    """Checks every root field; a signed-in caller's mutations also count against their
    per-user limit (each aliased field counts, not each request)."""

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        context = info.context
        if isinstance(context.identity, ApiKeyIdentity):
            _check_scope(info, context.identity.scopes)
        if info.path.prev is not None:
            return _next(root, info, *args, **kwargs)
        if not _is_public(info):
            _ = context.actor  # raises UNAUTHENTICATED or EMAIL_NOT_VERIFIED
        if info.operation.operation is OperationType.MUTATION and context.identity is not None:
            return _limited(_next, root, info, *args, **kwargs)
        return _next(root, info, *args, **kwargs)


async def _limited(
    _next: Callable[..., Any], root: Any, info: GraphQLResolveInfo[Any], *args: Any, **kwargs: Any
) -> Any:
    context = info.context
    await context.limiter.hit(Policy.MUTATIONS_PER_USER, str(context.identity.user_id))
    result = _next(root, info, *args, **kwargs)
    return await result if isawaitable(result) else result
