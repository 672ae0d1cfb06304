"""Lists use DataLoaders: a page of 100 declarations costs the same statements as a page of 5."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from starlette.applications import Starlette

from tests.browser import Browser, new_email, signed_up
from tests.declarations.test_loop import FIT
from tests.mail.smtp import SmtpServer

PAGE = """query($n: Int!) { declarations(first: $n) { pageInfo { hasNextPage } edges { node {
  id status recipientName recipientEmail createdAt
  counterparty { name coverStatus { state } } } } } }"""


@contextmanager
def counting(app: Starlette) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = app.state.coverproof.engine.sync_engine

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_a_page_of_100_declarations_does_not_issue_a_query_per_row(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    await signed_up(browser, smtp)
    parties = []
    for n in range(3):
        body = await browser.gql(
            "mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) "
            "{ counterparty { id } } }",
            {"i": {"name": f"Introducer {n}", "kind": "INTRODUCER"}},
        )
        parties.append(body["data"]["createCounterparty"]["counterparty"]["id"])
    for n in range(100):
        body = await browser.gql(
            "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
            "{ declaration { id } } }",
            {
                "i": {
                    "templateId": str(FIT.id),
                    "recipientName": f"Person {n}",
                    "recipientEmail": new_email(),
                    "counterpartyId": parties[n % 3],
                }
            },
        )
        assert "errors" not in body, body
    costs = {}
    for size in (5, 100):
        with counting(auth_app) as statements:
            body = await browser.gql(PAGE, {"n": size})
        edges = body["data"]["declarations"]["edges"]
        assert len(edges) == size
        assert {e["node"]["counterparty"]["name"] for e in edges} <= {
            "Introducer 0",
            "Introducer 1",
            "Introducer 2",
        }
        costs[size] = len(statements)
    assert costs[100] == costs[5], costs
    assert costs[100] <= 8, costs
