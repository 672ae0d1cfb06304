"""Schemathesis fuzzes every root field of schema.graphql as a signed-in member.

Schemathesis (its GraphQL support, on hypothesis-graphql) loads the SDL and turns each Query
and Mutation field into an operation; for each, Hypothesis draws a bounded, derandomized set of
documents: valid ones (arguments of the right types, random values) and invalid ones (wrong
argument types), which go through the real app over ASGI with a fresh member's session cookie.

Whatever was sent, every answer must be: not a 5xx; JSON; errors that each carry a stable
``extensions.code``, never INTERNAL_SERVER_ERROR (an unexpected exception reached the client,
masked); and no stack trace or source path. A failing example prints its query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import graphql
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes
from schemathesis.schemas import APIOperation
from starlette.applications import Starlette

from app.auth import sessions
from app.main import create_app
from tests.abuse.support import LEAKS
from tests.conftest import ROOT, Database, http_client, make_settings, started
from tests.factories import Members

# Per operation and mode: 96 (field, mode) pairs x 10 examples take about 15 s here.
EXAMPLES = 10
_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)


def _field(name: str, value: graphql.ValueNode) -> graphql.ObjectFieldNode:
    return graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=value)


# Strawberry's JSON scalar takes any literal: scalars, lists and objects, nested.
_JSON_VALUES: st.SearchStrategy[graphql.ValueNode] = st.recursive(
    st.one_of(
        st.text(max_size=20).map(nodes.String),
        st.integers(min_value=-(2**63), max_value=2**63).map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.booleans().map(nodes.Boolean),
        st.just(nodes.Null),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(nodes.List),
        st.dictionaries(_NAME, children, max_size=4).map(
            lambda fields: nodes.Object([_field(k, v) for k, v in fields.items()])
        ),
    ),
    max_leaves=12,
)
schemathesis.graphql.scalar("JSON", _JSON_VALUES)

SCHEMA = schemathesis.graphql.from_path(ROOT / "schema.graphql")
OPERATIONS: list[APIOperation] = [result.ok() for result in SCHEMA.get_all_operations()]
# Valid documents for every field; invalid ones (wrong argument types) where there are arguments.
RUNS = [
    (operation, mode)
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or operation.definition.raw.args
]


def test_every_root_field_is_fuzzed() -> None:
    schema = graphql.build_schema((ROOT / "schema.graphql").read_text())
    assert schema.query_type is not None
    assert schema.mutation_type is not None
    roots = [f"Query.{name}" for name in schema.query_type.fields] + [
        f"Mutation.{name}" for name in schema.mutation_type.fields
    ]
    assert sorted(operation.label for operation in OPERATIONS) == sorted(roots)


@pytest.fixture(scope="module")
async def fuzz_app(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    """The development app (introspection on), with its rate limits raised (still counted) so
    the fuzzer reaches the resolvers instead of being turned away at the door."""
    settings = make_settings(
        database,
        tmp_path_factory.mktemp("fuzz"),
        ip_requests_per_minute=1_000_000,
        rate_limit_scale=1_000,
    )
    async for running in started(create_app(settings)):
        yield running


@pytest.fixture(scope="module")
async def fuzz_client(fuzz_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(fuzz_app) as client:
        yield client


def check(response: httpx.Response, query: str) -> None:
    where = f"\nquery: {query}\nstatus: {response.status_code}\nbody: {response.text[:2000]}"
    assert response.status_code < 500, where
    assert response.headers["content-type"].startswith("application/"), where
    assert response.headers["content-type"].split(";")[0].endswith("json"), where
    body: Any = response.json()
    assert isinstance(body, dict), where
    assert LEAKS.search(response.text) is None, where
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert isinstance(code, str), where
        assert code != "INTERNAL_SERVER_ERROR", where


@pytest.mark.parametrize(
    ("operation", "mode"), RUNS, ids=[f"{op.label}-{mode.value}" for op, mode in RUNS]
)
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its query as is
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_fuzzed_operations_never_fail_unexpectedly(
    fuzz_client: httpx.AsyncClient,
    members: Members,
    operation: APIOperation,
    mode: GenerationMode,
    data: st.DataObject,
) -> None:
    case = data.draw(operation.as_strategy(generation_mode=mode), label="case")
    query = case.body
    assert isinstance(query, str)
    note(f"query: {query}")
    # A fresh member each time: a fuzzed signOut or removeMember must not blind the rest.
    member = await members.create()
    response = await fuzz_client.post(
        "/graphql",
        json={"query": query},
        headers={"cookie": f"{sessions.COOKIE_NAME}={member.cookie}"},
    )
    check(response, query)
