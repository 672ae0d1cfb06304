"""The offline verifier (``tools/verify_audit.py``) on malformed input: whatever a file holds,
it reports ``BROKEN: line L: ...`` and exits 1 (never a traceback), and a value of the wrong
type never passes for the right one. The exports here are built by hand, as anyone could, and
signed with a key the verifier is given, so that the check under test, not the signature, is
what refuses them."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import canonical
from app.audit.signing import SigningKey
from tests.audit.test_offline_verifier import _signed_bytes
from tests.audit.test_tamper import run_verifier
from tools import verify_audit

Item = dict[str, Any]
AT = ["2026-11-29T02:00:25.123456Z", "2026-11-29T02:00:26.000000Z"]
DEEP = "[" * 100_000


def _line(item: Item) -> bytes:
    return (json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _entry(firm: str, seq: int, prev: bytes, body: Item | None = None) -> Item:
    text = canonical.encode(
        body
        or {
            "v": 1,
            "firm_id": firm,
            "seq": seq,
            "occurred_at": AT[seq - 1],
            "actor": {"type": "system", "id": None},
            "action": "firm.updated",
            "target": {"type": None, "id": None},
            "details": {},
            "ip": None,
        }
    )
    digest = hashlib.sha256(prev + text).hexdigest()
    return {
        "type": "entry",
        "seq": seq,
        "prev_hash": prev.hex(),
        "hash": digest,
        "canonical": text.decode(),
    }


def _checkpoint(key: SigningKey, cp: Item) -> Item:
    """A checkpoint signed over its fields as they stand, as the platform would sign it."""
    body = {name: cp[name] for name in ("firm_id", "seq", "head_hash", "signed_at")}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = key.sign(payload.encode("utf-8", "surrogatepass"))
    return {**cp, "signature": base64.b64encode(signature).decode()}


def _export(key: SigningKey) -> list[Item]:
    """A full version 2 export of two entries and a checkpoint of the second (no trailer)."""
    firm = str(uuid.uuid4())
    first = _entry(firm, 1, bytes(32))
    second = _entry(firm, 2, bytes.fromhex(first["hash"]))
    header = {
        "type": "header",
        "format": "coverproof-audit-export",
        "version": 2,
        "firm_id": firm,
        "exported_at": "2026-11-29T03:00:00.000000Z",
        "key_id": key.key_id,
        "scope": "full",
        "from": None,
        "to": None,
        "head_seq": 2,
        "head_hash": second["hash"],
    }
    cp = {"type": "checkpoint", "id": str(uuid.uuid4()), "firm_id": firm, "seq": 2}
    cp |= {"head_hash": second["hash"], "signed_at": AT[1], "key_id": key.key_id}
    return [header, first, second, _checkpoint(key, cp)]


def _file(items: list[Item], key: SigningKey) -> bytes:
    return _signed_bytes(b"".join(map(_line, items)), key)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def _verify(tmp_path: Path, key: SigningKey, data: bytes, *against: bytes) -> tuple[int, str]:
    """Run the verifier's main() on the export (and earlier ones) as files: its exit code and
    what it printed. Any exception it lets out fails the test."""
    pem, path = tmp_path / "key.pem", tmp_path / "export.jsonl"
    pem.write_text(key.public_pem())
    path.write_bytes(data)
    kept = []
    for n, earlier in enumerate(against):
        kept.append(tmp_path / f"earlier-{n}.jsonl")
        kept[-1].write_bytes(earlier)
    options = ["--against", *map(str, kept)] if kept else []
    argv = ["verify_audit.py", str(path), str(pem), *options]
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        saved, sys.stdout = sys.stdout, stream
        try:
            code = verify_audit.main(argv)
        finally:
            sys.stdout = saved
    return code, out.read_text()


async def test_a_deeply_nested_line_is_refused_before_any_signature_is_checked(
    key: SigningKey, tmp_path: Path
) -> None:
    """Python's JSON parser raises RecursionError on deep nesting; nothing in an unsigned
    file reaches the signature check, so anyone can hand an auditor such a file."""
    unsigned = b"".join(map(_line, _export(key))) + DEEP.encode() + b"\n"
    pem, path = tmp_path / "key.pem", tmp_path / "nested.jsonl"
    pem.write_text(key.public_pem())
    path.write_bytes(unsigned)
    code, out = await run_verifier(path, pem)  # as a user would: stdout and stderr
    assert (code, out) == (1, "BROKEN: line 5: not a JSON line (nested too deeply)\n")


def test_deep_nesting_anywhere_in_an_export_is_refused_naming_its_line(
    key: SigningKey, tmp_path: Path
) -> None:
    items = _export(key)
    intact = _file(items, key)
    assert _verify(tmp_path, key, intact)[0] == 0
    middle = b"".join(map(_line, items[:2])) + DEEP.encode() + b"\n"
    code, out = _verify(tmp_path, key, _signed_bytes(middle, key))
    assert (code, out) == (1, "BROKEN: line 3: not a JSON line (nested too deeply)\n")

    # As an entry's canonical bytes, hashed as the chain would hash them.
    nested = dict(items[1], canonical=DEEP)
    nested["hash"] = hashlib.sha256(bytes(32) + DEEP.encode()).hexdigest()
    code, out = _verify(tmp_path, key, _file([items[0], nested, *items[2:]], key))
    assert (code, out) == (
        1,
        "BROKEN: line 2: seq 1: canonical bytes not JSON (nested too deeply)\n",
    )

    # In an earlier export kept, given with --against.
    unsigned = b"".join(map(_line, items)) + DEEP.encode() + b"\n"
    code, out = _verify(tmp_path, key, intact, unsigned)
    assert code == 1, out
    assert out.startswith("BROKEN: ")
    assert out.endswith(" does not verify: line 5: not a JSON line (nested too deeply)\n")


def test_a_dated_export_whose_seq_is_a_string_is_broken(key: SigningKey, tmp_path: Path) -> None:
    """Its seq reached the dated export's checks against the head unchecked: "5" > 5 raised an
    uncaught TypeError there."""
    header, first, *_ = _export(key)
    body = json.loads(first["canonical"]) | {"seq": "5"}
    entry = _entry(header["firm_id"], 1, bytes(32), body) | {"seq": "5"}
    dated = header | {"scope": "dated", "to": "2026-11-30T00:00:00.000000Z", "head_seq": 5}
    code, out = _verify(tmp_path, key, _file([dated, entry], key))
    assert (code, out) == (1, "BROKEN: line 2: malformed seq in the entry line\n")


def test_true_does_not_pass_for_the_integer_1(key: SigningKey, tmp_path: Path) -> None:
    """In Python true == 1 (and 1.0 == 1): an export saying seq true, or version true, read as
    seq 1 or version 1 and verified."""
    header, first, second, cp = _export(key)
    for seq in (True, 1.0):
        code, out = _verify(tmp_path, key, _file([header, first | {"seq": seq}, second, cp], key))
        assert (code, out) == (1, "BROKEN: line 2: malformed seq in the entry line\n")
        # The canonical bytes saying so too, hashed as the chain would hash them.
        body = json.loads(first["canonical"]) | {"seq": seq}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        entry = first | {"canonical": text}
        entry["hash"] = hashlib.sha256(bytes(32) + text.encode()).hexdigest()
        dated = header | {"scope": "dated", "to": AT[1], "head_seq": 1, "head_hash": entry["hash"]}
        code, out = _verify(tmp_path, key, _file([dated, entry], key))
        assert (code, out) == (
            1,
            "BROKEN: line 2: seq 1: canonical bytes name another seq or firm\n",
        )

    dropped = ("from", "to", "head_seq", "head_hash")  # version 2's
    version_1 = {name: v for name, v in header.items() if name not in dropped} | {"version": 1}
    assert _verify(tmp_path, key, _file([version_1, first, second, cp], key))[0] == 0
    for version in (True, 1.0):
        changed = version_1 | {"version": version}
        code, out = _verify(tmp_path, key, _file([changed, first, second, cp], key))
        assert (code, out) == (1, "BROKEN: line 1: malformed version in the header line\n")


WRONG: list[Any] = [
    True,
    False,
    None,
    0,
    -1,
    1.0,
    2.5,
    "1",
    "",
    "x" * 64,
    "AB" * 32,
    "\ud800",
    [],
    {},
    [[[["nested"]]]],
    {"seq": 1},
    "2026-11-29T02:00:25.123456Z\n",
    "\uff12\uff10\uff12\uff16-11-29T02:00:25.123456Z",  # digits, but not ASCII ones
]


def test_no_field_of_any_line_takes_a_value_of_another_form(
    key: SigningKey, tmp_path: Path
) -> None:
    """Every field of every line, given each value of another type or form: always 'BROKEN'
    naming that line, never a traceback, never 'OK'. Checkpoints are signed again over what
    they say, as the platform would sign them, so their signature is not what refuses them."""
    items = _export(key)
    intact = _file(items, key)
    assert _verify(tmp_path, key, intact)[0] == 0
    tried = 0
    for number, item in enumerate([*items, json.loads(intact.splitlines()[-1])], start=1):
        for name in item:
            for value in WRONG:
                if type(value) is type(item[name]) and value == item[name]:
                    continue
                changed = copy.deepcopy(items)
                if number == len(items) + 1:  # the trailer
                    *body, trailer = _file(changed, key).splitlines(keepends=True)
                    data = b"".join([*body, _line(json.loads(trailer) | {name: value})])
                else:
                    changed[number - 1][name] = value
                    if item["type"] == "checkpoint" and name != "signature":
                        changed[number - 1] = _checkpoint(key, changed[number - 1])
                    data = _file(changed, key)
                code, out = _verify(tmp_path, key, data)
                assert code == 1, (number, name, value, out)
                assert out.startswith(f"BROKEN: line {number}: "), (name, value, out)
                tried += 1
    assert tried > 400


async def test_a_key_of_a_type_not_known_is_input_that_cannot_be_read(
    key: SigningKey, tmp_path: Path
) -> None:
    """cryptography raises UnsupportedAlgorithm, not a ValueError, for a key whose algorithm
    it does not know: it escaped as a traceback (exit 1, as if the export were broken)."""
    unknown = bytes.fromhex("300b300506032a030403020001")  # algorithm 1.2.3.4, no key
    pem = tmp_path / "unknown.pem"
    body = base64.b64encode(unknown).decode()
    pem.write_text(f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    path = tmp_path / "export.jsonl"
    path.write_bytes(_file(_export(key), key))
    code, out = await run_verifier(path, pem)
    assert (code, out) == (
        2,
        f"cannot read input: a key in {pem} of a type not known: Unknown key type: 1.2.3.4\n",
    )


def test_the_canonical_bytes_name_the_seq_firm_and_time_in_their_forms(
    key: SigningKey, tmp_path: Path
) -> None:
    """An entry's canonical bytes, hashed as the chain would hash them, in a full export of
    that one entry: the seq, firm and time they name are read in their forms too (a time that
    is no timestamp passed before, and was compared as text with a dated export's dates)."""
    header, first, *_ = _export(key)
    body = json.loads(first["canonical"])
    cases: list[tuple[str, str]] = [
        ("[]", "canonical bytes name another seq or firm"),
        ("x", "canonical bytes not JSON"),
        (json.dumps(body | {"seq": "1"}), "canonical bytes name another seq or firm"),
        (json.dumps(body | {"firm_id": None}), "canonical bytes name another seq or firm"),
        (json.dumps(body | {"occurred_at": 5}), "canonical bytes name a malformed time"),
        (json.dumps(body | {"occurred_at": "now"}), "canonical bytes name a malformed time"),
        (json.dumps({k: v for k, v in body.items() if k != "occurred_at"}), "a malformed time"),
    ]
    for text, reason in cases:
        entry = first | {"canonical": text}
        entry["hash"] = hashlib.sha256(bytes(32) + text.encode()).hexdigest()
        full = header | {"head_seq": 1, "head_hash": entry["hash"]}
        code, out = _verify(tmp_path, key, _file([full, entry], key))
        assert code == 1, (text, out)
        assert out.startswith("BROKEN: line 2: seq 1: "), (text, out)
        assert out.endswith(f"{reason}\n"), (text, out)
