"""Persisted documents: the trusted allow-list (the security boundary) and the APQ cache.

A document's id is the lowercase hex SHA-256 of its exact text. Trusted documents are loaded
by operators from a manifest (Apollo's persisted-query manifest, or a plain ``{id: text}`` map as
GraphQL Codegen's client preset writes) and by the app itself for its own pages. Automatic
persisted queries (APQ) registered by signed-in first-party clients live in a bounded cache and
never become trusted.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, replace

from graphql import ExecutableDefinitionNode, GraphQLSyntaxError, OperationDefinitionNode, parse
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import TrustedDocument

ID_SHAPE = re.compile(r"^[0-9a-f]{64}$")
MAX_DOCUMENT_CHARS = 20_000


@dataclass(frozen=True)
class Document:
    id: str
    body: str
    name: str | None = None
    operation_type: str | None = None


def document_id(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def parse_manifest(data: object) -> list[Document]:
    """The documents of a manifest, every id checked against its text and each text one query or
    mutation, stored with its type. Raises ValueError with a message naming the first bad
    entry."""
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        if data.get("version") != 1:
            raise ValueError("only version 1 of the Apollo manifest is understood")
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ValueError("an Apollo manifest needs an operations list")
        docs = []
        for op in operations:
            if not isinstance(op, dict) or not isinstance(op.get("body"), str):
                raise ValueError("each operation needs an id and a body")
            kind = op.get("type")
            docs.append(Document(str(op.get("id")), op["body"], op.get("name"), kind))
    elif isinstance(data, dict):
        docs = [Document(str(key), body) for key, body in data.items() if isinstance(body, str)]
        if len(docs) != len(data):
            raise ValueError("a plain manifest maps each sha256 id to a document string")
    else:
        raise ValueError("a manifest is a JSON object")
    for doc in docs:
        if not ID_SHAPE.match(doc.id) or doc.id != document_id(doc.body):
            raise ValueError(f"id {doc.id[:64]!r} is not the SHA-256 of its document")
        if doc.operation_type not in (None, "query", "mutation"):
            raise ValueError(f"{doc.id}: only queries and mutations can be persisted")
        if len(doc.body) > MAX_DOCUMENT_CHARS:
            raise ValueError(
                f"{doc.id}: the document is longer than {MAX_DOCUMENT_CHARS} characters"
            )
    return [replace(doc, operation_type=_operation_type(doc)) for doc in docs]


def _operation_type(doc: Document) -> str:
    """The type of the document's one operation ("query" or "mutation"), which the type the
    manifest declares, if any, must be. The allow-list is what an operator reviews: it holds
    what requests may run, one operation each (fragments beside it), as the app's own pages
    send, and never a subscription, which no request runs."""
    try:
        document = parse(doc.body)
    except GraphQLSyntaxError as error:
        raise ValueError(f"{doc.id}: not a GraphQL document ({error.message})") from None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    others = [d for d in document.definitions if not isinstance(d, ExecutableDefinitionNode)]
    if len(operations) != 1 or others:
        raise ValueError(f"{doc.id}: a document is one operation (and the fragments it uses)")
    kind = operations[0].operation.value
    if kind not in ("query", "mutation"):
        raise ValueError(f"{doc.id}: only queries and mutations can be persisted")
    if doc.operation_type not in (None, kind):
        raise ValueError(f"{doc.id}: declared a {doc.operation_type}, the document is a {kind}")
    return kind


async def store(session: AsyncSession, docs: list[Document]) -> int:
    """Add documents to the allow-list (as the owner); an id already present is unchanged."""
    added = 0
    for doc in docs:
        result = await session.execute(
            insert(TrustedDocument)
            .values(id=doc.id, body=doc.body, name=doc.name, operation_type=doc.operation_type)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        added += int(result.rowcount)  # type: ignore[attr-defined]
    return added


def holder(cookie: str) -> bytes:
    """Whose automatic persisted queries a session's requests run: its own (a digest of its
    cookie, which the read lane has before it knows the user; apart from the sessions table's
    digest of it, so that no key of this cache is a value in the database)."""
    return hashlib.sha256(b"apq\0" + cookie.encode()).digest()


async def trusted(session: AsyncSession, doc_id: str) -> str | None:
    """The trusted document with this id, if loaded."""
    row = await session.execute(select(TrustedDocument.body).where(TrustedDocument.id == doc_id))
    return row.scalar_one_or_none()


class ApqCache:
    """Automatic persisted queries, each its registering session's (by a digest of its cookie,
    ``holder``), bounded by count and by total characters (LRU). Shared, a document's id would
    tell anyone whether someone, in any firm, had sent its text."""

    def __init__(self, max_entries: int = 1000, max_chars: int = 2_000_000) -> None:
        self.max_entries, self.max_chars = max_entries, max_chars
        self._entries: OrderedDict[tuple[bytes, str], str] = OrderedDict()
        self._chars = 0

    def get(self, holder: bytes, doc_id: str) -> str | None:
        body = self._entries.get((holder, doc_id))
        if body is not None:
            self._entries.move_to_end((holder, doc_id))
        return body

    def put(self, holder: bytes, doc_id: str, body: str) -> None:
        key = (holder, doc_id)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = body
        self._chars += len(body)
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            _, dropped = self._entries.popitem(last=False)
            self._chars -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        return self._chars
