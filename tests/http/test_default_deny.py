"""Default deny: every root field is private unless it is on this allow-list, and a private
root field refuses an anonymous caller (app/schema/access.py)."""

from __future__ import annotations

from typing import Any

import httpx
from graphql import (
    GraphQLField,
    GraphQLObjectType,
    get_named_type,
    is_leaf_type,
    is_required_argument,
)

from app.schema import build_schema
from tests.factories import codes, gql

# The fields a caller may use before signing in: signing up, in and out, the links emailed
# to people, and a recipient's one form (and its receipt, to whoever holds the link and the
# key it was submitted with). Adding one here is a security decision.
PUBLIC_QUERIES = {"recipientForm", "submissionReceipt", "viewer"}
PUBLIC_MUTATIONS = {
    "acceptInvitation",
    "requestMagicLink",
    "requestPasswordReset",
    "resendVerification",
    "resetPassword",
    "signInWithMagicLink",
    "signInWithPassword",
    "signOut",
    "signUp",
    "submitDeclaration",
    "verifyEmail",
}


def _roots() -> dict[str, GraphQLObjectType]:
    schema = build_schema(production=False)._schema
    assert schema.query_type is not None
    assert schema.mutation_type is not None
    return {"query": schema.query_type, "mutation": schema.mutation_type}


def _public(field: GraphQLField) -> bool:
    definition = field.extensions.get("strawberry-definition")
    return bool(definition is not None and definition.metadata.get("public"))


def test_only_the_allow_listed_root_fields_are_public() -> None:
    roots = _roots()
    public = {
        kind: {name for name, field in root.fields.items() if _public(field)}
        for kind, root in roots.items()
    }
    assert public == {"query": PUBLIC_QUERIES, "mutation": PUBLIC_MUTATIONS}


def _document(kind: str, name: str, field: GraphQLField) -> str | None:
    """The smallest document that reaches the field, or None when it needs arguments."""
    if any(is_required_argument(argument) for argument in field.args.values()):
        return None
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    return f"{kind} {{ {name}{selection} }}"


async def test_every_private_root_field_without_arguments_refuses_an_anonymous_caller(
    client: httpx.AsyncClient,
) -> None:
    tried: list[str] = []
    for kind, root in _roots().items():
        for name, field in root.fields.items():
            document = None if _public(field) else _document(kind, name, field)
            if document is None:
                continue
            body: dict[str, Any] = await gql(client, document)
            assert codes(body) == ["UNAUTHENTICATED"], (name, body)
            assert body.get("data") is None or body["data"].get(name) is None, (name, body)
            tried.append(name)
    assert {"firm", "declarations", "members", "templates", "createAuditCheckpoint"} <= set(tried)
