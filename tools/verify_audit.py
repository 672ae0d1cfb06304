#!/usr/bin/env python3
"""Verify a CoverProof audit export offline, without trusting CoverProof.

Usage: python3 tools/verify_audit.py EXPORT.jsonl PUBLIC_KEY.pem

Needs only the Python standard library, plus the `cryptography` package for the Ed25519
signature check of checkpoints (pip install cryptography). docs/audit.md describes every byte,
so you can also write your own verifier.

Checks, line by line: seq has no gaps; each entry's prev_hash is the previous entry's hash (the
first entry of a full export has 32 zero bytes); hash = SHA-256(prev_hash || canonical); the
canonical JSON names the same seq and firm; every checkpoint's head hash equals the hash of the
entry at its seq, and its signature verifies with the public key; no checkpoint signs a seq
beyond the last entry (a cut-off tail).

Exit 0 with a one-line summary when intact; exit 1 naming the first bad line otherwise; exit 2
when the files cannot be read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from typing import Any

GENESIS = bytes(32)


class Broken(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")


def _checkpoint_payload(cp: dict[str, Any]) -> bytes:
    body = {
        "firm_id": cp["firm_id"],
        "seq": cp["seq"],
        "head_hash": cp["head_hash"],
        "signed_at": cp["signed_at"],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load_public_key(path: str) -> Any:
    # Imported here: everything but the signature check runs on the standard library alone.
    from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

    with open(path, "rb") as handle:
        return load_pem_public_key(handle.read())


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


def _decode(raw: list[bytes]) -> list[str]:
    lines = []
    for number, line in enumerate(raw, start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise Broken(number, "not UTF-8 text") from error
    return lines


def verify(raw: list[bytes], public_key: Any) -> str:
    lines = _decode(raw)
    try:
        header = json.loads(lines[0])
        known = header["format"] == "coverproof-audit-export" and header["version"] == 1
        firm_id = str(header["firm_id"])
    except (ValueError, KeyError, TypeError) as error:
        raise Broken(1, "malformed header") from error
    if not known:
        raise Broken(1, "not a CoverProof audit export (version 1)")
    hashes: dict[int, bytes] = {}
    previous: Any = None
    checkpoints = 0
    for number, text in enumerate(lines[1:], start=2):
        try:
            item = json.loads(text)
            if item["type"] == "entry":
                stored = _check_entry(number, item, firm_id, previous)
                hashes[item["seq"]] = stored
                previous = (item["seq"], stored)
            elif item["type"] == "checkpoint":
                seq = item["seq"]
                if item["firm_id"] != firm_id:
                    raise Broken(number, "checkpoint of another firm")
                if seq not in hashes:
                    raise Broken(number, f"checkpoint signs seq {seq}, beyond the export (cut off)")
                if bytes.fromhex(item["head_hash"]) != hashes[seq]:
                    raise Broken(number, f"checkpoint at seq {seq} signed another hash (rewritten)")
                signature = base64.b64decode(item["signature"])
                try:
                    public_key.verify(signature, _checkpoint_payload(item))
                except Exception as error:  # cryptography raises InvalidSignature
                    raise Broken(number, f"checkpoint at seq {seq}: signature invalid") from error
                checkpoints += 1
            else:
                raise Broken(number, f"unknown line type {item['type']!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Broken(number, f"malformed line ({type(error).__name__})") from error
    if previous is None:
        return f"OK: firm {firm_id}: no entries"
    first = min(hashes)
    return (
        f"OK: firm {firm_id}: entries {first}..{previous[0]} ({len(hashes)}) intact, "
        f"{checkpoints} signed checkpoint(s) verified, head {previous[1].hex()}"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as handle:
            lines = [line for line in handle.read().split(b"\n") if line]
        public_key = _load_public_key(argv[2])
    except (OSError, ValueError) as error:
        print(f"cannot read input: {error}", file=sys.stderr)
        return 2
    if not lines:
        print("BROKEN: line 1: empty export")
        return 1
    try:
        print(verify(lines, public_key))
    except Broken as broken:
        print(f"BROKEN: {broken}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
