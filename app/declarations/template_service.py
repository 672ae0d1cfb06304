"""Templates: the built-in ones (data files) and each firm's own, versioned.

A new version never changes an old one: declarations pin a snapshot of the version they were
sent with.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Select, insert, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app import idempotency, pagination
from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, Role
from app.db.models import DeclarationTemplate, TemplateVersion
from app.declarations.templates import TemplateSpec, builtin, load_builtins, snapshot
from app.errors import NotFound, field_error


@dataclass(frozen=True)
class Template:
    id: uuid.UUID
    version: int
    spec: TemplateSpec
    built_in: bool
    key: str | None

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.spec, template_id=self.id, version=self.version, key=self.key)


def _latest_versions(version: Any = DeclarationTemplate.latest_version) -> Select[Any]:
    """Firm templates' rows, each with its latest version's, or ``version``'s (only the firm's
    own, under RLS)."""
    return select(
        DeclarationTemplate.id,
        DeclarationTemplate.name,
        DeclarationTemplate.audience,
        DeclarationTemplate.archived_at,
        TemplateVersion.version,
        TemplateVersion.questions,
        TemplateVersion.attestation,
    ).join(
        TemplateVersion,
        (TemplateVersion.template_id == DeclarationTemplate.id)
        & (TemplateVersion.version == version),
    )


def _latest(template_id: uuid.UUID) -> Select[Any]:
    return _latest_versions().where(DeclarationTemplate.id == template_id)


async def _stored(session: AsyncSession, template_id: uuid.UUID, version: int) -> Template:
    """A firm template's stored version (with the template's name and audience now), for a key
    kept before requests were fingerprinted, which may come with another request."""
    query = _latest_versions(version).where(DeclarationTemplate.id == template_id)
    row = (await session.execute(query)).one_or_none()
    return _found(None if row is None else row._mapping)


def _firm_template(row: Mapping[str, Any]) -> Template:
    spec = TemplateSpec.model_validate(
        {
            "name": row["name"],
            "audience": row["audience"],
            "questions": row["questions"],
            "attestation": row["attestation"],
        }
    )
    return Template(row["id"], row["version"], spec, False, None)


def _found(row: Mapping[str, Any] | None) -> Template:
    if row is None or row["archived_at"] is not None:
        raise NotFound("Template not found.")
    return _firm_template(row)


def _builtin(template_id: uuid.UUID) -> Template | None:
    found = builtin(template_id)
    return None if found is None else Template(found.id, found.version, found.spec, True, found.key)


def lane_snapshot(template: Template) -> dict[str, Any] | orjson.Fragment:
    """``template.snapshot()`` as the write lane writes it: a built-in's (a version of which
    never changes) serialised once per process, as a fragment orjson writes as it is; about
    40 us a request otherwise, most of it pydantic's dump of the questions."""
    if template.built_in:
        return _builtin_snapshot(template.id)
    return template.snapshot()


@functools.cache
def _builtin_snapshot(template_id: uuid.UUID) -> orjson.Fragment:
    # Reached only with a built-in's id, so it holds one entry per built-in.
    found = _builtin(template_id)
    assert found is not None
    return orjson.Fragment(orjson.dumps(found.snapshot()))


# A firm's template may hold about 90 kB of questions (all a request may send), and a firm may
# have any number: a list of all of them in one answer was tens of megabytes, built on the event
# loop every firm's requests share, for seconds.
MAX_PAGE = 20
# A built-in's cursor: no firm's template has an empty name.
_BUILT_IN = ""


def encode_cursor(template: Template) -> str:
    """An opaque position in the list: a built-in's id, or the (name, id) the firm's own are
    ordered by."""
    return pagination.encode(_BUILT_IN if template.built_in else template.spec.name, template.id)


async def list_templates(
    session: AsyncSession, actor: Actor, *, first: int = MAX_PAGE, after: str | None = None
) -> tuple[list[Template], bool]:
    """A page of the built-in templates, then of the firm's own (the latest version of each, not
    archived) by name and id, and whether more follow."""
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE} templates at a time.")
    built_in = [Template(b.id, b.version, b.spec, True, b.key) for b in load_builtins()]
    query = _latest_versions().where(DeclarationTemplate.archived_at.is_(None))
    if after is not None:
        name, ident = pagination.decode(after)
        if name == _BUILT_IN:
            ids = [template.id for template in built_in]
            if ident not in ids:
                raise pagination.not_a_cursor()
            built_in = built_in[ids.index(ident) + 1 :]
        else:
            built_in = []
            position = tuple_(DeclarationTemplate.name, DeclarationTemplate.id)
            query = query.where(position > tuple_(literal(name), literal(ident)))
    page = built_in[:first]
    room = first - len(page)
    order = (DeclarationTemplate.name, DeclarationTemplate.id)
    rows = (await session.execute(query.order_by(*order).limit(room + 1))).all()
    page += [_firm_template(row._mapping) for row in rows[:room]]
    return page, len(built_in) > first or len(rows) > room


