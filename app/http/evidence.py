"""``GET /evidence/download/<signed token>``: every evidence-pack download, whatever the store.

Three checks, all of which must pass, and every refusal is the same 404 (so a probe learns
nothing about which one failed or whether a pack exists):

1. the token is genuine and under five minutes old (``app.evidence.download``);
2. the request carries a live, verified session cookie, or a live partner key with the
   ``evidence:read`` scope (``Authorization: Bearer``), of the token's firm, not both;
3. the pack, read in that firm's tenant transaction (RLS), is ready, and its file still hashes
   to the SHA-256 recorded when it was made.

The file is then sent as an attachment, never cached, and the download is an audit entry in
the same transaction; each caller may download 30 times a minute (429 beyond: every download
is an entry in the firm's chain).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth.sessions import SessionIdentity
from app.db.tenant import bind_tenant, transaction
from app.errors import Forbidden, NotFound, RateLimited, Unauthenticated
from app.evidence import download, service
from app.evidence.storage import CONTENT_TYPE, StorageError
from app.http.credentials import credentials, identify
from app.http.negotiation import error_body
from app.http.state import app_state
from app.partners import keys
from app.partners.keys import ApiKeyIdentity, Scope
from app.ratelimit.client_ip import client_ip
from app.ratelimit.policies import Policy
from app.schema.context import actor_of

log = logging.getLogger("coverproof.evidence")

NO_STORE = {"cache-control": "no-store"}


def _refused(status: int = 404, code: str = "NOT_FOUND", message: str = "Not found.") -> Response:
    return Response(error_body(code, message), status, NO_STORE, "application/json")


async def _caller(
    request: Request, session: AsyncSession, firm_id: uuid.UUID
) -> SessionIdentity | ApiKeyIdentity | None:
    """The session, or the partner key (``evidence:read``), of ``firm_id`` that asks; None
    for anyone else."""
    presented = credentials(request)
    if presented.both:
        return None  # as the API refuses it
    identity = await identify(session, presented, app_state(request).settings.session_idle)
    if isinstance(identity, ApiKeyIdentity) and Scope.EVIDENCE_READ not in identity.scopes:
        return None
    if identity is None or not identity.email_verified or identity.firm_id != firm_id:
        return None
    return identity


class _Refused(Exception):
    """Refuse, rolling back: a key's lookup marks a first use, which must stay unspent (and
    be audited where it is accepted) when the key is refused here. Its arguments are
    ``_refused``'s (none: not found)."""


async def download_pack(request: Request) -> Response:
    if request.method != "GET":  # HEAD (Starlette adds it): a download recorded, nothing sent
        response = _refused(405, "METHOD_NOT_ALLOWED", "Download the pack with GET.")
        response.headers["allow"] = "GET"
        return response
    state = app_state(request)
    claim = download.read(state.secret_key, request.path_params["token"])
    if claim is None or state.storage is None:
        return _refused()
    try:
        async with transaction(state.sessions) as session:
            identity = await _caller(request, session, claim.firm_id)
            if identity is None:
                raise _Refused
            await bind_tenant(session, identity.firm_id, identity.user_id)
            actor = actor_of(identity, client_ip(request.scope, state.settings.trusted_proxies))
            if isinstance(identity, ApiKeyIdentity):  # every request of a key counts
                await state.limiter.hit(Policy.API_KEY_REQUESTS, str(identity.key_id))
            await state.limiter.hit(
                Policy.PACK_DOWNLOADS_PER_CALLER, f"{actor.type.value}:{actor.id}"
            )
            try:
                pack, data = await service.read_download(
                    session, actor, state.storage, claim.pack_id
                )
            except NotFound as missing:
                raise _Refused from missing
            # Recorded once the file is read: the chain lock is held to the commit.
            try:
                if isinstance(identity, ApiKeyIdentity) and identity.first_use:
                    await keys.record_first_use(session, actor)
                await service.record_download(session, actor, pack)
            except (Unauthenticated, Forbidden) as changed:
                # Removed, demoted, or the key revoked, while it ran (0035): refused as the API
                # refuses it.
                status = 401 if isinstance(changed, Unauthenticated) else 403
                raise _Refused(status, changed.code, changed.message) from changed
    except _Refused as refused:
        return _refused(*refused.args)
    except RateLimited as limited:
        wait = str(limited.extensions["retryAfter"])
        response = _refused(429, limited.code, limited.message)
        response.headers["retry-after"] = wait
        return response
    except StorageError:
        log.exception("evidence pack %s could not be served", claim.pack_id)
        return _refused(500, "PACK_UNAVAILABLE", "The pack cannot be served; contact us.")
    headers = {
        **NO_STORE,
        "content-disposition": f'attachment; filename="{pack.id}.pdf"',
    }
    return Response(data, 200, headers, CONTENT_TYPE)


ROUTES = [Route(download.PATH + "{token}", download_pack, methods=["GET"])]
