"""The authorization matrix of the whole schema, through HTTP.

Every root Query and Mutation field (and the object fields that reach data:
Declaration.counterparty, Declaration.response, EvidencePack.downloadUrl, mutation payloads) is
run by every kind of caller:
nobody, a signed-in user whose email is not verified, each role of the firm (viewer, member, admin,
owner), the owner of ANOTHER firm passing this firm's ids, a partner API key of each scope (and
one with every scope), a revoked key and an expired key; and the result is compared with what
schema.graphql, docs/api.md and the services' docstrings promise:

- viewers read; members create/send/remind/revoke declarations and make packs; admins manage
  counterparties, templates, members, invitations, keys, the firm and the audit trail; only
  owners touch owners;
- a key runs persisted documents only, and a root field only with the scope it declares; a write
  scope gives a mutation's payload nothing but ids;
- another firm's id is answered exactly as a missing id (NOT_FOUND), and writes nothing;
- a refused mutation writes nothing to the firm's audit trail; an allowed one appends to it.
"""

from __future__ import annotations

import io
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.actor import Role
from app.partners.keys import Scope
from tests.browser import new_email
from tests.declarations.test_loop import FIT, LINK, valid_answers
from tests.factories import Member, Members
from tests.mail.smtp import SmtpServer
from tests.partners import (
    codes,
    create_key,
    partner_client,
    persisted,
    session_client,
    trust,
)

ALL_SCOPES = [scope.name for scope in Scope]
SCOPE_VALUE = {s: s.lower().replace("_", ":") for s in ALL_SCOPES}
ROLES = ["viewer", "member", "admin", "owner"]
RANK = {r: i for i, r in enumerate(ROLES)}
SESSION_CALLERS = ["anon", "unverified", *ROLES]
KEY_CALLERS = [f"key:{s}" for s in ALL_SCOPES] + ["key:ALL", "key:revoked", "key:expired"]
OTHER = "other_firm"

OK = "OK"


