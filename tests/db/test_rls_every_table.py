"""Every firm table keeps each firm's rows to that firm, as the app role meets them.

UNPOLICED_TABLES (app/db/safety.py) asks only that RLS be forced and some policy exist, and
tests/db/test_rls.py tries five tables; a policy loosened to ``using (true)`` on any other
table would pass both. Here the tables come from the catalog (every table in public with a
firm_id column, and firms, whose own id is its tenant column) and each is checked twice:
every permissive policy that applies to coverproof_app must compare the tenant column with the
transaction's app.firm_id, and, in firm A's tenant context, a firm-B row the superuser made
must be neither readable, insertable, updatable nor deletable. The last test loosens each
policy in turn, inside a transaction it rolls back, and shows both checks then fail.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import session_factory
from app.db.tenant import bind_tenant, tenant_transaction

APP_ROLE = "coverproof_app"
# The deparsed form of app.db.ddl.TENANT compared with the tenant column, as pg_policies shows
# every tenant_isolation policy: a row passes only in its own firm's tenant context.
TENANT_EQ = (
    "({column} = ( SELECT (NULLIF(current_setting('app.firm_id'::text, true), ''::text))::uuid"
    ' AS "nullif"))'
)
ACTOR = (
    "( SELECT (NULLIF(current_setting('app.actor_id'::text, true), ''::text))::uuid AS \"nullif\")"
)
# Policies that apply to the app role without comparing the tenant, each pinned to its exact
# expression (for reads and writes alike) so that loosening it still fails.
EXCEPTIONS = {
    # A person's own sign-up, magic-link and reset tokens: rows of no firm (firm_id is null), so
    # no firm's row can pass it; an invitation (firm_id set) passes only tenant_isolation.
    ("auth_tokens", "own_tokens"): f"((firm_id IS NULL) AND (user_id = {ACTOR}))",
}
# sessions' own_sessions once compared only the user (a member of two firms read its sessions
# in the other firm); 0023 adds the tenant to it, so it is held to the rule with the rest.

# One valid row per table, for the firm :firm. Ids, hashes, sequence numbers and keys are
# fresh per statement, so the same row can be made again; :template and :declaration are firm
# B's (the rows are made for it, and refused for it in firm A's context),
# :user a member of both firms (:actor as text), :other a user of no firm yet.
ZERO_HASH = "'\\x" + "00" * 32 + "'::bytea"
ROWS = {
    "firms": "insert into firms (id, name) values (:firm, 'Probe Ltd')",
    "api_keys": "insert into api_keys (id, firm_id, name, secret_hash, display_prefix, scopes, "
    "created_by) values (gen_random_uuid(), :firm, 'Probe', "
    "sha256(gen_random_uuid()::text::bytea), 'cp_probe', array['declarations:read'], :user)",
    "audit_checkpoints": "insert into audit_checkpoints "
    "(id, firm_id, seq, head_hash, signed_at, key_id, signature) values (gen_random_uuid(), "
    ":firm, 1 + floor(random() * 1e9)::bigint, sha256('probe'::bytea), now(), 'probe', "
    "sha512('probe'::bytea))",
    # The next entry of the chain as the inserting role sees it (the append trigger checks it).
    "audit_log": "insert into audit_log (id, firm_id, seq, occurred_at, actor_type, action, "
    "details, prev_hash, hash, canonical) select gen_random_uuid(), :firm, head.seq, now(), "
    "'system', 'probe', '{}'::jsonb, head.prev, sha256(head.prev || body.canonical), "
    "body.canonical from (select coalesce(max(seq), 0) + 1 as seq, "
    f"coalesce((array_agg(hash order by seq desc))[1], {ZERO_HASH}) as prev "
    "from audit_log where firm_id = :firm) head, lateral (select convert_to(jsonb_build_object("
    "'seq', head.seq, 'firm_id', cast(:firm as text), 'action', 'probe', 'occurred_at', "
    """to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'actor', """
    "jsonb_build_object('type', 'system', 'id', null), 'target', jsonb_build_object('type', "
    "null, 'id', null), 'details', '{}'::jsonb, 'ip', null)::text, 'UTF8') as canonical) body",
    "auth_tokens": "insert into auth_tokens "
    "(id, purpose, token_hash, firm_id, email, role, created_by, expires_at) values "
    "(gen_random_uuid(), 'invitation', sha256(gen_random_uuid()::text::bytea), :firm, "
    "'probe@example.test', 'member', :user, now() + interval '1 day')",
    "counterparties": "insert into counterparties (id, firm_id, name, kind) "
    "values (gen_random_uuid(), :firm, 'Probe Insurance plc', 'insurer')",
    "declaration_forms": "insert into declaration_forms (firm_id, snapshot) "
    "values (:firm, jsonb_build_object('probe', gen_random_uuid()))",
    "declaration_templates": "insert into declaration_templates (id, firm_id, name, audience) "
    "values (gen_random_uuid(), :firm, 'Probe', 'person')",
    "template_versions": "insert into template_versions "
    "(id, firm_id, template_id, version, questions, attestation) values (gen_random_uuid(), "
    ":firm, :template, 1 + floor(random() * 1e9)::int, '[]'::jsonb, 'I attest.')",
    "declarations": "insert into declarations (id, firm_id, template_id, template_version, "
    "template_snapshot, recipient_name, recipient_email) values (gen_random_uuid(), :firm, "
    ":template, 1, '{}'::jsonb, 'Pat Probe', 'pat@example.test')",
    "evidence_packs": "insert into evidence_packs (id, firm_id, title, scope) "
    "values (gen_random_uuid(), :firm, 'Probe pack', '{}'::jsonb)",
    "idempotency_keys": "insert into idempotency_keys (firm_id, actor_id, key, operation, result) "
    "values (:firm, :actor, gen_random_uuid()::text, 'probe', '{}'::jsonb)",
    "memberships": "insert into memberships (firm_id, user_id, role) "
    "values (:firm, :other, 'viewer')",
    "retired_links": "insert into retired_links (token_hash, firm_id, declaration_id, reason) "
    "values (sha256(gen_random_uuid()::text::bytea), :firm, :declaration, 'replaced')",
    "sessions": "insert into sessions (id, token_hash, user_id, firm_id, expires_at) values "
    "(gen_random_uuid(), sha256(gen_random_uuid()::text::bytea), :user, :firm, "
    "now() + interval '1 day')",
}
FIRM_TABLES = text(
    "select c.relname from pg_class c join pg_attribute a on a.attrelid = c.oid "
    "where a.attname = 'firm_id' and not a.attisdropped and c.relkind in ('r', 'p') "
    "and c.relnamespace = 'public'::regnamespace order by 1"
)
# Permissive policies only: a restrictive one can narrow what they let through, never widen it.
APP_POLICIES = text(
    "select tablename, policyname, cmd, qual, with_check from pg_policies "
    "where schemaname = 'public' and tablename = any(:tables) and permissive = 'PERMISSIVE' "
    "and ('public' = any(roles) or exists (select 1 from unnest(roles) r "
    "where r <> 'public' and pg_has_role(:role, r, 'MEMBER'))) order by 1, 2"
)
MAY_CHANGE = text(
    "select has_table_privilege(current_user, :t, 'INSERT'), "
    "has_column_privilege(current_user, :t, :c, 'UPDATE'), "
    "has_table_privilege(current_user, :t, 'DELETE')"
)
UNFORCED = text(
    "select relname from pg_class where relnamespace = 'public'::regnamespace "
    "and relname = any(:tables) and not (relrowsecurity and relforcerowsecurity)"
)


def column(table: str) -> str:
    return "id" if table == "firms" else "firm_id"


async def firm_tables(session: AsyncSession) -> list[str]:
    """firms and every table of the schema with a firm_id column."""
    return ["firms", *(await session.execute(FIRM_TABLES)).scalars()]


def conjuncts(expression: str) -> list[str]:
    """The top-level AND operands of a deparsed expression (itself when it is no AND)."""
    inner = expression[1:-1] if expression.startswith("(") else expression
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(inner):
        quoted ^= char == "'"
        depth += (char == "(") - (char == ")") if not quoted else 0
        if depth < 0:  # the outer parentheses did not wrap the whole expression
            return [expression]
        if depth == 0 and not quoted and inner.startswith(" AND ", i):
            parts.append(inner[start:i])
            start = i + len(" AND ")
    if not parts:
        return [expression]
    return [leaf for part in [*parts, inner[start:]] for leaf in conjuncts(part)]


def tenant_bound(table: str, expression: str) -> bool:
    """Whether a row passes only if its tenant column is the transaction's app.firm_id."""
    return TENANT_EQ.format(column=column(table)) in conjuncts(expression)


