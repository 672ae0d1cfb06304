"""Document limits beyond Strawberry's own (aliases, tokens): depth, directives and duplicated
fields. Depth is ours because Strawberry's limiter raises on an unknown fragment (a 500)
instead of leaving it to the validation rule that reports it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_nullable_type,
)
from strawberry.extensions.max_aliases import create_validator

MAX_DEPTH = 10
MAX_DIRECTIVES_PER_FIELD = 4
MAX_DIRECTIVES = 50
MAX_DUPLICATE_FIELDS = 10


def _too_deep(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    depth: int,
    seen: frozenset[str],
) -> bool:
    """Whether a field below ``selections`` nests deeper than MAX_DEPTH (root fields are at 0;
    introspection fields are not counted; unknown and cyclic fragments are left to the
    validation rules that report them)."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__") or selection.selection_set is None:
                continue
            if depth + 1 > MAX_DEPTH or _too_deep(
                selection.selection_set, fragments, depth + 1, seen
            ):
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _too_deep(selection.selection_set, fragments, depth, seen):
                return True
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if (
                fragment is not None
                and name not in seen
                and _too_deep(fragment.selection_set, fragments, depth, seen | {name})
            ):
                return True
    return False


class DepthLimit(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        if _too_deep(node.selection_set, fragments, 0, frozenset()):
            name = node.name.value if node.name else "anonymous"
            self.report_error(
                GraphQLError(f"'{name}' exceeds maximum operation depth of {MAX_DEPTH}", node)
            )


class SelectionLimits(ValidationRule):
    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.directives = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        count = len(node.directives or ())
        self.directives += count
        if count > MAX_DIRECTIVES_PER_FIELD or self.directives > MAX_DIRECTIVES:
            self.report_error(GraphQLError("Too many directives.", node))

    def enter_selection_set(self, node: SelectionSetNode, *_: Any) -> None:
        keys = Counter(
            (selection.alias or selection.name).value
            for selection in node.selections
            if isinstance(selection, FieldNode)
        )
        if keys and max(keys.values()) > MAX_DUPLICATE_FIELDS:
            self.report_error(GraphQLError("A field is repeated too many times.", node))


# Mutations that check a password or redeem a token. In an operation with other root fields,
# one of those failing rolls the whole request back, the check's success included, while the
# answer still shows which field failed: a password could be confirmed with nothing recorded.
# And a second submitDeclaration of the same link would be refused as used by the first, which
# the rollback then undoes, leaving on the record a refusal of a link never used.
# And those that answer alike for any address: each binds the request to the address's firm
# only if it is registered, and a second binding fails (one request acts for one firm), so
# beside a field that bound a firm first they would answer differently for a registered one.
ALONE = frozenset(
    {
        "signInWithPassword",
        "signInWithMagicLink",
        "verifyEmail",
        "resetPassword",
        "acceptInvitation",
        "submitDeclaration",
        "signUp",
        "requestMagicLink",
        "requestPasswordReset",
        "resendVerification",
    }
)


def _root_fields(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: frozenset[str]
) -> list[FieldNode]:
    """The operation's root fields, through fragments (a cyclic or unknown one is left to the
    rules that report it)."""
    fields: list[FieldNode] = []
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            fields += _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in seen and (fragment := fragments.get(name)) is not None:
                fields += _root_fields(fragment.selection_set, fragments, seen | {name})
    return fields


class CredentialsAlone(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        if node.operation.value != "mutation":
            return
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        fields = _root_fields(node.selection_set, fragments, frozenset())
        for field in fields:
            if field.name.value in ALONE and len(fields) > 1:
                self.report_error(
                    GraphQLError(
                        f"{field.name.value} must be the only field of its operation.", field
                    )
                )


class ListsOnce(ValidationRule):
    """A query asks for each list at most once: aliases multiplied a page of the largest (twenty
    templates of up to 90 kB each, every API key a firm ever made) thirtyfold, into tens of
    megabytes built on the event loop every firm shares."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        root = self.context.schema.query_type
        if node.operation.value != "query" or root is None:
            return
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        asked = Counter(
            field.name.value for field in _root_fields(node.selection_set, fragments, frozenset())
        )
        for name, times in sorted(asked.items()):
            field = root.fields.get(name)
            if times > 1 and field is not None and _is_list(field.type):
                self.report_error(GraphQLError(f"Ask for {name} once in an operation.", node))


def _is_list(kind: GraphQLOutputType) -> bool:
    """A list, or a page of one (a connection)."""
    named = get_nullable_type(kind)
    return isinstance(named, GraphQLList) or (
        isinstance(named, GraphQLObjectType) and named.name.endswith("Connection")
    )


MAX_ALIASES = 30
# One rule class for the app's lifetime: ValidationCache keys on the rules, and Strawberry's
# MaxAliasesLimiter makes a new class per request, which would defeat the cache.
ALIAS_LIMIT = create_validator(MAX_ALIASES)