async def ok(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@dataclass
class Firm:
    id: uuid.UUID
    owner: Member
    counterparty: str = ""
    declaration: str = ""  # a draft naming the counterparty
    submitted: str = ""  # a submitted declaration (A only)
    token: str = ""  # the submitted declaration's link (A only)
    sent_token: str = ""  # a sent, unused link (A only)
    pack: str = ""
    template: str = ""
    invitation: str = ""
    key_id: str = ""


@dataclass
class World:
    app: Starlette
    a: Firm
    b: Firm
    roles: dict[str, Member]
    unverified: Member
    keys: dict[str, str] = field(default_factory=dict)  # caller name -> secret
    trusted: set[str] = field(default_factory=set)


CREATE_CP = """mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) {
  counterparty { id } } }"""
CREATE_DECL = """mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id } } }"""
SEND_DECL = "mutation($id: UUID!) { sendDeclaration(id: $id) { declaration { id status } } }"
GENERATE = """mutation($i: EvidencePackGenerateInput!) { generateEvidencePack(input: $i) {
  pack { id status failureReason downloadUrl } } }"""
CREATE_TEMPLATE = (
    """mutation($i: TemplateInput!) { createTemplate(input: $i) { template { id } } }"""
)
INVITE = """mutation($i: InviteMemberInput!) { inviteMember(input: $i) { ok } }"""
INVITATIONS = "{ invitations { id email role } }"
SUBMIT = """mutation($t: String!, $i: SubmissionInput!) { submitDeclaration(token: $t, input: $i)
  { submittedAt responseSha256 } }"""
FORM = """query($t: String!) { recipientForm(token: $t) { firmName recipientName
  questions { id kind required explainIf choices } } }"""


def template_input(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "audience": "PERSON",
        "questions": [{"id": "q1", "label": "Question one", "kind": "short_text"}],
        "attestation": "I confirm that my answers are true.",
    }


async def _sent(
    client: httpx.AsyncClient, smtp: SmtpServer, cp: str | None = None
) -> tuple[str, str]:
    email = new_email()
    i: dict[str, Any] = {
        "templateId": str(FIT.id),
        "recipientName": "Pat Doe",
        "recipientEmail": email,
    }
    if cp:
        i["counterpartyId"] = cp
    did = (await ok(client, CREATE_DECL, {"i": i}))["createDeclaration"]["declaration"]["id"]
    await ok(client, SEND_DECL, {"id": did})
    await smtp.wait_for(lambda _: bool(smtp.to(email)))
    body = smtp.to(email)[-1].get_body(preferencelist=("plain",)).get_content()
    found = LINK.search(body)
    assert found, body
    return did, unquote(found.group(1))


async def _furnish(app: Starlette, smtp: SmtpServer, firm: Firm, full: bool) -> None:
    async with session_client(app, firm.owner) as c:
        firm.counterparty = (
            await ok(
                c,
                CREATE_CP,
                {
                    "i": {
                        "name": f"Cp {secrets.token_hex(3)}",
                        "kind": "INTRODUCER",
                        "contactEmail": new_email(),
                        "notes": "secret notes",
                    }
                },
            )
        )["createCounterparty"]["counterparty"]["id"]
        firm.declaration = (
            await ok(
                c,
                CREATE_DECL,
                {
                    "i": {
                        "templateId": str(FIT.id),
                        "recipientName": "Pat Doe",
                        "recipientEmail": new_email(),
                        "counterpartyId": firm.counterparty,
                    }
                },
            )
        )["createDeclaration"]["declaration"]["id"]
        firm.template = (
            await ok(c, CREATE_TEMPLATE, {"i": template_input(f"T {secrets.token_hex(3)}")})
        )["createTemplate"]["template"]["id"]
        await ok(c, INVITE, {"i": {"email": new_email(), "role": "MEMBER"}})
        firm.invitation = (await ok(c, INVITATIONS))["invitations"][0]["id"]
        _, firm.key_id = await create_key(c, ["AUDIT_READ"])
        if full:
            firm.submitted, firm.token = await _sent(c, smtp, firm.counterparty)
            _, firm.sent_token = await _sent(c, smtp)
            async with session_client(app) as recipient:
                form = (await ok(recipient, FORM, {"t": firm.token}))["recipientForm"]
                await ok(
                    recipient,
                    SUBMIT,
                    {
                        "t": firm.token,
                        "i": {
                            "answers": valid_answers(form["questions"]),
                            "attestationAccepted": True,
                            "signatureName": "Pat Doe",
                        },
                    },
                )
        today = datetime.now(UTC).date()
        pack = await ok(
            c,
            GENERATE,
            {
                "i": {
                    "from": str(today - timedelta(days=30)),
                    "to": str(today),
                    "title": "Matrix pack",
                }
            },
        )
        firm.pack = pack["generateEvidencePack"]["pack"]["id"]
        assert pack["generateEvidencePack"]["pack"]["status"] == "READY", pack


@pytest.fixture(scope="module")
async def world(
    auth_app: Starlette, members: Members, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> World:
    owner = await members.create(Role.OWNER, name="Alpha Advisers Ltd")
    roles = {"owner": owner}
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        roles[role.value] = await members.create(role, firm_id=owner.firm_id)
    unverified = await members.create(Role.MEMBER, firm_id=owner.firm_id, verified=False)
    owner_b = await members.create(Role.OWNER, name="Beta Brokers Ltd")
    a, b = Firm(owner.firm_id, owner), Firm(owner_b.firm_id, owner_b)
    await _furnish(auth_app, smtp, a, full=True)
    await _furnish(auth_app, smtp, b, full=False)
    w = World(auth_app, a, b, roles, unverified)
    async with session_client(auth_app, owner) as c:
        for scope in ALL_SCOPES:
            w.keys[f"key:{scope}"], _ = await create_key(c, [scope])
        w.keys["key:ALL"], _ = await create_key(c, ALL_SCOPES)
        w.keys["key:revoked"], revoked_id = await create_key(c, ALL_SCOPES)
        await ok(
            c,
            "mutation($id: UUID!) { revokeApiKey(id: $id) { apiKey { id } } }",
            {"id": revoked_id},
        )
        soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        w.keys["key:expired"], expired_id = await create_key(c, ALL_SCOPES, expiresAt=soon)
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("update api_keys set expires_at = now() - interval '1 minute' where id = :id"),
            {"id": uuid.UUID(expired_id)},
        )
    return w


# --- calling as each kind of caller --------------------------------------------------------------


async def call(
    w: World, engine: AsyncEngine, caller: str, query: str, variables: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Run ``query`` as ``caller``; keys run it as a trusted persisted document."""
    if caller.startswith("key:"):
        if query not in w.trusted:
            await trust(engine, [query])
            w.trusted.add(query)
        async with partner_client(w.app, w.keys[caller]) as c:
            from tests.partners import run_persisted

            response = await run_persisted(c, query, variables)
            return response.status_code, response.json()
    member = {
        "anon": None,
        "unverified": w.unverified,
        OTHER: w.b.owner,
        **w.roles,
    }[caller]
    async with session_client(w.app, member) as c:
        response = await c.post("/graphql", json={"query": query, "variables": variables})
        return response.status_code, response.json()


def outcome(body: dict[str, Any]) -> str:
    found = codes(body)
    return found[0] if found else OK


def key_scopes(caller: str) -> set[str]:
    name = caller.split(":", 1)[1]
    return set(ALL_SCOPES) if name == "ALL" else {name}


def expected(caller: str, need: str, scope: str | None) -> str:  # noqa: PLR0911
    """The promised outcome. ``need``: 'public', 'signed_in' (verified or not), or a least role."""
    if caller in ("key:revoked", "key:expired"):
        return "UNAUTHENTICATED"
    if caller.startswith("key:"):
        held = {SCOPE_VALUE[s] for s in key_scopes(caller)}
        return OK if scope is not None and scope in held else "FORBIDDEN"
    if need == "public":
        return OK
    if caller == "anon":
        return "UNAUTHENTICATED"
    if caller == "unverified":
        return OK if need == "signed_in" else "EMAIL_NOT_VERIFIED"
    if caller == OTHER:
        return OK  # B's owner, in B: whatever B's owner may do there
    return OK if RANK[caller] >= RANK[need] else "FORBIDDEN"


# --- the read matrix -----------------------------------------------------------------------------

Vars = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Read:
    query: str
    need: str
    scope: str | None
    variables: Vars | None = None
    by_id: str | None = None  # the variable naming one of the firm's records


READS: dict[str, Read] = {
    "viewer": Read("{ viewer { user { id email } role } }", "public", None),
    "viewer.firm": Read("{ viewer { role firm { id name } } }", "viewer", None),
    "firm": Read("{ firm { id name frn } }", "viewer", None),
    "sessions": Read("{ sessions { id current } }", "viewer", None),
    "myFirms": Read("{ myFirms { firmId role } }", "viewer", None),
    "members": Read("{ members { userId email role } }", "viewer", None),
    "invitations": Read(INVITATIONS, "admin", None),
    "apiKeys": Read("{ apiKeys { edges { node { id prefix scopes } } } }", "admin", None),
    "auditEntries": Read(
        "{ auditEntries(first: 5) { edges { node { seq action actor { displayName } "
        "details } } } }",
        "admin",
        "audit:read",
    ),
    "verifyAuditChain": Read("{ verifyAuditChain { ok entriesChecked } }", "admin", "audit:read"),
    "auditCheckpoints": Read("{ auditCheckpoints { id seq } }", "admin", "audit:read"),
    "exportAuditLog": Read("{ exportAuditLog { keyId jsonl } }", "admin", "audit:read"),
    "counterparties": Read(
        "{ counterparties(includeArchived: true) { edges { node { id name notes contactEmail "
        "coverStatus { state } } } } }",
        "viewer",
        "counterparties:read",
    ),
    "counterparty": Read(
        "query($id: UUID!) { counterparty(id: $id) { id name notes coverStatus { state } } }",
        "viewer",
        "counterparties:read",
        lambda w: {"id": w.a.counterparty},
        "id",
    ),
    "templates": Read(
        "{ templates { edges { node { id name builtIn } } } }", "viewer", "declarations:read"
    ),
    "template": Read(
        "query($id: UUID!) { template(id: $id) { id name questions { id } } }",
        "viewer",
        "declarations:read",
        lambda w: {"id": w.a.template},
        "id",
    ),
    "declarations": Read(
        "{ declarations(first: 50) { edges { node { id status recipientEmail "
        "counterpartyId } } } }",
        "viewer",
        "declarations:read",
    ),
    "declaration": Read(
        "query($id: UUID!) { declaration(id: $id) { id status recipientEmail "
        "pinnedTemplate { id } response { answers signatureName submittedIp } } }",
        "viewer",
        "declarations:read",
        lambda w: {"id": w.a.submitted},
        "id",
    ),
    "declaration.counterparty": Read(
        "query($id: UUID!) { declaration(id: $id) { id counterparty { id name notes } } }",
        "viewer",
        "declarations:read+counterparties:read",
        lambda w: {"id": w.a.declaration},
        "id",
    ),
    "declarationCounts": Read(
        "{ declarationCounts { draft sent submitted } }", "viewer", "declarations:read"
    ),
    "evidencePacks": Read(
        "{ evidencePacks { edges { node { id status downloadUrl } } } }", "viewer", "evidence:read"
    ),
    "evidencePack": Read(
        "query($id: UUID!) { evidencePack(id: $id) { id status sha256 downloadUrl "
        "scope { declarationIds counterpartyIds } } }",
        "viewer",
        "evidence:read",
        lambda w: {"id": w.a.pack},
        "id",
    ),
}


def expected_read(caller: str, read: Read) -> str:
    scope = read.scope
    if caller.startswith("key:") and scope and "+" in scope:
        if caller in ("key:revoked", "key:expired"):
            return "UNAUTHENTICATED"
        return (
            OK
            if set(scope.split("+")) <= {SCOPE_VALUE[s] for s in key_scopes(caller)}
            else "FORBIDDEN"
        )
    if caller.startswith("key:") and scope is not None:
        if caller in ("key:revoked", "key:expired"):
            return "UNAUTHENTICATED"
        return OK if scope in {SCOPE_VALUE[s] for s in key_scopes(caller)} else "FORBIDDEN"
    return expected(caller, read.need, scope)


@pytest.mark.parametrize("caller", [*SESSION_CALLERS, OTHER, *KEY_CALLERS])
@pytest.mark.parametrize("name", list(READS))
async def test_read_matrix(
    world: World, superuser_engine: AsyncEngine, name: str, caller: str
) -> None:
    read = READS[name]
    variables = read.variables(world) if read.variables else None
    status, body = await call(world, superuser_engine, caller, read.query, variables)
    got = outcome(body)
    if caller == OTHER and read.by_id:
        # B's owner asking for A's record: exactly as a missing id would be answered.
        _, missing = await call(
            world, superuser_engine, caller, read.query, {read.by_id: str(uuid.uuid4())}
        )
        assert (got, body.get("errors", [{}])[0].get("message")) == (
            outcome(missing),
            missing.get("errors", [{}])[0].get("message"),
        ), (body, missing)
        assert got == "NOT_FOUND", body
        return
    want = expected_read(caller, read)
    if name == "viewer.firm" and caller == "anon":
        want = OK  # viewer is null when signed out
    assert got == want, (status, body)
    if got == OK and caller == OTHER:
        # B's owner's own lists never hold A's records.
        for ident in (
            world.a.counterparty,
            world.a.declaration,
            world.a.submitted,
            world.a.pack,
            world.a.invitation,
            str(world.a.id),
        ):
            assert ident not in str(body), (ident, body)


# --- the mutation matrix -------------------------------------------------------------------------


async def trail_length(engine: AsyncEngine, firm_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            text(
                "select count(*) from audit_log where firm_id = :f "
                "and action <> 'api_key.first_used'"
            ),
            {"f": firm_id},
        )
    return int(value or 0)


Setup = Callable[[World, httpx.AsyncClient, SmtpServer], Awaitable[dict[str, Any]]]


async def _fresh_cp(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    cp = await ok(c, CREATE_CP, {"i": {"name": f"Cp {secrets.token_hex(3)}", "kind": "OTHER"}})
    return {"id": cp["createCounterparty"]["counterparty"]["id"]}


async def _fresh_draft(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    d = await ok(
        c,
        CREATE_DECL,
        {
            "i": {
                "templateId": str(FIT.id),
                "recipientName": "Pat Doe",
                "recipientEmail": new_email(),
            }
        },
    )
    return {"id": d["createDeclaration"]["declaration"]["id"]}


async def _fresh_sent(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    v = await _fresh_draft(w, c, smtp)
    await ok(c, SEND_DECL, v)
    return v


async def _fresh_key(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    _, key_id = await create_key(c, ["AUDIT_READ"])
    return {"id": key_id}


async def _fresh_invitation(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    email = new_email()
    await ok(c, INVITE, {"i": {"email": email, "role": "VIEWER"}})
    found = [i for i in (await ok(c, INVITATIONS))["invitations"] if i["email"] == email]
    return {"id": found[0]["id"]}


def _fresh_member(role: Role) -> Setup:
    async def setup(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
        m = await MEMBERS.create(role, firm_id=w.a.id)
        return {"id": str(m.user_id)}

    return setup


async def _nothing(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    return {}


async def _write_something(w: World, c: httpx.AsyncClient, smtp: SmtpServer) -> dict[str, Any]:
    await _fresh_cp(w, c, smtp)  # so that the head moved and a checkpoint is new
    return {}


MEMBERS: Members


@pytest.fixture(autouse=True, scope="module")
def _members(members: Members) -> None:
    global MEMBERS  # noqa: PLW0603
    MEMBERS = members


@dataclass(frozen=True)
class Write:
    query: str
    need: str
    scope: str | None
    setup: Setup
    variables: Callable[[dict[str, Any]], dict[str, Any]]
    allowed_code: str = OK  # what an allowed caller gets (retrying a ready pack is refused)
    by_id: str | None = None  # the variable naming one of the firm's records
    writes: bool = True  # an allowed call appends to the trail


def _today() -> date:
    return datetime.now(UTC).date()


WRITES: dict[str, Write] = {
    "createCounterparty": Write(
        CREATE_CP,
        "admin",
        "counterparties:write",
        _nothing,
        lambda _: {"i": {"name": f"New {secrets.token_hex(3)}", "kind": "OTHER"}},
    ),
    "updateCounterparty": Write(
        "mutation($id: UUID!, $i: CounterpartyUpdateInput!) { updateCounterparty(id: $id, "
        "input: $i) { counterparty { id } } }",
        "admin",
        "counterparties:write",
        _fresh_cp,
        lambda s: {"id": s["id"], "i": {"notes": secrets.token_hex(4)}},
        by_id="id",
    ),
    "archiveCounterparty": Write(
        "mutation($id: UUID!) { archiveCounterparty(id: $id) { counterparty { id } } }",
        "admin",
        "counterparties:write",
        _fresh_cp,
        lambda s: s,
        by_id="id",
    ),
    "createTemplate": Write(
        CREATE_TEMPLATE,
        "admin",
        None,
        _nothing,
        lambda _: {"i": template_input(f"T {secrets.token_hex(3)}")},
    ),
    "createTemplateVersion": Write(
        "mutation($t: UUID!, $i: TemplateInput!) { createTemplateVersion(templateId: $t, "
        "input: $i) { template { id version } } }",
        "admin",
        None,
        _nothing,
        lambda _: {"t": WORLD.a.template, "i": template_input(f"T {secrets.token_hex(3)}")},
        by_id="t",
    ),
    "createDeclaration": Write(
        CREATE_DECL,
        "member",
        "declarations:write",
        _nothing,
        lambda _: {
            "i": {
                "templateId": str(FIT.id),
                "recipientName": "Pat Doe",
                "recipientEmail": new_email(),
            }
        },
    ),
    "bulkCreateDeclarations": Write(
        "mutation($i: BulkDeclarationCreateInput!) { bulkCreateDeclarations(input: $i) "
        "{ declarations { id } } }",
        "member",
        "declarations:write",
        _nothing,
        lambda _: {
            "i": {
                "templateId": str(FIT.id),
                "send": False,
                "recipients": [{"name": "Pat Doe", "email": new_email()}],
            }
        },
    ),
    "sendDeclaration": Write(
        "mutation($id: UUID!) { sendDeclaration(id: $id) { declaration { id } } }",
        "member",
        "declarations:write",
        _fresh_draft,
        lambda s: s,
        by_id="id",
    ),
    "remindDeclaration": Write(
        "mutation($id: UUID!) { remindDeclaration(id: $id) { declaration { id } } }",
        "member",
        "declarations:write",
        _fresh_sent,
        lambda s: s,
        by_id="id",
    ),
    "reissueDeclarationLink": Write(
        "mutation($id: UUID!) { reissueDeclarationLink(id: $id) { declaration { id } } }",
        "member",
        "declarations:write",
        _fresh_sent,
        lambda s: s,
        by_id="id",
    ),
    "revokeDeclaration": Write(
        "mutation($id: UUID!) { revokeDeclaration(id: $id) { declaration { id } } }",
        "member",
        "declarations:write",
        _fresh_sent,
        lambda s: s,
        by_id="id",
    ),
    "retryEvidencePack": Write(
        "mutation($id: UUID!) { retryEvidencePack(id: $id) { pack { id } } }",
        "member",
        None,
        _nothing,
        lambda _: {"id": WORLD.a.pack},
        allowed_code="BAD_USER_INPUT",
        by_id="id",
        writes=False,
    ),
    "createApiKey": Write(
        "mutation($i: ApiKeyCreateInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
        "admin",
        None,
        _nothing,
        lambda _: {"i": {"name": "k", "scopes": ["AUDIT_READ"]}},
    ),
    "revokeApiKey": Write(
        "mutation($id: UUID!) { revokeApiKey(id: $id) { apiKey { id } } }",
        "admin",
        None,
        _fresh_key,
        lambda s: s,
        by_id="id",
    ),
    "createAuditCheckpoint": Write(
        "mutation { createAuditCheckpoint { checkpoint { id seq } } }",
        "admin",
        None,
        _write_something,
        lambda _: {},
    ),
    "updateFirm": Write(
        "mutation($i: FirmUpdateInput!) { updateFirm(input: $i) { firm { id } } }",
        "admin",
        None,
        _nothing,
        lambda _: {"i": {"name": f"Alpha {secrets.randbelow(10**6)} Ltd"}},
    ),
    "inviteMember": Write(
        INVITE, "admin", None, _nothing, lambda _: {"i": {"email": new_email(), "role": "MEMBER"}}
    ),
    "inviteMember(OWNER)": Write(
        INVITE, "owner", None, _nothing, lambda _: {"i": {"email": new_email(), "role": "OWNER"}}
    ),
    "revokeInvitation": Write(
        "mutation($id: UUID!) { revokeInvitation(id: $id) { ok } }",
        "admin",
        None,
        _fresh_invitation,
        lambda s: s,
        by_id="id",
    ),
    "changeMemberRole": Write(
        "mutation($i: MemberRoleChangeInput!) { changeMemberRole(input: $i) "
        "{ member { userId role } } }",
        "admin",
        None,
        _fresh_member(Role.VIEWER),
        lambda s: {"i": {"userId": s["id"], "role": "MEMBER"}},
        by_id="i.userId",
    ),
    "changeMemberRole(to OWNER)": Write(
        "mutation($i: MemberRoleChangeInput!) { changeMemberRole(input: $i) "
        "{ member { userId role } } }",
        "owner",
        None,
        _fresh_member(Role.VIEWER),
        lambda s: {"i": {"userId": s["id"], "role": "OWNER"}},
        by_id="i.userId",
    ),
    "removeMember": Write(
        "mutation($id: UUID!) { removeMember(userId: $id) { ok } }",
        "admin",
        None,
        _fresh_member(Role.VIEWER),
        lambda s: s,
        by_id="id",
    ),
    "removeMember(an owner)": Write(
        "mutation($id: UUID!) { removeMember(userId: $id) { ok } }",
        "owner",
        None,
        _fresh_member(Role.OWNER),
        lambda s: s,
        by_id="id",
    ),
}

WORLD: World


@pytest.fixture(autouse=True, scope="module")
def _world(world: World) -> None:
    global WORLD  # noqa: PLW0603
    WORLD = world


@pytest.mark.parametrize("caller", [*SESSION_CALLERS, OTHER, *KEY_CALLERS])
@pytest.mark.parametrize("name", list(WRITES))
async def test_write_matrix(
    world: World, smtp: SmtpServer, superuser_engine: AsyncEngine, name: str, caller: str
) -> None:
    write = WRITES[name]
    setup_owner = await MEMBERS.create(Role.OWNER, firm_id=world.a.id)  # its own mutation limit
    async with session_client(world.app, setup_owner) as owner:
        made = await write.setup(world, owner, smtp)
    variables = write.variables(made)
    before_a = await trail_length(superuser_engine, world.a.id)
    before_b = await trail_length(superuser_engine, world.b.id)
    status, body = await call(world, superuser_engine, caller, write.query, variables)
    got = outcome(body)
    after_a = await trail_length(superuser_engine, world.a.id)
    after_b = await trail_length(superuser_engine, world.b.id)
    if caller == OTHER:
        assert after_a == before_a, ("another firm wrote to A's trail", body)
        if write.by_id:
            if write.by_id == "i.userId":
                missing = {"i": {**variables["i"], "userId": str(uuid.uuid4())}}
            else:
                missing = {**variables, write.by_id: str(uuid.uuid4())}
            _, other = await call(world, superuser_engine, caller, write.query, missing)
            assert (got, body["errors"][0]["message"] if got != OK else None) == (
                outcome(other),
                other["errors"][0]["message"] if outcome(other) != OK else None,
            ), (body, other)
            assert got in ("NOT_FOUND", "FORBIDDEN"), body
            return
        # A mutation of B's own: B's owner may do it in B.
        assert got == write.allowed_code, body
        return
    want = expected(caller, write.need, write.scope)
    if want == OK:
        want = write.allowed_code
    assert got == want, (status, body)
    assert after_b == before_b
    if got == OK and write.writes:
        assert after_a > before_a, ("an allowed mutation left no audit entry", body)
    if got != OK:
        assert after_a == before_a, ("a refused mutation wrote to the trail", body)


# --- nested fields and payloads, for keys --------------------------------------------------------

NESTED_CASES = [
    # (scopes, document, variables(world), expected code)
    (
        ["DECLARATIONS_READ"],
        "query($id: UUID!) { declaration(id: $id) { id counterparty { name } } }",
        lambda w: {"id": w.a.declaration},
        "FORBIDDEN",
    ),
    (
        ["DECLARATIONS_READ"],
        "query { declarations(first: 5) { edges { node { id ... on Declaration { counterparty "
        "{ notes } } } } } }",
        lambda _: {},
        "FORBIDDEN",
    ),
    (
        ["DECLARATIONS_READ", "COUNTERPARTIES_READ"],
        "query($id: UUID!) { declaration(id: $id) { id counterparty { name } } }",
        lambda w: {"id": w.a.declaration},
        OK,
    ),
    (
        ["COUNTERPARTIES_READ"],
        "query($id: UUID!) { declaration(id: $id) { id } }",
        lambda w: {"id": w.a.declaration},
        "FORBIDDEN",
    ),
    (
        ["EVIDENCE_READ"],
        "query($id: UUID!) { evidencePack(id: $id) { id downloadUrl scope { declarationIds } } }",
        lambda w: {"id": w.a.pack},
        OK,
    ),
    (["AUDIT_READ"], "{ members { email } }", lambda _: {}, "FORBIDDEN"),
    (["AUDIT_READ"], "{ firm { id } }", lambda _: {}, "FORBIDDEN"),
    (["AUDIT_READ"], "{ viewer { role } }", lambda _: {}, "FORBIDDEN"),
    (
        ["DECLARATIONS_READ"],
        "query($t: String!) { recipientForm(token: $t) { firmName } }",
        lambda w: {"t": w.a.sent_token},
        "FORBIDDEN",
    ),
]


@pytest.mark.parametrize(("scopes", "document", "variables", "want"), NESTED_CASES)
async def test_key_nested_fields(
    world: World,
    superuser_engine: AsyncEngine,
    scopes: list[str],
    document: str,
    variables: Callable[[World], dict[str, Any]],
    want: str,
) -> None:
    async with session_client(world.app, world.a.owner) as c:
        secret, _ = await create_key(c, scopes)
    await trust(superuser_engine, [document])
    async with partner_client(world.app, secret) as partner:
        body = await persisted(partner, document, variables(world))
    assert outcome(body) == want, body


PAYLOAD_CASES = [
    # (scopes, document, variables(world), expected code): a write key's payload shows ids only
    (["DECLARATIONS_WRITE"], "declaration { id }", OK),
    (["DECLARATIONS_WRITE"], "declaration { id status }", "FORBIDDEN"),
    (
        ["DECLARATIONS_WRITE"],
        "declaration { id ... on Declaration { recipientEmail } }",
        "FORBIDDEN",
    ),
    (["DECLARATIONS_WRITE"], "...P", "FORBIDDEN"),
    (["DECLARATIONS_WRITE"], "declaration { id pinnedTemplate { questions { id } } }", "FORBIDDEN"),
    (
        ["DECLARATIONS_WRITE", "DECLARATIONS_READ"],
        "declaration { id counterparty { name } }",
        "FORBIDDEN",
    ),
    (
        ["DECLARATIONS_WRITE", "DECLARATIONS_READ"],
        "declaration { id counterparty { id } }",
        "FORBIDDEN",
    ),
    (
        ["DECLARATIONS_WRITE", "DECLARATIONS_READ", "COUNTERPARTIES_READ"],
        "declaration { id counterparty { name } }",
        OK,
    ),
]


@pytest.mark.parametrize(("scopes", "selection", "want"), PAYLOAD_CASES)
async def test_key_mutation_payloads(
    world: World, superuser_engine: AsyncEngine, scopes: list[str], selection: str, want: str
) -> None:
    """A refused payload is refused before the mutation runs: nothing is written."""
    async with session_client(world.app, world.a.owner) as c:
        secret, _ = await create_key(c, scopes)
    tag = secrets.token_hex(4)
    document = (
        f"mutation M{tag}($i: DeclarationCreateInput!) {{ createDeclaration(input: $i) "
        f"{{ {selection} }} }}"
    )
    if "...P" in selection:
        document += " fragment P on DeclarationPayload { declaration { id status } }"
    await trust(superuser_engine, [document])
    email = new_email()
    i = {
        "templateId": str(FIT.id),
        "recipientName": "Pat Doe",
        "recipientEmail": email,
        "counterpartyId": world.a.counterparty,
    }
    before = await trail_length(superuser_engine, world.a.id)
    async with partner_client(world.app, secret) as partner:
        body = await persisted(partner, document, {"i": i})
    assert outcome(body) == want, body
    async with superuser_engine.connect() as conn:
        made = await conn.scalar(
            text("select count(*) from declarations where recipient_email = :e"), {"e": email}
        )
    assert made == (1 if want == OK else 0), body
    if want != OK:
        assert await trail_length(superuser_engine, world.a.id) == before


COUNTERPARTY_PAYLOADS = [
    (["COUNTERPARTIES_WRITE"], "counterparty { id }", OK),
    (["COUNTERPARTIES_WRITE"], "counterparty { id name notes }", "FORBIDDEN"),
    (["COUNTERPARTIES_WRITE"], "counterparty { id coverStatus { state } }", "FORBIDDEN"),
    (["COUNTERPARTIES_WRITE", "COUNTERPARTIES_READ"], "counterparty { id notes }", OK),
]


@pytest.mark.parametrize(("scopes", "selection", "want"), COUNTERPARTY_PAYLOADS)
async def test_key_counterparty_payloads(
    world: World, superuser_engine: AsyncEngine, scopes: list[str], selection: str, want: str
) -> None:
    async with session_client(world.app, world.a.owner) as c:
        secret, _ = await create_key(c, scopes)
    tag = secrets.token_hex(4)
    document = (
        f"mutation U{tag}($id: UUID!, $i: CounterpartyUpdateInput!) {{ "
        f"updateCounterparty(id: $id, input: $i) {{ {selection} }} }}"
    )
    await trust(superuser_engine, [document])
    before = await trail_length(superuser_engine, world.a.id)
    async with partner_client(world.app, secret) as partner:
        body = await persisted(
            partner, document, {"id": world.a.counterparty, "i": {"contactName": f"N {tag}"}}
        )
    assert outcome(body) == want, body
    after = await trail_length(superuser_engine, world.a.id)
    assert after == before + (1 if want == OK else 0)


# --- keys run persisted documents only -----------------------------------------------------------


async def test_a_key_cannot_send_query_text(world: World) -> None:
    async with partner_client(world.app, world.keys["key:ALL"]) as partner:
        response = await partner.post("/graphql", json={"query": "{ declarationCounts { draft } }"})
    assert response.status_code == 400
    assert codes(response.json()) == ["PERSISTED_QUERY_REQUIRED"]


async def test_a_key_and_a_session_together_are_refused(world: World) -> None:
    transport_headers = {
        **world.roles["viewer"].headers,
        "authorization": f"Bearer {world.keys['key:ALL']}",
    }
    async with session_client(world.app) as c:
        response = await c.post(
            "/graphql", json={"query": "{ firm { id } }"}, headers=transport_headers
        )
    assert response.status_code == 400, response.text


# --- evidence-pack downloads ---------------------------------------------------------------------


async def _download_link(world: World) -> str:
    async with session_client(world.app, world.roles["viewer"]) as c:
        data = await ok(
            c, "query($id: UUID!) { evidencePack(id: $id) { downloadUrl } }", {"id": world.a.pack}
        )
    url: str = data["evidencePack"]["downloadUrl"]
    return urlsplit(url).path


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("viewer", 200),
        ("member", 200),
        ("owner", 200),
        ("anon", 404),
        ("unverified", 404),
        (OTHER, 404),
        ("key:EVIDENCE_READ", 200),
        ("key:ALL", 200),
        ("key:DECLARATIONS_READ", 404),
        ("key:AUDIT_READ", 404),
        ("key:revoked", 404),
        ("key:expired", 404),
    ],
)
async def test_pack_download(world: World, who: str, status: int) -> None:
    path = await _download_link(world)
    if who.startswith("key:"):
        client = partner_client(world.app, world.keys[who])
    else:
        member = {
            "anon": None,
            "unverified": world.unverified,
            OTHER: world.b.owner,
            **world.roles,
        }[who]
        client = session_client(world.app, member)
    async with client:
        response = await client.get(path)
    assert response.status_code == status, response.text[:200]
    if status == 200:
        assert response.content.startswith(b"%PDF")


async def test_another_firms_download_link_is_useless(world: World) -> None:
    async with session_client(world.app, world.b.owner) as c:
        data = await ok(
            c, "query($id: UUID!) { evidencePack(id: $id) { downloadUrl } }", {"id": world.b.pack}
        )
        b_path = urlsplit(data["evidencePack"]["downloadUrl"]).path
    async with session_client(world.app, world.roles["owner"]) as c:
        assert (await c.get(b_path)).status_code == 404


# --- another firm's ids inside inputs: answered as missing ids -----------------------------------


def _probe(field: str, value: str) -> dict[str, Any]:
    """A pack's scope naming one record (of another firm's, in the test)."""
    scope = {"from": str(_today() - timedelta(days=3)), "to": str(_today()), "title": "Probe"}
    return {"i": {**scope, field: [value]}}


INPUT_ORACLES = [
    (
        "createDeclaration.counterpartyId",
        CREATE_DECL,
        lambda cp: {
            "i": {
                "templateId": str(FIT.id),
                "recipientName": "Pat Doe",
                "recipientEmail": new_email(),
                "counterpartyId": cp,
            }
        },
    ),
    (
        "createDeclaration.templateId",
        CREATE_DECL,
        lambda t: {
            "i": {"templateId": t, "recipientName": "Pat Doe", "recipientEmail": new_email()}
        },
    ),
    ("generateEvidencePack.declarationIds", GENERATE, lambda d: _probe("declarationIds", d)),
    ("generateEvidencePack.counterpartyIds", GENERATE, lambda cp: _probe("counterpartyIds", cp)),
    (
        "declarations.filter.counterpartyId",
        "query($cp: UUID!) { declarations(filter: {counterpartyId: $cp}) "
        "{ edges { node { id } } } }",
        lambda cp: {"cp": cp},
    ),
    (
        "auditEntries.filter.targetId",
        "query($t: String!) { auditEntries(filter: {targetId: $t}) { edges { node { seq } } } }",
        lambda t: {"t": t},
    ),
    ("switchFirm", "mutation($f: UUID!) { switchFirm(firmId: $f) { firmId } }", lambda f: {"f": f}),
    ("revokeSession", "mutation($s: UUID!) { revokeSession(id: $s) { ok } }", lambda s: {"s": s}),
]


def _b_id(world: World, name: str) -> str:
    return {
        "createDeclaration.counterpartyId": world.b.counterparty,
        "createDeclaration.templateId": world.b.template,
        "generateEvidencePack.declarationIds": world.b.declaration,
        "generateEvidencePack.counterpartyIds": world.b.counterparty,
        "declarations.filter.counterpartyId": world.b.counterparty,
        "auditEntries.filter.targetId": world.b.counterparty,
        "switchFirm": str(world.b.id),
        "revokeSession": "",
    }[name]


@pytest.mark.parametrize(("name", "document", "variables"), INPUT_ORACLES)
async def test_other_firms_ids_in_inputs(
    world: World,
    superuser_engine: AsyncEngine,
    name: str,
    document: str,
    variables: Callable[[str], dict[str, Any]],
) -> None:
    b_id = _b_id(world, name)
    if name == "revokeSession":
        async with superuser_engine.connect() as conn:
            b_id = str(
                await conn.scalar(
                    text("select id from sessions where user_id = :u limit 1"),
                    {"u": world.b.owner.user_id},
                )
            )
    before_a = await trail_length(superuser_engine, world.a.id)
    before_b = await trail_length(superuser_engine, world.b.id)
    caller = await MEMBERS.create(Role.OWNER, firm_id=world.a.id)
    async with session_client(world.app, caller) as c:
        theirs = (
            await c.post("/graphql", json={"query": document, "variables": variables(b_id)})
        ).json()
        missing = (
            await c.post(
                "/graphql", json={"query": document, "variables": variables(str(uuid.uuid4()))}
            )
        ).json()
    assert outcome(theirs) == outcome(missing), (theirs, missing)
    assert [e.get("message") for e in theirs.get("errors", [])] == [
        e.get("message") for e in missing.get("errors", [])
    ], (theirs, missing)
    assert str(theirs.get("data")).count(b_id) == 0 or outcome(theirs) != OK
    assert await trail_length(superuser_engine, world.b.id) == before_b
    if outcome(theirs) != OK:
        assert await trail_length(superuser_engine, world.a.id) == before_a


# --- the recipient's token -----------------------------------------------------------------------


async def test_a_token_is_no_credential_for_firm_fields(world: World) -> None:
    async with session_client(world.app) as c:
        form = await ok(
            c,
            "query($t: String!) { recipientForm(token: $t) { firmName } }",
            {"t": world.a.sent_token},
        )
        assert form["recipientForm"]["firmName"].startswith("Alpha")
        for header in (
            {"authorization": f"Bearer {world.a.sent_token}"},
            {"cookie": f"__Host-cp_session={world.a.sent_token}"},
        ):
            r = await c.post(
                "/graphql", json={"query": "{ declarationCounts { draft } }"}, headers=header
            )
            assert outcome(r.json()) in ("UNAUTHENTICATED",), r.text


async def test_unverified_user_sees_no_firm_data(world: World) -> None:
    async with session_client(world.app, world.unverified) as c:
        body = (
            await c.post(
                "/graphql",
                json={"query": "{ viewer { user { email emailVerified } role firm { name } } }"},
            )
        ).json()
    assert outcome(body) == "EMAIL_NOT_VERIFIED", body
    assert body.get("data") is None or "Alpha" not in str(body["data"])


# --- the audit trail through an evidence pack ----------------------------------------------------


async def test_a_pack_shows_a_member_or_a_viewer_none_of_the_admin_only_trail(
    world: World, superuser_engine: AsyncEngine
) -> None:
    """auditEntries is for admins (and audit:read keys); a member makes a pack and a viewer
    downloads it, so its appendix holds only the entries about what it holds: none of the
    period's key creations, invitations or role changes."""
    member = world.roles["member"]
    async with session_client(world.app, member) as c:
        query = {"query": "{ auditEntries { edges { node { action } } } }"}
        assert outcome((await c.post("/graphql", json=query)).json()) == "FORBIDDEN"
        scope = {"from": str(_today()), "to": str(_today()), "title": "Member's pack"}
        pack = await ok(c, GENERATE, {"i": scope})
    pack_id = pack["generateEvidencePack"]["pack"]["id"]
    async with session_client(world.app, world.roles["viewer"]) as v:
        asked = await ok(
            v, "query($id: UUID!) { evidencePack(id: $id) { downloadUrl } }", {"id": pack_id}
        )
        pdf = (await v.get(urlsplit(asked["evidencePack"]["downloadUrl"]).path)).content
    words = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).replace("\n", "")
    # Who made the pack's declarations is there, in the entries about them (as in `members`).
    trail = ("api_key.created", "member.invited", "api_key.revoked", "member.role_changed")
    assert [s for s in trail if s in words] == []
    assert "declaration.created" in words


