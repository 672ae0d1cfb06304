"""A witness of each chain's newest entry, kept outside the database.

A chain shows an entry changed, and entries cut off before its last signed checkpoint; it
cannot show its newest entries cut off since, or rewritten from there with hashes made anew:
whoever may delete the rows the triggers keep (the database's administrator) could do either
unseen. So every commit that appended to a chain tells the witness the newest entry it wrote
(its seq and hash), and verification holds the chain to it: a chain that ends before that seq,
or holds another hash there, is broken. The witness is kept where the rate limits are: in
Redis, out of the database administrator's reach, shared by every process; with ``memory://``
(development) in the process only. Losing it loses only this check. A database restored from a
backup has lost what the witness saw since: ``coverproof audit forget-witness`` (once the loss
is known) lets verification start again from the chain as it is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

import coredis

from app.ratelimit.limiter import REDIS_TIMEOUT_SECONDS

log = logging.getLogger("coverproof.audit")

# Where a session finds the app's witness (``app.db.engine.session_factory``'s info).
INFO = "coverproof.witness"
_PLATFORM = "platform"

Head = tuple[int, bytes]

# The newer of the one kept and the one given, atomically: two commits of one chain may tell
# the witness in either order.
_KEEP_NEWER = """
local kept = redis.call('HGET', KEYS[1], ARGV[1])
if not kept or tonumber(string.match(kept, '^(%d+):')) < tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
end
return 1
"""


def chain_of(firm_id: uuid.UUID | None) -> str:
    """The name the witness knows a chain by: its firm's id, or the platform's."""
    return _PLATFORM if firm_id is None else str(firm_id)


class Witness:
    """Kept in the process (``memory://``)."""

    def __init__(self) -> None:
        self._heads: dict[str, Head] = {}

    async def saw(self, heads: Mapping[str, Head]) -> None:
        """Keep each chain's newest entry of ``heads`` (by chain name) unless it knows a newer."""
        for chain, head in heads.items():
            kept = self._heads.get(chain)
            if kept is None or kept[0] < head[0]:
                self._heads[chain] = head

    async def newest(self, chain: str) -> Head | None:
        """The newest entry of the chain it was told of, if any."""
        return self._heads.get(chain)

    async def forget(self, chain: str) -> None:
        self._heads.pop(chain, None)

    async def close(self) -> None:
        return None


class RedisWitness(Witness):
    """Kept in Redis, in one hash of chain name to "seq:hash" (hex)."""

    def __init__(self, client: coredis.Redis[bytes], key: str) -> None:
        super().__init__()
        self._client, self._key = client, key

    async def saw(self, heads: Mapping[str, Head]) -> None:
        for chain, (seq, digest) in heads.items():
            await self._client.eval(_KEEP_NEWER, [self._key], [chain, str(seq), digest.hex()])

    async def newest(self, chain: str) -> Head | None:
        kept = await self._client.hget(self._key, chain)
        if kept is None:
            return None
        seq, digest = kept.decode().split(":")
        return int(seq), bytes.fromhex(digest)

    async def forget(self, chain: str) -> None:
        await self._client.hdel(self._key, [chain])

    async def close(self) -> None:
        self._client.connection_pool.disconnect()


def open_witness(storage_uri: str, prefix: str) -> Witness:
    """The witness kept where the rate limits are (``COVERPROOF_RATE_LIMIT_STORAGE``, checked
    by ``open_limiter``): Redis is connected lazily."""
    scheme, _, rest = storage_uri.partition("://")
    if scheme == "memory":
        return Witness()
    url = f"unix://{rest}" if scheme == "redis+unix" else storage_uri
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        url, connect_timeout=REDIS_TIMEOUT_SECONDS, stream_timeout=REDIS_TIMEOUT_SECONDS
    )
    return RedisWitness(client, f"{prefix}:audit-heads")


async def tell(witness: Witness, heads: Mapping[str, Head]) -> None:
    """Tell the witness what a commit appended. The commit stands whatever happens here: a
    failure is logged, and costs only the check of those entries until the chain's next."""
    try:
        await witness.saw(heads)
    except Exception:
        log.warning("the audit witness was not told of a commit's entries", exc_info=True)
