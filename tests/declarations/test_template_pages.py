"""Templates are listed a page at a time: built-ins first, then the firm's own by name and id.
A firm's template may hold about 90 kB of questions, and a firm any number of them: one list
of them all was tens of megabytes, built for seconds on the event loop every firm shares."""

from __future__ import annotations

import random
from typing import Any

import httpx

from app.declarations.template_service import MAX_PAGE
from app.declarations.templates import load_builtins
from app.pagination import encode
from tests.declarations.test_firm_side import CREATE_TEMPLATE, question, template_input
from tests.factories import Member, Members, codes, gql

PAGE = """query($first: Int! = 1, $after: String) { templates(first: $first, after: $after) {
  edges { cursor node { id name builtIn } } pageInfo { hasNextPage endCursor } } }"""
DEFAULT = "{ templates { edges { node { id } } pageInfo { hasNextPage } } }"
QUESTION = question("q1", "short_text")


async def _page(
    client: httpx.AsyncClient, owner: Member, first: int, after: str | None
) -> dict[str, Any]:
    body = await gql(client, PAGE, {"first": first, "after": after}, owner)
    assert "errors" not in body, body
    page: dict[str, Any] = body["data"]["templates"]
    return page


async def test_every_template_is_listed_once_a_page_at_a_time(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    names = [f"t{n:02}" for n in range(22)] + ["same", "same"]
    random.shuffle(names)
    made = []
    for name in names:
        body = await gql(client, CREATE_TEMPLATE, {"i": template_input(name, QUESTION)}, owner)
        assert "errors" not in body, body
        made.append((name, body["data"]["createTemplate"]["template"]["id"]))
    expected = [str(b.id) for b in load_builtins()] + [ident for _, ident in sorted(made)]

    body = await gql(client, DEFAULT, None, owner)  # as many as a page holds
    assert [e["node"]["id"] for e in body["data"]["templates"]["edges"]] == expected[:MAX_PAGE]
    assert body["data"]["templates"]["pageInfo"]["hasNextPage"] is True
    listed, after, pages = [], None, 0
    while True:
        page = await _page(client, owner, 2, after)
        listed += [edge["node"]["id"] for edge in page["edges"]]
        pages += 1
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert listed == expected  # built-ins and the firm's own, across the seam, each once
    assert pages == -(-len(expected) // 2)
    assert (await _page(client, owner, 5, after))["edges"] == []


async def test_a_page_larger_than_a_page_or_a_cursor_not_from_the_list_is_refused(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    assert len((await _page(client, owner, MAX_PAGE, None))["edges"]) == len(load_builtins())
    for first in (0, MAX_PAGE + 1):
        body = await gql(client, PAGE, {"first": first}, owner)
        assert codes(body) == ["BAD_USER_INPUT"], body
    # A built-in's cursor (no name) of an id no built-in has.
    for after in ("not a cursor", encode("", owner.firm_id)):
        body = await gql(client, PAGE, {"after": after}, owner)
        assert codes(body) == ["BAD_USER_INPUT"], body