# --- a role taken away applies at once -----------------------------------------------------------


async def test_demoted_and_removed_members_lose_access_at_once(
    world: World, members: Members
) -> None:
    admin = await members.create(Role.ADMIN, firm_id=world.a.id)
    async with session_client(world.app, admin) as c:
        assert (
            outcome(
                (
                    await c.post(
                        "/graphql", json={"query": "{ apiKeys { edges { node { id } } } }"}
                    )
                ).json()
            )
            == OK
        )
        async with session_client(world.app, world.a.owner) as o:
            await ok(
                o,
                "mutation($i: MemberRoleChangeInput!) { changeMemberRole(input: $i) "
                "{ member { role } } }",
                {"i": {"userId": str(admin.user_id), "role": "VIEWER"}},
            )
        assert (
            outcome(
                (
                    await c.post(
                        "/graphql", json={"query": "{ apiKeys { edges { node { id } } } }"}
                    )
                ).json()
            )
            == "FORBIDDEN"
        )
        body = (
            await c.post(
                "/graphql",
                json={
                    "query": CREATE_CP,
                    "variables": {"i": {"name": "After demotion", "kind": "OTHER"}},
                },
            )
        ).json()
        assert outcome(body) == "FORBIDDEN"
        async with session_client(world.app, world.a.owner) as o:
            await ok(
                o,
                "mutation($id: UUID!) { removeMember(userId: $id) { ok } }",
                {"id": str(admin.user_id)},
            )
        body = (await c.post("/graphql", json={"query": "{ declarationCounts { draft } }"})).json()
        assert outcome(body) == "UNAUTHENTICATED", body


