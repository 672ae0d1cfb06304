#!/usr/bin/env python3
"""Verify a CoverProof audit export offline, without trusting CoverProof.

Usage: python3 tools/verify_audit.py EXPORT.jsonl PUBLIC_KEY.pem

Needs only the Python standard library, plus the `cryptography` package for the Ed25519
signature checks (pip install cryptography). docs/audit.md describes every byte, so you can
also write your own verifier.

Checks: the last line signs the SHA-256 of every byte before it with the public key (so no
byte of the file can change unnoticed); every line has exactly its format's fields; seq has no
gaps; each entry's prev_hash is the previous entry's hash (the first entry of a full export
follows 32 zero bytes); hash = SHA-256(prev_hash || canonical); the canonical JSON names the
same seq and firm; every checkpoint's head hash equals the hash of the entry at its seq, and
its signature verifies; no checkpoint signs a seq beyond the last entry (a cut-off tail).

Exit 0 with a one-line summary when intact; exit 1 naming the first bad line otherwise; exit 2
when the files cannot be read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from typing import Any

GENESIS = bytes(32)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
KEYS = {
    "header": {"type", "format", "version", "firm_id", "exported_at", "key_id", "scope"},
    "entry": {"type", "seq", "prev_hash", "hash", "canonical"},
    "checkpoint": {"type", "id", "firm_id", "seq", "head_hash", "signed_at", "key_id", "signature"},
    "signature": {"type", "sha256", "key_id", "signature"},
}


class Broken(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")


def _load_public_key(path: str) -> Any:
    # Imported here: everything but the signature checks runs on the standard library alone.
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    with open(path, "rb") as handle:
        key = load_pem_public_key(handle.read())
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, hashlib.sha256(raw).hexdigest()[:16]


def _signed(public_key: Any, signature: str, payload: bytes) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), payload)
    except Exception:
        return False
    return True


def _parse(number: int, raw: bytes) -> dict[str, Any]:
    try:
        item = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise Broken(number, "not a JSON line") from error
    if not isinstance(item, dict) or set(item) != KEYS.get(item.get("type"), set()):
        raise Broken(number, "unexpected fields for its line type")
    return item


def _checkpoint_payload(cp: dict[str, Any]) -> bytes:
    body = {k: cp[k] for k in ("firm_id", "seq", "head_hash", "signed_at")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check_entry(number: int, entry: dict[str, Any], firm_id: str, previous: Any) -> bytes:
    canonical = entry["canonical"].encode("utf-8")
    prev_hash, stored = bytes.fromhex(entry["prev_hash"]), bytes.fromhex(entry["hash"])
    body = json.loads(canonical)
    if previous is None:
        if entry["seq"] == 1 and prev_hash != GENESIS:
            raise Broken(number, "the first entry must follow 32 zero bytes")
    else:
        prev_seq, prev_stored = previous
        if entry["seq"] != prev_seq + 1:
            raise Broken(
                number, f"seq {entry['seq']} follows seq {prev_seq} (entry missing or moved)"
            )
        if prev_hash != prev_stored:
            raise Broken(number, f"seq {entry['seq']}: prev_hash is not the previous entry's hash")
    if hashlib.sha256(prev_hash + canonical).digest() != stored:
        raise Broken(number, f"seq {entry['seq']}: hash is not SHA-256(prev_hash || canonical)")
    if body.get("seq") != entry["seq"] or body.get("firm_id") != firm_id:
        raise Broken(number, f"seq {entry['seq']}: canonical bytes name another seq or firm")
    return stored


def _check_checkpoint(
    number: int, cp: dict[str, Any], firm_id: str, key: Any, hashes: dict[int, bytes]
) -> None:
    public_key, key_id = key
    seq = cp["seq"]
    if cp["firm_id"] != firm_id or cp["key_id"] != key_id or not TIMESTAMP.match(cp["signed_at"]):
        raise Broken(number, "checkpoint of another firm or key, or a malformed time")
    if seq not in hashes:
        raise Broken(number, f"checkpoint signs seq {seq}, beyond the export (cut off)")
    if bytes.fromhex(cp["head_hash"]) != hashes[seq]:
        raise Broken(number, f"checkpoint at seq {seq} signed another hash (rewritten)")
    if not _signed(public_key, cp["signature"], _checkpoint_payload(cp)):
        raise Broken(number, f"checkpoint at seq {seq}: signature invalid")


def verify(data: bytes, key: Any) -> str:
    """The summary of an intact export; raises Broken naming the first bad line."""
    public_key, key_id = key
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) < 2:
        raise Broken(1, "not a complete export")
    trailer = _parse(len(lines), lines[-1])
    body_bytes = b"".join(line + b"\n" for line in lines[:-1])
    digest = hashlib.sha256(body_bytes).digest()
    if trailer["type"] != "signature" or trailer["key_id"] != key_id:
        raise Broken(len(lines), "the export is not signed by this key")
    if trailer["sha256"] != digest.hex() or not _signed(public_key, trailer["signature"], digest):
        raise Broken(len(lines), "the signature does not cover these bytes (file changed)")
    header = _parse(1, lines[0])
    known = header["format"] == "coverproof-audit-export" and header["version"] == 1
    known = known and header["scope"] in ("full", "dated")
    if header["type"] != "header" or not known or header["key_id"] != key_id:
        raise Broken(1, "not a CoverProof audit export (version 1) for this key")
    firm_id = str(header["firm_id"])
    hashes: dict[int, bytes] = {}
    previous: Any = None
    checkpoints = 0
    for number, raw in enumerate(lines[1:-1], start=2):
        item = _parse(number, raw)
        try:
            if item["type"] == "entry":
                stored = _check_entry(number, item, firm_id, previous)
                hashes[item["seq"]] = stored
                previous = (item["seq"], stored)
            elif item["type"] == "checkpoint":
                _check_checkpoint(number, item, firm_id, key, hashes)
                checkpoints += 1
            else:
                raise Broken(number, f"a {item['type']} line in the middle of the export")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Broken(number, f"malformed line ({type(error).__name__})") from error
    if previous is None:
        return f"OK: firm {firm_id}: no entries, signed export"
    if header["scope"] == "full" and min(hashes) != 1:
        raise Broken(2, f"a full export starts at seq {min(hashes)}, not 1 (entries removed)")
    return (
        f"OK: firm {firm_id}: entries {min(hashes)}..{previous[0]} ({len(hashes)}) intact, "
        f"{checkpoints} signed checkpoint(s) verified, head {previous[1].hex()}, signed export"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as handle:
            data = handle.read()
        key = _load_public_key(argv[2])
    except (OSError, ValueError, TypeError) as error:
        print(f"cannot read input: {error}", file=sys.stderr)
        return 2
    try:
        print(verify(data, key))
    except Broken as broken:
        print(f"BROKEN: {broken}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
