#!/usr/bin/env python3
"""Verify a CoverProof audit export offline, without trusting CoverProof.

Usage: python3 tools/verify_audit.py EXPORT.jsonl PUBLIC_KEYS.pem [MORE_PUBLIC_KEYS.pem ...]
           [--against EARLIER_EXPORT.jsonl ... [--kept-keys KEPT_KEYS.pem ...]]

Needs only the Python standard library, plus the `cryptography` package for the Ed25519
signature checks (pip install cryptography). docs/audit.md describes every byte, so you can
also write your own verifier. Give every platform public key you trust (after a key rotation,
the old one too; /.well-known/coverproof-audit-keys.pem serves them all in one file): each
signature is checked with the key its key_id names.

Checks: the last line signs the SHA-256 of every byte before it with one of the keys (so no
byte of the file can change unnoticed); every line has exactly its format's fields, each of the
type and form docs/audit.md gives it (a seq is an integer, never true or "1"); seq has no gaps;
each entry's prev_hash is the previous entry's hash (the first entry of a full export follows
32 zero bytes); hash = SHA-256(prev_hash || canonical); the canonical JSON names the same seq
and firm; every checkpoint's head hash equals the hash of the entry at its seq, and its
signature verifies; no checkpoint signs a seq beyond the last entry (a cut-off tail); and
(version 2) a full export ends at the chain's head when it was exported, and a dated export's
first and last entries fall within its dates. With --against, the export also agrees with each
earlier export of the firm you kept (newest first): the same hash at every seq both vouch for
(their entries, and the head a version 2 header signs), and a chain reaching at least as far as
it did then (a chain rewritten or cut since, even by someone able to have the platform sign the
result, shows). The earlier exports are checked with the keys given and, if a key was revoked
since they were made (it leaked), with that key given after --kept-keys: trusted for the
exports you kept from before, never for the export being checked.

Exit 0 with a one-line summary when intact: it says whether the export is full or dated (and
its dates), when it was exported, which entries of how many it holds, and the signing key.
Exit 1 naming the first bad line otherwise; exit 2 when the files cannot be read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

GENESIS = bytes(32)
Form = Callable[[Any], bool]  # whether a field's value has the form the format gives it


def _text(value: Any) -> bool:
    """A string that encodes as UTF-8 (a JSON escape such as \\ud800 makes one that does not)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _matching(pattern: str) -> Form:
    whole = re.compile(pattern)
    return lambda value: isinstance(value, str) and whole.fullmatch(value) is not None


def _integer(least: int) -> Form:
    # By exact type: a bool is an int in Python (true == 1), and 1.0 == 1.
    return lambda value: type(value) is int and value >= least


def _optional(form: Form) -> Form:
    return lambda value: value is None or form(value)