async def policy_problems(session: AsyncSession, tables: list[str]) -> list[str]:
    """Each table not under forced RLS, and each way (reads, writes) a permissive policy of
    the app role's lets a row through without comparing it with the tenant."""
    params = {"tables": tables, "role": APP_ROLE}
    problems = [f"{t}: RLS not forced" for t in (await session.execute(UNFORCED, params)).scalars()]
    for table, name, cmd, qual, with_check in (await session.execute(APP_POLICIES, params)).all():
        reads = qual if cmd in ("ALL", "SELECT", "UPDATE", "DELETE") else None
        writes = (with_check or qual) if cmd in ("ALL", "INSERT", "UPDATE") else None
        for way, expression in [("reads", reads), ("writes", writes)]:
            if expression is None or tenant_bound(table, expression):
                continue
            if EXCEPTIONS.get((table, name)) != expression:
                problems.append(f"{table}.{name} {way}: {expression}")
    return problems


@dataclass(frozen=True)
class Firms:
    """Firm A and firm B, a user member of both (so no policy on the actor alone suffices),
    two users of neither, and a template and a declaration of firm B."""

    a: uuid.UUID
    b: uuid.UUID
    user: uuid.UUID
    others: tuple[uuid.UUID, uuid.UUID]
    template: uuid.UUID
    declaration: uuid.UUID

    def params(self, firm: uuid.UUID, other: int = 0) -> dict[str, object]:
        return {
            "firm": firm,
            "user": self.user,
            "actor": str(self.user),  # idempotency_keys.actor_id is text
            "other": self.others[other],
            "template": self.template,
            "declaration": self.declaration,
        }


