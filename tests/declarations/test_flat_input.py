"""The write lane's conversion of a flat input builds what Strawberry's ``convert_argument``
builds, from the values graphql-core coerces, and leaves every other kind of input to it."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import date
from typing import Any

import pytest
import strawberry
import strawberry.pydantic
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values
from pydantic import BaseModel, Field
from strawberry.relay import GlobalID
from strawberry.types.arguments import convert_argument

from app.schema import build_schema
from app.schema.declarations import BulkDeclarationCreateInput, DeclarationCreateInput
from app.schema.fastwrite import flat_input


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"


@strawberry.input
class Flat:
    required: str
    nullable_without_default: int | None
    with_default: str = "given"
    day: date | None = None
    ident: uuid.UUID | None = strawberry.field(default=None)
    renamed: str | None = strawberry.field(default=None, name="otherName")
    made: str = strawberry.field(default_factory=lambda: "made")


@strawberry.input
class WithEnum:
    colour: Colour


@strawberry.input
class WithList:
    items: list[int]


@strawberry.input
class WithGlobalId:
    node: GlobalID


@strawberry.input
class WithMaybe:
    maybe: strawberry.Maybe[str]


@strawberry.pydantic.input
class SelfBuilt(BaseModel):  # its from_input hook builds the model, by alias
    name: str = Field(alias="given")


@strawberry.type
class Query:
    @strawberry.field
    def take(  # the schema holds the inputs; nothing is executed
        self,
        flat: Flat,  # noqa: ARG002
        colour: WithEnum | None = None,  # noqa: ARG002
        items: WithList | None = None,  # noqa: ARG002
        node: WithGlobalId | None = None,  # noqa: ARG002
        maybe: WithMaybe | None = None,  # noqa: ARG002
        built: SelfBuilt | None = None,  # noqa: ARG002
    ) -> str:
        return ""


SAMPLE = strawberry.Schema(query=Query)


def _coerced(schema: Any, variable_type: str, value: Any) -> Any:
    document = parse(f"query($v: {variable_type}) {{ __typename }}")
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(schema._schema, operation.variable_definitions, {"v": value})
    assert not isinstance(coerced, list), coerced
    return coerced.coerced["v"]


def _converted(schema: Any, type_: type, value: Any) -> Any:
    return convert_argument(value, type_, schema.schema_converter.scalar_registry, schema.config)


@pytest.mark.parametrize(
    "given",
    [
        {"required": "a", "nullableWithoutDefault": 3},
        {"required": "a", "nullableWithoutDefault": None, "day": None},
        {"required": "a", "withDefault": "b", "day": "2027-02-03", "ident": str(uuid.uuid4())},
        {"required": "", "ident": uuid.uuid4().hex.upper()},
        {"required": "a", "otherName": "b", "made": "given"},
    ],
)
def test_a_flat_input_is_built_as_convert_argument_builds_it(given: dict[str, Any]) -> None:
    flat = flat_input(SAMPLE, Flat)
    assert flat is not None
    value = _coerced(SAMPLE, "Flat!", given)
    built, expected = flat.convert(value), _converted(SAMPLE, Flat, value)
    assert type(built) is Flat
    assert dataclasses.asdict(built) == dataclasses.asdict(expected)


def test_a_null_input_is_none_as_convert_argument_has_it() -> None:
    flat = flat_input(SAMPLE, Flat)
    assert flat is not None
    assert flat.convert(None) is None
    assert _converted(SAMPLE, Flat, None) is None


@pytest.mark.parametrize("type_", [WithEnum, WithList, WithGlobalId, WithMaybe, SelfBuilt])
def test_any_other_field_leaves_the_input_to_convert_argument(type_: type) -> None:
    assert flat_input(SAMPLE, type_) is None


def test_the_apps_create_input_is_flat_and_built_alike() -> None:
    schema = build_schema(production=False)
    assert flat_input(schema, BulkDeclarationCreateInput) is None  # a list of inputs
    flat = flat_input(schema, DeclarationCreateInput)
    assert flat is not None
    given = {
        "templateId": str(uuid.uuid4()),
        "recipientName": "Pat",
        "recipientEmail": "pat@example.test",
        "dueDate": "2027-01-31",
        "linkDays": None,
    }
    value = _coerced(schema, "DeclarationCreateInput!", given)
    built = flat.convert(value)
    expected = _converted(schema, DeclarationCreateInput, value)
    assert dataclasses.asdict(built) == dataclasses.asdict(expected)
    assert built.due_date == date(2027, 1, 31)
    assert built.idempotency_key is None
