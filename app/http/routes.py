"""Plain routes: liveness, readiness and security.txt."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from app.evidence.signature import pack_signer
from app.http.state import app_state

log = logging.getLogger("coverproof.http")


async def healthz(request: Request) -> Response:
    """The process is up; touches no dependency."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The database answers; a load balancer sends no traffic here until it does."""
    state = app_state(request)
    if not await state.readiness.check(state.engine):
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def security_txt(request: Request) -> Response:
    """RFC 9116; Expires is always about a year ahead, so the file never goes stale."""
    public_url = app_state(request).settings.public_url.rstrip("/")
    expires = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT00:00:00Z")
    body = (
        "Contact: mailto:security@coverproof.co.uk\n"
        f"Expires: {expires}\n"
        f"Policy: {public_url}/security/disclosure\n"
        "Preferred-Languages: en\n"
        f"Canonical: {public_url}/.well-known/security.txt\n"
    )
    return PlainTextResponse(body)


async def audit_key(request: Request) -> Response:
    """The public key that signs audit checkpoints (PEM; ``.jwk`` or an Accept of
    application/jwk+json for a JWK), so anyone can check a checkpoint without us."""
    key = app_state(request).signing_key
    if "application/jwk+json" in request.headers.get("accept", ""):
        return await audit_key_jwk(request)
    return PlainTextResponse(key.public_pem(), media_type="application/x-pem-file")


async def pack_certificate(request: Request) -> Response:
    """The certificate that signs evidence packs (PEM), for a reader to trust once."""
    signer = pack_signer(app_state(request).signing_key)
    return PlainTextResponse(signer.certificate_pem(), media_type="application/x-pem-file")


async def audit_keys(request: Request) -> Response:
    """Every public key our checkpoints may name (PEM blocks, the current one first): after a
    rotation, the earlier ones still check what they signed."""
    key = app_state(request).signing_key
    return PlainTextResponse(key.trusted_pem(), media_type="application/x-pem-file")


async def audit_key_jwk(request: Request) -> Response:
    key = app_state(request).signing_key
    return JSONResponse(key.public_jwk(), media_type="application/jwk+json")