async def make_firms(session: AsyncSession, firms: Firms) -> None:
    for firm in (firms.a, firms.b):
        await session.execute(
            text("insert into firms (id, name) values (:f, 'Tenant Ltd')"), {"f": firm}
        )
    for user in (firms.user, *firms.others):
        await session.execute(
            text("insert into users (id, email) values (:u, :e)"),
            {"u": user, "e": f"{user.hex[:12]}@example.test"},
        )
    for firm in (firms.a, firms.b):
        await session.execute(
            text("insert into memberships (firm_id, user_id, role) values (:f, :u, 'owner')"),
            {"f": firm, "u": firms.user},
        )
    await session.execute(
        text(
            "insert into declaration_templates (id, firm_id, name, audience) "
            "values (:t, :f, 'Probe template', 'person')"
        ),
        {"t": firms.template, "f": firms.b},
    )
    await session.execute(
        text(
            "insert into declarations (id, firm_id, template_id, template_version, "
            "template_snapshot, recipient_name, recipient_email) values (:d, :f, :t, 1, "
            "'{}'::jsonb, 'Pat Probe', 'pat@example.test')"
        ),
        {"d": firms.declaration, "t": firms.template, "f": firms.b},
    )
    # The user's own session in firm A: the row a move into firm B would take (leaks()).
    await session.execute(text(ROWS["sessions"]), firms.params(firms.a))


@pytest.fixture
async def firms(superuser_engine: AsyncEngine) -> AsyncIterator[Firms]:
    """The two firms, and a row of firm B in every firm table, made as the superuser (past
    RLS); all of it deleted afterwards, past the append-only triggers, so nothing is left for
    tests that read every firm (the audit chain's verifier, the checkpointer)."""
    made = Firms(
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        (uuid.uuid4(), uuid.uuid4()),
        uuid.uuid4(),
        uuid.uuid4(),
    )
    sessions = session_factory(superuser_engine)
    try:
        async with sessions() as session, session.begin():
            await make_firms(session, made)
            for table in await firm_tables(session):
                if table != "firms":
                    await session.execute(text(ROWS[table]), made.params(made.b))
        yield made
    finally:
        async with sessions() as session, session.begin():
            await session.execute(text("set local session_replication_role = replica"))
            ids = {"firms": [made.a, made.b], "users": [made.user, *made.others]}
            for table in await firm_tables(session):
                await session.execute(
                    text(f"delete from {table} where {column(table)} = any(:firms)"), ids
                )
            await session.execute(text("delete from users where id = any(:users)"), ids)


async def refusal(session: AsyncSession, statement: str, params: dict[str, object]) -> str:
    """Run a write in a savepoint that is always rolled back; what came of it ("refused by
    RLS" when row-level security refused it)."""
    savepoint = await session.begin_nested()
    try:
        result = await session.execute(text(statement), params)
    except DBAPIError as error:
        await savepoint.rollback()
        message = str(error.orig)
        return "refused by RLS" if "row-level security" in message else message
    await savepoint.rollback()
    return f"{result.rowcount} rows"  # type: ignore[attr-defined]


async def leaks(session: AsyncSession, table: str, firms: Firms) -> list[str]:
    """What a transaction bound to firm A (as firms.user) may do to firm B's rows of
    ``table``: nothing, so an empty list. Each write is tried only where the role holds the
    privilege (else PostgreSQL refuses it before RLS is asked). Where it may update the
    tenant column but not insert (sessions), moving its own firm-A row into firm B is the way
    a row could reach firm B, so that is tried too."""
    col, params = column(table), firms.params(firms.b, other=1)
    where = f"where {col} = :firm"
    found = []
    seen = (await session.execute(text(f"select count(*) from {table} {where}"), params)).one()[0]
    if seen:
        found.append(f"reads {seen} rows")
    may_insert, may_update, may_delete = (
        await session.execute(MAY_CHANGE, {"t": table, "c": col})
    ).one()
    # No WHERE: one that reads the row makes PostgreSQL hold the moved row to the read policy too.
    move = f"update {table} set {col} = :firm"
    writes = [
        ("insert", ROWS[table], may_insert, "refused by RLS"),
        ("update", f"update {table} set {col} = {col} {where}", may_update, "0 rows"),
        ("delete", f"delete from {table} {where}", may_delete, "0 rows"),
        ("move", move, may_update and not may_insert, "refused by RLS"),
    ]
    for name, statement, granted, safe in writes:
        if granted and (outcome := await refusal(session, statement, params)) != safe:
            found.append(f"{name}: {outcome}")
    return found