async def get_template(session: AsyncSession, actor: Actor, template_id: uuid.UUID) -> Template:
    """A built-in template or one of the firm's own, at its latest version."""
    found = _builtin(template_id)
    if found is not None:
        return found
    row = (await session.execute(_latest(template_id))).one_or_none()
    return _found(None if row is None else row._mapping)


@functools.cache
def _latest_statement() -> str:
    return str(_latest(uuid.UUID(int=0)).compile(dialect=asyncpg_dialect()))  # type: ignore[no-untyped-call]


async def lane_template(conn: asyncpg.Connection, template_id: uuid.UUID) -> Template:
    """``get_template`` on a plain asyncpg connection bound to the firm (the write lane's): the
    same query, compiled once."""
    found = _builtin(template_id)
    if found is not None:
        return found
    row = await conn.fetchrow(_latest_statement(), template_id)
    if row is None:
        return _found(None)
    # A plain connection reads JSONB as its text.
    return _found({**row, "questions": orjson.loads(row["questions"])})


async def create_template(
    session: AsyncSession, actor: Actor, spec: TemplateSpec, idempotency_key: str | None = None
) -> Template:
    """A firm's own template, at version 1 (admins). A retry with the same idempotency key
    returns the first template and writes nothing."""
    actor.require(Role.ADMIN)
    first = await idempotency.replay(session, actor, idempotency_key, "createTemplate", spec)
    if first is not None:
        # Version 1, which the retry's spec is (the same request), not the template's latest:
        # versions made since are not what the first attempt made. A key kept before requests
        # were fingerprinted may come with another spec: it answers as it did.
        if idempotency.for_this_request(first):
            return Template(uuid.UUID(first["id"]), 1, spec, False, None)
        return await _stored(session, uuid.UUID(first["id"]), 1)
    template_id, now = uuid.uuid4(), datetime.now(UTC)
    await session.execute(
        insert(DeclarationTemplate).values(
            id=template_id,
            firm_id=actor.firm_id,
            name=spec.name,
            audience=spec.audience,
            latest_version=1,
            created_by=actor.id,
            created_at=now,
        )
    )
    await _insert_version(session, actor, template_id, 1, spec, now)
    result = {"id": str(template_id)}
    await idempotency.remember(session, actor, idempotency_key, "createTemplate", spec, result)
    await chain.record(
        session, actor, Action.TEMPLATE_CREATED, "template", template_id, {"name": spec.name}
    )
    return Template(template_id, 1, spec, False, None)


async def create_template_version(
    session: AsyncSession,
    actor: Actor,
    template_id: uuid.UUID,
    spec: TemplateSpec,
    idempotency_key: str | None = None,
) -> Template:
    """The next version of a firm template (admins). Built-in templates cannot be changed. A
    retry with the same idempotency key (and so the same template and spec) returns the
    version the first attempt made and writes nothing."""
    actor.require(Role.ADMIN)
    request = {"template_id": str(template_id), **spec.model_dump(mode="json")}
    key, operation = idempotency_key, "createTemplateVersion"
    first = await idempotency.replay(session, actor, key, operation, request)
    if first is not None:
        if idempotency.for_this_request(first):
            return Template(template_id, first["version"], spec, False, None)
        # A key kept before requests were fingerprinted: what it made, for the template it made
        # it for; another's is a different request.
        if first["id"] != str(template_id):
            raise field_error("idempotencyKey", "This key was used for a different request.")
        return await _stored(session, template_id, first["version"])
    # Two at once would both take the next number, the second failing on the unique key.
    await chain.lock_firm(session, actor.firm_id)
    current = await get_template(session, actor, template_id)
    if current.built_in:
        raise NotFound("Template not found.")
    version, now = current.version + 1, datetime.now(UTC)
    await session.execute(
        update(DeclarationTemplate)
        .where(DeclarationTemplate.id == template_id)
        .values(latest_version=version, name=spec.name, audience=spec.audience)
    )
    await _insert_version(session, actor, template_id, version, spec, now)
    result = {"id": str(template_id), "version": version}
    await idempotency.remember(session, actor, key, operation, request, result)
    await chain.record(
        session,
        actor,
        Action.TEMPLATE_VERSION_CREATED,
        "template",
        template_id,
        # The version's rows keep its questions; its name and audience only the template's row
        # does, until the next version replaces them: the trail keeps each.
        {"version": version, "name": spec.name, "audience": spec.audience},
    )
    return Template(template_id, version, spec, False, None)


async def _insert_version(
    session: AsyncSession,
    actor: Actor,
    template_id: uuid.UUID,
    version: int,
    spec: TemplateSpec,
    now: datetime,
) -> None:
    await session.execute(
        insert(TemplateVersion).values(
            id=uuid.uuid4(),
            firm_id=actor.firm_id,
            template_id=template_id,
            version=version,
            questions=[q.model_dump(mode="json", exclude_none=True) for q in spec.questions],
            attestation=spec.attestation,
            created_by=actor.id,
            created_at=now,
        )
    )