# [0-9], not \d: in a str pattern, \d matches any Unicode digit, such as a full-width one.
_TIME = _matching(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_HASH, _KEY_ID = _matching(r"[0-9a-f]{64}"), _matching(r"[0-9a-f]{16}")
_UUID = _matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SEQ, _COUNT = _integer(1), _integer(0)
# Every field of each line type, with the form its value must have (docs/audit.md). A line's
# fields are checked as it is read (_parse), so every later check compares values of the types
# the format gives them: none raises, and none takes true for seq 1.
FIELDS: dict[str, dict[str, Form]] = {
    "header": {
        "type": _text,
        "format": _text,
        "version": _COUNT,
        "firm_id": _UUID,
        "exported_at": _TIME,
        "key_id": _KEY_ID,
        "scope": _text,
        "from": _optional(_TIME),
        "to": _optional(_TIME),
        "head_seq": _COUNT,
        "head_hash": _optional(_HASH),
    },
    "entry": {"type": _text, "seq": _SEQ, "prev_hash": _HASH, "hash": _HASH, "canonical": _text},
    "checkpoint": {
        "type": _text,
        "id": _UUID,
        "firm_id": _UUID,
        "seq": _SEQ,
        "head_hash": _HASH,
        "signed_at": _TIME,
        "key_id": _KEY_ID,
        "signature": _text,
    },
    "signature": {"type": _text, "sha256": _HASH, "key_id": _KEY_ID, "signature": _text},
}
HEADER_V1 = frozenset({"type", "format", "version", "firm_id", "exported_at", "key_id", "scope"})
HEADERS = {1: HEADER_V1, 2: frozenset(FIELDS["header"])}


class Broken(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")


class Disagrees(Exception):
    """An intact export that contradicts an earlier one."""


class Unchecked(Disagrees):
    """Two intact exports with nothing in common to compare."""


def _load_public_keys(path: str) -> list[tuple[Any, str]]:
    """Each public key in a PEM file (one, or several, as coverproof-audit-keys.pem serves
    them), with its key id."""
    # Imported here: everything but the signature checks runs on the standard library alone.
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    with open(path, "rb") as handle:
        text = handle.read()
    blocks = re.findall(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", text, re.DOTALL)
    if not blocks:
        raise ValueError(f"no PEM public key in {path}")
    keys = []
    for block in blocks:
        try:
            key = load_pem_public_key(block)
        except UnsupportedAlgorithm as error:  # not a ValueError, which main reports as unread
            raise ValueError(f"a key in {path} of a type not known: {error}") from error
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        keys.append((key, hashlib.sha256(raw).hexdigest()[:16]))
    return keys


def _signed(public_key: Any, signature: str, payload: bytes) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), payload)
    except Exception:
        return False
    return True


def _json(number: int, raw: bytes, refused: str) -> Any:
    """The JSON value of ``raw`` (line ``number``, or an entry's canonical bytes on it), or
    Broken with the reason ``refused``. Python's parser gives up on nesting deeper than its
    recursion limit (anyone can write "[" 100,000 times): it is refused as not JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise Broken(number, refused) from error
    except RecursionError as error:
        raise Broken(number, f"{refused} (nested too deeply)") from error


def _parse(number: int, raw: bytes) -> dict[str, Any]:
    """Line ``number``: a JSON object with exactly the fields of its type (a header, those of
    version 1 or 2), each of the form FIELDS gives it."""
    item = _json(number, raw, "not a JSON line")
    kind = item.get("type") if isinstance(item, dict) else None
    forms = FIELDS.get(kind) if isinstance(kind, str) else None
    if forms is None or set(item) not in (HEADERS.values() if kind == "header" else [set(forms)]):
        raise Broken(number, "unexpected fields for its line type")
    for name, value in item.items():
        if not forms[name](value):
            raise Broken(number, f"malformed {name} in the {kind} line")
    return dict(item)


def _checkpoint_payload(cp: dict[str, Any]) -> bytes:
    body = {k: cp[k] for k in ("firm_id", "seq", "head_hash", "signed_at")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check_entry(
    number: int, entry: dict[str, Any], firm_id: str, previous: Any
) -> tuple[bytes, str]:
    """The entry's hash and the time its canonical bytes name, once it checks out."""
    canonical = entry["canonical"].encode("utf-8")
    prev_hash, stored = bytes.fromhex(entry["prev_hash"]), bytes.fromhex(entry["hash"])
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
    body = _json(number, canonical, f"seq {entry['seq']}: canonical bytes not JSON")
    named = (body.get("seq"), body.get("firm_id")) if isinstance(body, dict) else (None, None)
    if not _SEQ(named[0]) or named != (entry["seq"], firm_id):  # true == 1 in Python
        raise Broken(number, f"seq {entry['seq']}: canonical bytes name another seq or firm")
    if not _TIME(body.get("occurred_at")):
        raise Broken(number, f"seq {entry['seq']}: canonical bytes name a malformed time")
    return stored, body["occurred_at"]


def _check_checkpoint(
    number: int, cp: dict[str, Any], firm_id: str, keys: dict[str, Any], hashes: dict[int, bytes]
) -> None:
    seq = cp["seq"]
    if cp["firm_id"] != firm_id or cp["key_id"] not in keys:
        raise Broken(number, "checkpoint of another firm or key")
    if seq not in hashes:
        raise Broken(number, f"checkpoint signs seq {seq}, beyond the export (cut off)")
    if bytes.fromhex(cp["head_hash"]) != hashes[seq]:
        raise Broken(number, f"checkpoint at seq {seq} signed another hash (rewritten)")
    if not _signed(keys[cp["key_id"]], cp["signature"], _checkpoint_payload(cp)):
        raise Broken(number, f"checkpoint at seq {seq}: signature invalid")


def _check_header(header: dict[str, Any], key_id: str) -> None:
    """Line 1, read by _parse (so each field present has its form)."""
    known = header["type"] == "header" and header["format"] == "coverproof-audit-export"
    known = known and set(header) == HEADERS.get(header["version"], frozenset())
    if not known or header["scope"] not in ("full", "dated") or header["key_id"] != key_id:
        raise Broken(1, "not a CoverProof audit export (version 1 or 2) for this key")
    if header["version"] == 1:
        return
    if (header["scope"] == "full") != (header["from"] is None and header["to"] is None):
        raise Broken(1, "the dates do not match the scope")
    if (header["head_hash"] is None) != (header["head_seq"] == 0):
        raise Broken(1, "a malformed chain head")


def _check_extent(
    header: dict[str, Any], number: int, entries: dict[int, bytes], moments: tuple[str, str]
) -> None:
    """A version 2 export's entries against its header: a full export ends at the head it
    names; a dated one holds none beyond it, and its first and last fall within its dates
    (the entries between them are every entry between them by seq, whatever their time)."""
    head_seq, head_hash = header["head_seq"], header["head_hash"]
    last = max(entries, default=0)
    if header["scope"] == "full" and last != head_seq:
        raise Broken(number, f"a full export ends at seq {last}, not at the head {head_seq}")
    if last > head_seq or (last == head_seq and last and entries[last].hex() != head_hash):
        raise Broken(number, f"seq {last} is not the chain's head when exported")
    (start, end), (first_at, last_at) = (header["from"], header["to"]), moments
    if entries and (
        (start is not None and first_at < start) or (end is not None and last_at >= end)
    ):
        raise Broken(number, "the first or last entry falls outside the export's dates")


def _summary(header: dict[str, Any], entries: dict[int, bytes], checkpoints: int) -> str:
    if header["scope"] == "full" and header["version"] == 2:
        what = "full export"
    elif header["version"] == 1:  # which does not sign where the chain ended
        what = f"{header['scope']} export (version 1: its end unsigned)"
    else:
        what = f"dated export from {header['from'] or 'the start'} to {header['to'] or 'now'}"
    told = f"firm {header['firm_id']}: {what}, exported {header['exported_at']}"
    of = "" if header["version"] == 1 else f" of {header['head_seq']}"
    signed = f"signed by key {header['key_id']}"
    if not entries:
        return f"OK: {told}: no entries{of}, {signed}"
    last = max(entries)
    return (
        f"OK: {told}: entries {min(entries)}..{last} ({len(entries)}){of} intact, "
        f"{checkpoints} signed checkpoint(s) verified, head {entries[last].hex()}, {signed}"
    )


class Checked(NamedTuple):
    header: dict[str, Any]
    hashes: dict[int, bytes]  # each entry's hash, by seq
    checkpoints: int


def verify(data: bytes, keys: dict[str, Any]) -> str:
    """The summary of an intact export; raises Broken naming the first bad line. ``keys``: the
    trusted public keys by key id."""
    return _summary(*check(data, keys))


def check(data: bytes, keys: dict[str, Any]) -> Checked:
    """What an intact export holds; raises Broken naming the first bad line."""
    lines = data.split(b"\n")
    while lines and lines[-1] == b"":  # newlines after the trailer change nothing it signs
        lines.pop()
    if len(lines) < 2:
        raise Broken(1, "not a complete export")
    trailer = _parse(len(lines), lines[-1])
    body_bytes = b"".join(line + b"\n" for line in lines[:-1])
    digest = hashlib.sha256(body_bytes).digest()
    if trailer["type"] != "signature" or trailer["key_id"] not in keys:
        raise Broken(len(lines), "the export is not signed by a key given")
    signed = _signed(keys[trailer["key_id"]], trailer["signature"], digest)
    if trailer["sha256"] != digest.hex() or not signed:
        raise Broken(len(lines), "the signature does not cover these bytes (file changed)")
    header = _parse(1, lines[0])
    _check_header(header, trailer["key_id"])
    firm_id = header["firm_id"]
    hashes: dict[int, bytes] = {}
    first = last = ""  # the first and last entries' times
    previous: Any = None
    checkpoints = 0
    for number, raw in enumerate(lines[1:-1], start=2):
        item = _parse(number, raw)
        if item["type"] == "entry":
            stored, last = _check_entry(number, item, firm_id, previous)
            first = first or last
            hashes[item["seq"]] = stored
            previous = (item["seq"], stored)
        elif item["type"] == "checkpoint":
            _check_checkpoint(number, item, firm_id, keys, hashes)
            checkpoints += 1
        else:
            raise Broken(number, f"a {item['type']} line in the middle of the export")
    if header["scope"] == "full" and hashes and min(hashes) != 1:
        raise Broken(2, f"a full export starts at seq {min(hashes)}, not 1 (entries removed)")
    if header["version"] == 2:
        _check_extent(header, len(lines), hashes, (first, last))
    return Checked(header, hashes, checkpoints)


def _points(checked: Checked) -> dict[int, bytes]:
    """Every seq an export vouches for, with its hash: its entries' and, in version 2, the head
    its header signs."""
    points, header = dict(checked.hashes), checked.header
    if header["version"] == 2 and header["head_seq"]:
        points[header["head_seq"]] = bytes.fromhex(header["head_hash"])
    return points


def _reach(checked: Checked) -> int | None:
    """How far the chain reached when the export was taken, as far as the export says: the
    head a version 2 header signs, a version 1 full export's last entry; a version 1 dated
    export does not say."""
    if checked.header["version"] == 2:
        return int(checked.header["head_seq"])
    return max(checked.hashes, default=0) if checked.header["scope"] == "full" else None


def agrees(later: Checked, earlier: Checked, name: str) -> int:
    """How many seqs two exports of a firm both vouch for (each the same); raises Disagrees
    where the later one tells another story: the same seq with another hash (rewritten), or a
    chain that no longer reaches as far as it did (cut off). Someone who can rewrite the
    database and have the platform sign the result passes every check of one export; not
    this one."""
    if later.header["firm_id"] != earlier.header["firm_id"]:
        raise Disagrees(f"{name} is an export of another firm")
    if earlier.header["exported_at"] > later.header["exported_at"]:
        raise Disagrees(f"{name} was exported after this export: give the newest one first")
    ours, theirs = _points(later), _points(earlier)
    shared = sorted(ours.keys() & theirs.keys())
    for seq in shared:
        if ours[seq] != theirs[seq]:
            raise Disagrees(f"seq {seq} differs from {name} (the chain was rewritten)")
    held, reach = max(theirs, default=0), _reach(later)
    if reach is not None and held > reach:
        raise Disagrees(
            f"{name} holds seq {held}, beyond the chain's end when this export was taken (cut off)"
        )
    if not shared:
        raise Unchecked(f"{name} and this export vouch for no seq in common: nothing compared")
    return len(shared)


def _arguments(args: list[str]) -> dict[str, list[str]] | None:
    """The positional arguments (under "") and each option's; None for a usage error."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for arg in args:
        if arg in ("--against", "--kept-keys"):
            if arg in found:
                return None
            current = arg
            found[current] = []
        else:
            found[current].append(arg)
    if len(found[""]) < 2 or any(not values for values in found.values()):
        return None
    if "--kept-keys" in found and "--against" not in found:
        return None
    return found


def main(argv: list[str]) -> int:
    found = _arguments(argv[1:])
    if found is None:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    paths, earlier = found[""], found.get("--against", [])
    try:
        exports = []
        for path in [paths[0], *earlier]:
            with open(path, "rb") as handle:
                exports.append(handle.read())
        keys = {key_id: key for path in paths[1:] for key, key_id in _load_public_keys(path)}
        kept_keys = {
            key_id: key
            for path in found.get("--kept-keys", [])
            for key, key_id in _load_public_keys(path)
        }
    except (OSError, ValueError, TypeError) as error:
        print(f"cannot read input: {error}", file=sys.stderr)
        return 2
    compared = 0
    try:
        checked = check(exports[0], keys)
        for name, data in zip(earlier, exports[1:], strict=True):
            try:
                kept = check(data, {**keys, **kept_keys})
            except Broken as broken:
                raise Disagrees(f"{name} does not verify: {broken}") from broken
            compared += agrees(checked, kept, name)
    except Unchecked as unchecked:
        print(f"NOT CHECKED: {unchecked}")
        return 1
    except (Broken, Disagrees) as problem:
        print(f"BROKEN: {problem}")
        return 1
    also = f", agrees with {len(earlier)} earlier export(s) at {compared} seq(s)" if earlier else ""
    print(_summary(*checked) + also)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
