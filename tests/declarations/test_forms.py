"""A declaration's form is kept once per firm, by the hash its receipt names it by (0036): a
bulk create stores one form, not a copy per declaration; a declaration made before holds its
own copy and reads as it did; the database holds each declaration to one form of its own firm."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.declarations import service
from app.declarations.templates import load_builtins, snapshot
from tests.browser import Browser, browser_for, new_email, signed_up
from tests.declarations.test_firm_side import BULK, PINNED, firm_of, form, ok
from tests.declarations.test_loop import FIT, sent_declaration
from tests.factories import Members, gql
from tests.mail.smtp import SmtpServer

FIT_FORM = snapshot(FIT.spec, template_id=FIT.id, version=FIT.version, key=FIT.key)
NAMED = "query($id: UUID!) { declaration(id: $id) { templateName } }"


async def _forms(engine: AsyncEngine, firm_id: str) -> list[Any]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("select sha256, snapshot from declaration_forms where firm_id = :f"),
            {"f": firm_id},
        )
        return list(found)


async def _declarations(engine: AsyncEngine, firm_id: str) -> list[Any]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("select template_snapshot, form_key from declarations where firm_id = :f"),
            {"f": firm_id},
        )
        return list(found)


async def _asked(engine: AsyncEngine, declaration_id: str) -> Any:
    """The form a declaration names, as its firm keeps it."""
    async with engine.connect() as conn:
        return await conn.scalar(
            text(
                "select f.snapshot from declarations d join declaration_forms f "
                "on f.firm_id = d.firm_id and f.sha256 = d.form_key where d.id = :id"
            ),
            {"id": uuid.UUID(declaration_id)},
        )


async def test_a_firm_keeps_each_form_once_however_many_declarations_ask_it(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Kept Once Ltd")
    firm_id = (await firm_of(browser))["id"]
    recipients = [{"name": f"Person {n}", "email": new_email()} for n in range(5)]
    bulk = {"templateId": str(FIT.id), "recipients": recipients, "send": False}
    created = ok(await browser.gql(BULK, {"i": bulk}))["bulkCreateDeclarations"]["declarations"]
    await sent_declaration(browser, smtp, new_email())  # and one more, on its own
    kept = await _forms(superuser_engine, firm_id)
    assert len(kept) == 1
    assert kept[0].snapshot == FIT_FORM
    rows = await _declarations(superuser_engine, firm_id)
    assert len(rows) == 6
    assert {(r.template_snapshot, bytes(r.form_key)) for r in rows} == {(None, kept[0].sha256)}
    pinned = ok(await browser.gql(PINNED, {"id": created[0]["id"]}))["declaration"]
    assert pinned["pinnedTemplate"]["questions"] == [
        {"id": q.id, "kind": q.kind.upper()} for q in FIT.spec.questions
    ]

    # Another firm keeps its own, under RLS, though the bytes are the same.
    other = browser_for(auth_app)
    async with other.client:
        await signed_up(other, smtp, firm="Kept Apart Ltd")
        await sent_declaration(other, smtp, new_email())
        other_firm = (await firm_of(other))["id"]
    assert [bytes(f.sha256) for f in await _forms(superuser_engine, other_firm)] == [kept[0].sha256]


async def test_a_declaration_holding_its_own_copy_of_its_form_reads_as_before(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """Declarations made before 0036 hold their form themselves: the firm, the recipient and
    the receipt read it as they always did."""
    await signed_up(browser, smtp, firm="Held Before Ltd")
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    before = ok(await browser.gql(PINNED, {"id": declaration_id}))
    async with superuser_engine.begin() as conn:
        await conn.execute(text("alter table declarations disable trigger user"))
        await conn.execute(
            text(
                "update declarations d set template_snapshot = f.snapshot, form_key = null "
                "from declaration_forms f where f.firm_id = d.firm_id "
                "and f.sha256 = d.form_key and d.id = :id"
            ),
            {"id": uuid.UUID(declaration_id)},
        )
        await conn.execute(text("alter table declarations enable trigger user"))
        await conn.execute(  # nothing else to read it from
            text(
                "delete from declaration_forms "
                "where firm_id = (select firm_id from declarations where id = :id)"
            ),
            {"id": uuid.UUID(declaration_id)},
        )
    assert ok(await browser.gql(PINNED, {"id": declaration_id})) == before
    named = ok(await browser.gql(NAMED, {"id": declaration_id}))["declaration"]
    assert named == {"templateName": FIT.spec.name}
    recipient = browser_for(auth_app)
    async with recipient.client:
        assert (await form(recipient, token))["templateName"] == FIT.spec.name


async def test_a_form_is_kept_only_under_the_key_the_database_gives_it(
    browser: Browser, smtp: SmtpServer, app_engine: AsyncEngine, superuser_engine: AsyncEngine
) -> None:
    """Whoever could run SQL as the app's role, bound to the firm, cannot keep a form of their
    own words under the key of a form the firm will send (a built-in's is the same in every
    firm), so that the firm's declarations of it asked theirs: the key is the database's hash
    of the form, not the writer's to give."""
    await signed_up(browser, smtp, firm="Unplanted Ltd")
    firm_id = (await firm_of(browser))["id"]
    reworded = {**FIT_FORM, "attestation": "I confirm nothing."}
    bind = text("select set_config('app.firm_id', :f, true)")
    async with app_engine.connect() as conn:
        async with conn.begin():
            await conn.execute(bind, {"f": firm_id})
            await conn.execute(
                text("insert into declaration_forms (firm_id, snapshot) values (:f, :s)"),
                {"f": firm_id, "s": json.dumps(reworded)},
            )
        planted = text(
            "insert into declaration_forms (firm_id, sha256, snapshot) "
            "values (:f, declaration_form_key(cast(:t as jsonb)), :s)"
        )
        async with conn.begin() as transaction:
            await conn.execute(bind, {"f": firm_id})
            given = {"f": firm_id, "t": json.dumps(FIT_FORM), "s": json.dumps(reworded)}
            with pytest.raises(DBAPIError, match="non-DEFAULT value into column"):
                await conn.execute(planted, given)
            await transaction.rollback()
    declaration_id, _ = await sent_declaration(browser, smtp, new_email())
    assert await _asked(superuser_engine, declaration_id) == FIT_FORM