async def test_a_key_ends_with_its_creators_membership(
    world: World, members: Members, superuser_engine: AsyncEngine
) -> None:
    """The admin who made a key saw its secret: removing them revokes it, as docs/api.md and
    removeMember's description say (tests/partners/test_key_creators.py: demotion too)."""
    admin = await members.create(Role.ADMIN, firm_id=world.a.id)
    async with session_client(world.app, admin) as c:
        secret, _ = await create_key(c, ["DECLARATIONS_READ"])
    async with session_client(world.app, world.a.owner) as o:
        await ok(
            o,
            "mutation($id: UUID!) { removeMember(userId: $id) { ok } }",
            {"id": str(admin.user_id)},
        )
    doc = "query KeyAfterRemoval { declarationCounts { draft } }"
    await trust(superuser_engine, [doc])
    async with partner_client(world.app, secret) as p:
        body = await persisted(p, doc)
    assert outcome(body) == "UNAUTHENTICATED", body


# --- the lanes (persisted declarations page, persisted createDeclaration) ------------------------


LANE_PAGE = (
    "query LanePage($first: Int!) { declarations(first: $first) "
    "{ edges { node { id recipientEmail } } } }"
)
LANE_CREATE = (
    "mutation LaneCreate($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { id status recipientEmail } } }"
)


