"""A witness of what each chain was told to hold, kept outside the database.

A chain shows an entry changed, and entries cut off before its last signed checkpoint; it
cannot show its newest entries cut off since, or rewritten from there with hashes made anew:
whoever may delete the rows the triggers keep (the database's administrator) could do either
unseen. So every commit that appended to a chain tells the witness what it wrote there (its
first entry's seq and prev_hash, its newest's seq and hash). The witness keeps the runs of
entries it was told of, joined as they follow on from each other, and verification holds the
chain to them: a chain that ends before the newest, or holds another hash at a run's end or
before its first, is broken; and so is one a commit showed no longer holds what was told (a
telling that overlaps a run, or follows one from another hash), for the witness marks that and
keeps the mark. A gap between runs (a telling lost, or on its way) keeps both sides checked,
so entries forged across it, to bridge a cut or a rewrite, cannot pass. The witness is kept
where the rate limits are: in Redis, out of the database administrator's reach, shared by
every process; with ``memory://`` (development) in the process only. Losing it loses only this
check. A database restored from a backup has lost what the witness saw since: ``coverproof
audit forget-witness`` (once the loss is known) lets verification start again from the chain
as it is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import NamedTuple

import coredis
from coredis.retry import NoRetryPolicy

from app.ratelimit.limiter import REDIS_TIMEOUT_SECONDS

log = logging.getLogger("coverproof.audit")

# Where a session finds the app's witness (``app.db.engine.session_factory``'s info).
INFO = "coverproof.witness"
_PLATFORM = "platform"


class Told(NamedTuple):
    """Entries a commit appended to a chain, or a run of them told one after another: the
    first's seq and prev_hash, the newest's seq and hash."""

    first_seq: int
    first_prev: bytes
    seq: int
    hash: bytes


class Kept(NamedTuple):
    """What the witness keeps of a chain: its runs of told entries, in order, each as ``Told``
    (apart where a commit's telling was lost or is on its way); and ``diverged``, the seq of an
    entry it was told of when a commit showed the chain no longer held it, kept until
    forgotten."""

    runs: tuple[Told, ...]
    diverged: int | None = None

    def required(self) -> dict[int, bytes]:
        """The hash the chain must hold at each seq the runs name: each run's newest entry's,
        and the entry's before its first (its first's prev_hash)."""
        held = {run.first_seq - 1: run.first_prev for run in self.runs if run.first_seq > 1}
        return held | {run.seq: run.hash for run in self.runs}


# Runs kept per chain at most: beyond, the two oldest are taken as one (their ends kept, the
# gap between them, a telling lost long ago, no longer checked).
MOST_RUNS = 256

# A commit's telling, against the runs kept, atomically (commits of one chain may tell in any
# order; a telling is never repeated: the client does not retry). Once marked, nothing changes
# until forgotten. A telling that overlaps a run, or follows one (or is followed by one) from
# another hash than the run's (its own), was made on a chain that no longer holds what was told:
# marked, and the runs stay as they were. Otherwise it joins the runs it follows and precedes.
_TELL = """
local chain, mark = ARGV[1], ARGV[1] .. ':diverged'
if redis.call('HEXISTS', KEYS[1], mark) == 1 then return 0 end
local first, prev = tonumber(ARGV[2]), ARGV[3]
local seq, hash = tonumber(ARGV[4]), ARGV[5]
local runs, left, right = {}, nil, nil
local kept = redis.call('HGET', KEYS[1], chain) or ''
for f, p, s, h in string.gmatch(kept, '(%d+):(%x+):(%d+):(%x+)') do
    local run = {tonumber(f), p, tonumber(s), h}
    if first <= run[3] and seq >= run[1] then
        redis.call('HSET', KEYS[1], mark, tostring(run[3]))
        return 0
    end
    if run[3] == first - 1 then
        if run[4] ~= prev then
            redis.call('HSET', KEYS[1], mark, tostring(run[3]))
            return 0
        end
        left = run
    elseif run[1] == seq + 1 then
        if run[2] ~= hash then
            redis.call('HSET', KEYS[1], mark, tostring(seq))
            return 0
        end
        right = run
    else
        table.insert(runs, run)
    end
end
local joined = {first, prev, seq, hash}
if left then joined[1], joined[2] = left[1], left[2] end
if right then joined[3], joined[4] = right[3], right[4] end
table.insert(runs, joined)
table.sort(runs, function(a, b) return a[1] < b[1] end)
if #runs > tonumber(ARGV[6]) then
    runs[2] = {runs[1][1], runs[1][2], runs[2][3], runs[2][4]}
    table.remove(runs, 1)
end
local out = {}
for _, run in ipairs(runs) do
    table.insert(out, string.format('%d:%s:%d:%s', run[1], run[2], run[3], run[4]))