@pytest.mark.parametrize(
    ("own", "form_of", "refused"),
    [
        ("null", None, "declarations_one_form"),  # no form at all
        ("'{}'::jsonb", "mine", "declarations_one_form"),  # two
        ("null", "theirs", "declarations_form_fkey"),  # another firm's
        ("null", "none", "declarations_form_fkey"),  # a hash of nothing kept
    ],
)
async def test_the_database_holds_a_declaration_to_one_form_of_its_own_firm(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    own: str,
    form_of: str | None,
    refused: str,
) -> None:
    await signed_up(browser, smtp, firm="One Form Ltd")
    declaration_id, _ = await sent_declaration(browser, smtp, new_email())
    theirs = uuid.uuid4()
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("insert into firms (id, name) values (:f, 'Theirs Ltd')"), {"f": theirs}
        )
        await conn.execute(
            text(
                "insert into declaration_forms (firm_id, snapshot) "
                "values (:f, '{\"theirs\": true}'::jsonb)"
            ),
            {"f": theirs},
        )
    sha = {
        None: "null",
        "mine": "form_key",
        "theirs": "declaration_form_key('{\"theirs\": true}'::jsonb)",
        "none": "sha256('nothing')",
    }[form_of]
    copy = (
        "insert into declarations (id, firm_id, template_id, template_version, "
        "template_snapshot, form_key, recipient_name, recipient_email) "
        f"select gen_random_uuid(), firm_id, template_id, template_version, {own}, {sha}, "
        "recipient_name, recipient_email from declarations where id = :id"
    )
    with pytest.raises(IntegrityError, match=refused):
        async with superuser_engine.begin() as conn:
            await conn.execute(text(copy), {"id": uuid.UUID(declaration_id)})


COI = next(b for b in load_builtins() if b.key == "conflicts_of_interest")
COI_FORM = snapshot(COI.spec, template_id=COI.id, version=COI.version, key=COI.key)
# The form's value given as UTF-8 bytes, so no client encoding reads it on the way in; written
# out whole (the test's own uuid and hex), so the driver sends no parameter.
ADD_FORM = (
    "insert into declaration_forms (firm_id, snapshot) "
    "values ('{f}', cast(convert_from(decode('{hex}', 'hex'), 'UTF8') as jsonb)) "
    "on conflict do nothing"
)


