"""A failed operation keeps nothing and shows nothing of what it did before failing."""

from __future__ import annotations

import httpx

from tests.factories import Members, codes, gql

TWO = """mutation {
  a: updateFirm(input: {name: "Renamed Then Rolled Back"}) { firm { name } }
  b: updateFirm(input: {frn: "not a number"}) { firm { name } }
}"""


async def test_a_rolled_back_mutation_answers_no_data(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create(name="Steady Ltd")
    body = await gql(client, TWO, None, owner)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["data"] is None  # not the first field's rename, which was rolled back
    assert (await gql(client, "{ firm { name } }", None, owner))["data"]["firm"]["name"] == (
        "Steady Ltd"
    )