@pytest.mark.parametrize(
    ("who", "page", "create"),
    [
        ("viewer", OK, "FORBIDDEN"),
        ("member", OK, OK),
        ("unverified", "EMAIL_NOT_VERIFIED", "EMAIL_NOT_VERIFIED"),
        ("key:DECLARATIONS_WRITE", "FORBIDDEN", "FORBIDDEN"),
        ("key:AUDIT_READ", "FORBIDDEN", "FORBIDDEN"),
        ("key:ALL", OK, OK),
        ("key:revoked", "UNAUTHENTICATED", "UNAUTHENTICATED"),
    ],
)
async def test_lanes(
    world: World, superuser_engine: AsyncEngine, who: str, page: str, create: str
) -> None:
    await trust(superuser_engine, [LANE_PAGE, LANE_CREATE])
    for _ in range(2):  # the second run finds the key used and the plan compiled: the lane
        if who.startswith("key:"):
            client = partner_client(world.app, world.keys[who])
        else:
            client = session_client(world.app, {"unverified": world.unverified, **world.roles}[who])
        async with client:
            got = await persisted(client, LANE_PAGE, {"first": 5})
            assert outcome(got) == page, got
            email = new_email()
            made = await persisted(
                client,
                LANE_CREATE,
                {
                    "i": {
                        "templateId": str(FIT.id),
                        "recipientName": "Pat Doe",
                        "recipientEmail": email,
                    }
                },
            )
            assert outcome(made) == create, made
        async with superuser_engine.connect() as conn:
            rows = await conn.scalar(
                text("select count(*) from declarations where recipient_email = :e"), {"e": email}
            )
        assert rows == (1 if create == OK else 0)