async def test_every_firm_table_has_a_probe_row(owner_engine: AsyncEngine) -> None:
    """A new table with a firm_id must get a row in ROWS, and so these checks."""
    async with session_factory(owner_engine)() as session:
        tables = await firm_tables(session)
    assert sorted(tables) == sorted(ROWS)


async def test_every_app_policy_of_every_firm_table_compares_the_tenant(
    owner_engine: AsyncEngine,
) -> None:
    async with session_factory(owner_engine)() as session:
        assert await policy_problems(session, await firm_tables(session)) == []


async def test_firm_a_can_neither_see_nor_write_firm_b_rows_of_any_table(
    firms: Firms,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    async with session_factory(superuser_engine)() as session:
        tables = await firm_tables(session)
        for table in tables:  # the rows are there to be hidden
            present = f"select count(*) from {table} where {column(table)} = :b"
            assert (await session.execute(text(present), {"b": firms.b})).scalar_one() >= 1
    async with tenant_transaction(app_sessions, firms.a, firms.user) as session:
        found = {table: await leaks(session, table, firms) for table in tables}
    assert {table: what for table, what in found.items() if what} == {}


async def test_the_probe_rows_are_seen_and_made_in_their_own_firm(
    firms: Firms, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The control: bound to firm B, the app role reads firm B's rows and may insert each
    probe row, so firm A's refusals above come from the tenant, not from a broken row or a
    missing grant. (firms is left out of the insert: firm B's own id is taken. A membership
    is made only for the transaction's actor (0028): as the user it enrols.)"""
    params = firms.params(firms.b, other=1)
    async with tenant_transaction(app_sessions, firms.b, firms.user) as session:
        for table in await firm_tables(session):
            count = f"select count(*) from {table} where {column(table)} = :firm"
            assert (await session.execute(text(count), {"firm": firms.b})).scalar_one() >= 1
            may_insert = await session.execute(MAY_CHANGE, {"t": table, "c": column(table)})
            if table not in ("firms", "memberships") and may_insert.one()[0]:
                made = await refusal(session, ROWS[table], params)
                assert made == "1 rows", (table, made)
    async with tenant_transaction(app_sessions, firms.b, firms.others[1]) as session:
        assert await refusal(session, ROWS["memberships"], params) == "1 rows"


@pytest.mark.parametrize("table", sorted(ROWS))
async def test_loosening_any_policy_of_a_table_fails_both_checks(
    firms: Firms, superuser_engine: AsyncEngine, table: str
) -> None:
    """Each of the table's app policies loosened to ``using (true)``, then (separately) to
    ``with check (true)``, in a superuser transaction rolled back afterwards, as the app role
    bound to firm A (SET ROLE): the catalog check names the table and the behaviour leaks."""
    sessions = session_factory(superuser_engine)
    async with sessions() as session:
        policies = (
            await session.execute(APP_POLICIES, {"tables": [table], "role": APP_ROLE})
        ).all()
    loosenings = [
        f"alter policy {name} on {table} {clause}"
        for _, name, cmd, _, _ in policies
        for clause, cmds in [
            ("using (true)", "ALL SELECT UPDATE DELETE"),
            ("with check (true)", "ALL INSERT UPDATE"),
        ]
        if cmd in cmds.split()
    ]
    assert loosenings, table
    for loosen in loosenings:
        async with sessions() as session:
            await session.begin()
            await session.execute(text(loosen))
            named = [p for p in await policy_problems(session, [table]) if p.startswith(table)]
            await session.execute(text(f"set local role {APP_ROLE}"))
            await bind_tenant(session, firms.a, firms.user)
            may = (await session.execute(MAY_CHANGE, {"t": table, "c": column(table)})).one()
            leaked = await leaks(session, table, firms)
            await session.rollback()
        assert named, loosen
        if "with check" in loosen and not (may[0] or may[1]):
            # The app role may neither insert nor set the tenant column (sessions,
            # retired_links): its privileges leave that check nothing to hold.
            assert not leaked, loosen
        else:
            assert leaked, loosen