async def _add_as_app(
    app_engine: AsyncEngine, firm_id: str, form: dict[str, Any], encoding: str
) -> None:
    """Add a form as the app's role, bound to the firm, in a session of ``encoding``."""
    given = json.dumps(form, ensure_ascii=False).encode().hex()
    async with app_engine.connect() as conn, conn.begin():
        await conn.execute(text("select set_config('app.firm_id', :f, true)"), {"f": firm_id})
        await conn.execute(text(f"set local client_encoding = '{encoding}'"))
        await conn.execute(text(ADD_FORM.format(f=firm_id, hex=given)))


async def test_a_forms_key_is_the_same_whatever_the_sessions_encoding(
    browser: Browser, smtp: SmtpServer, app_engine: AsyncEngine, superuser_engine: AsyncEngine
) -> None:
    """Keyed by jsonb_send, which writes in the client's encoding, the same form added from a
    UTF-8 session and from a LATIN1 one was kept twice; and one planted from a LATIN1 session,
    each '£' written 'Â£', took the key of the real one, and was what the firm's declarations
    of that built-in asked after (found by a review of b170034)."""
    await signed_up(browser, smtp, firm="Encoded Ltd")
    firm_id = (await firm_of(browser))["id"]
    mojibake = json.loads(json.dumps(COI_FORM, ensure_ascii=False).encode().decode("latin-1"))
    assert mojibake != COI_FORM
    await _add_as_app(app_engine, firm_id, mojibake, "LATIN1")
    await _add_as_app(app_engine, firm_id, COI_FORM, "UTF8")
    await _add_as_app(app_engine, firm_id, COI_FORM, "LATIN1")
    assert len(await _forms(superuser_engine, firm_id)) == 2  # the planted, and the real once
    declaration_id, _ = await sent_declaration(browser, smtp, new_email(), str(COI.id))
    assert await _asked(superuser_engine, declaration_id) == COI_FORM


BULK_IDS = (
    "mutation($i: BulkDeclarationCreateInput!) { bulkCreateDeclarations(input: $i) "
    "{ declarations { id } } }"
)
TWO = (
    "mutation($a: DeclarationCreateInput!, $b: DeclarationCreateInput!) { "
    "a: createDeclaration(input: $a) { declaration { id } } "
    "b: createDeclaration(input: $b) { declaration { id } } }"
)


async def test_a_request_holding_the_lock_that_meets_a_bulk_creates_new_form_runs_again(
    client: httpx.AsyncClient, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk create keeps its form, then counts its mails (Redis round trips, one or two per
    recipient: 300 ms here) before it takes the firm's chain lock. A request that took the lock
    (its first create) and then meets that form, uncommitted, waits for it until PostgreSQL
    ends the deadlock, and runs again: both succeed. Giving way at once after 50 ms (a version
    of this stop's) gave way three times in that while and answered INTERNAL_SERVER_ERROR."""
    owner = await members.create()
    counted = asyncio.Event()
    count = service._count_mails

    async def slow_count(*args: Any) -> None:
        counted.set()
        await asyncio.sleep(0.3)
        await count(*args)

    monkeypatch.setattr(service, "_count_mails", slow_count)
    recipients = [{"name": f"R{i}", "email": f"r{i}@example.test"} for i in range(3)]
    bulk = asyncio.create_task(
        gql(client, BULK_IDS, {"i": {"templateId": str(FIT.id), "recipients": recipients}}, owner)
    )
    await asyncio.wait_for(counted.wait(), 10)  # its form added, uncommitted
    other = next(b for b in load_builtins() if b.id != FIT.id)
    one = {"recipientName": "A", "recipientEmail": "a@example.test"}
    variables = {
        "a": {**one, "templateId": str(other.id)},
        "b": {**one, "templateId": str(FIT.id)},
    }
    two = await gql(client, TWO, variables, owner)
    assert "errors" not in await bulk
    assert "errors" not in two, two