end
redis.call('HSET', KEYS[1], chain, table.concat(out, ','))
return 1
"""


def chain_of(firm_id: uuid.UUID | None) -> str:
    """The name the witness knows a chain by: its firm's id, or the platform's."""
    return _PLATFORM if firm_id is None else str(firm_id)


def told_to(kept: Kept, told: Told) -> Kept:
    """``_TELL``, for the witness kept in the process."""
    if kept.diverged is not None:
        return kept
    runs: list[Told] = []
    left = right = None
    for run in kept.runs:
        if told.first_seq <= run.seq and told.seq >= run.first_seq:
            return kept._replace(diverged=run.seq)
        if run.seq == told.first_seq - 1:
            if run.hash != told.first_prev:
                return kept._replace(diverged=run.seq)
            left = run
        elif run.first_seq == told.seq + 1:
            if run.first_prev != told.hash:
                return kept._replace(diverged=told.seq)
            right = run
        else:
            runs.append(run)
    joined = told
    if left is not None:
        joined = joined._replace(first_seq=left.first_seq, first_prev=left.first_prev)
    if right is not None:
        joined = joined._replace(seq=right.seq, hash=right.hash)
    runs = sorted([*runs, joined])
    if len(runs) > MOST_RUNS:
        runs[:2] = [runs[0]._replace(seq=runs[1].seq, hash=runs[1].hash)]
    return Kept(tuple(runs))


class Witness:
    """Kept in the process (``memory://``)."""

    def __init__(self) -> None:
        self._kept: dict[str, Kept] = {}

    async def saw(self, told: Mapping[str, Told]) -> None:
        """Take what a commit appended to each chain (by chain name), as ``_TELL`` does."""
        for chain, what in told.items():
            self._kept[chain] = told_to(self._kept.get(chain, Kept(())), what)

    async def newest(self, chain: str) -> Kept | None:
        """What it keeps of the chain, if it was told of it."""
        return self._kept.get(chain)

    async def chains(self) -> list[str]:
        """The name of every chain it was told of."""
        return list(self._kept)

    async def forget(self, chain: str) -> None:
        self._kept.pop(chain, None)

    async def close(self) -> None:
        return None


class RedisWitness(Witness):
    """Kept in Redis, in one hash: chain name to its runs ("first:prev:seq:hash", hex, comma
    separated), and "<chain>:diverged"."""

    def __init__(self, client: coredis.Redis[bytes], key: str) -> None:
        super().__init__()
        self._client, self._key = client, key

    async def saw(self, told: Mapping[str, Told]) -> None:
        for chain, (first, prev, seq, digest) in told.items():
            args = (chain, str(first), prev.hex(), str(seq), digest.hex(), str(MOST_RUNS))
            await self._client.eval(_TELL, [self._key], args)

    async def newest(self, chain: str) -> Kept | None:
        runs, diverged = await self._client.hmget(self._key, [chain, f"{chain}:diverged"])
        if runs is None:
            return None
        kept = []
        for run in runs.decode().split(","):
            first, prev, seq, digest = run.split(":")
            kept.append(Told(int(first), bytes.fromhex(prev), int(seq), bytes.fromhex(digest)))
        return Kept(tuple(kept), None if diverged is None else int(diverged))

    async def chains(self) -> list[str]:
        names = (name.decode() for name in await self._client.hkeys(self._key))
        return [name for name in names if not name.endswith(":diverged")]

    async def forget(self, chain: str) -> None:
        await self._client.hdel(self._key, [chain, f"{chain}:diverged"])

    async def close(self) -> None:
        self._client.connection_pool.disconnect()


def open_witness(storage_uri: str, prefix: str) -> Witness:
    """The witness kept where the rate limits are (``COVERPROOF_RATE_LIMIT_STORAGE``, checked
    by ``open_limiter``): Redis is connected lazily."""
    scheme, _, rest = storage_uri.partition("://")
    if scheme == "memory":
        return Witness()
    url = f"unix://{rest}" if scheme == "redis+unix" else storage_uri
    # Never retried: a telling run twice would overlap itself, and mark the chain.
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        url,
        connect_timeout=REDIS_TIMEOUT_SECONDS,
        stream_timeout=REDIS_TIMEOUT_SECONDS,
        retry_policy=NoRetryPolicy(),
    )
    return RedisWitness(client, f"{prefix}:audit-heads")


async def tell(witness: Witness, told: Mapping[str, Told]) -> None:
    """Tell the witness what a commit appended. The commit stands whatever happens here: a
    failure is logged, and costs only the check of those entries until the chain's next."""
    try:
        await witness.saw(told)
    except Exception:
        log.warning("the audit witness was not told of a commit's entries", exc_info=True)
