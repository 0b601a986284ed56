"""Per-(user, currency) ordering shared by every process that reaches one Redis: the
Redis lane store. Same rules as the sqlite one (see `_lane_store`), one script call per
operation, Redis `TIME` the only clock.

Keys per lane key K ("mode:uid:ccy"), sharing the hash tag {K} so both live on one
cluster slot:

    <prefix>:lane:{K}       hash: seq, owner, value (the newest submitted), holder,
                            fence, expires, sending (the claim)
    <prefix>:lane:{K}:u     hash: "<owner>:<n>" -> "<landing>|<value>", the uncertain
                            requests other holders left

Both are kept without expiry: a handful of fields per currency ever set.

`newer_elsewhere` cannot ask Redis synchronously: each renewal of a claim (every ttl/3)
also reports whether another process submitted a newer value, and the sender reads that.
"""

from __future__ import annotations

from ._defaults import LANE_CLAIM_TTL
from ._lane_store import ClaimAnswer, LaneClaim, LaneStoreBase, process_token
from ._redis_link import RedisDown, RedisLink

__all__ = ["LANE_LUA", "RedisLaneStore"]

# KEYS[1] the lane hash, KEYS[2] its uncertain hash. ARGV[1] the operation:
#   submit  owner value                          -> seq
#   claim   owner holder seq value ttl horizon   -> {"granted", fence, v1, t1, ...}
#                                                 | {"superseded", value} | {"wait", until}
#           (t and until: wall seconds as text; a lapsed holder's `sending` value is
#           recorded uncertain until its lapse + horizon)
#   renew   fence ttl owner seq                  -> {ours 0/1, newer-elsewhere 0/1}
#   release fence owner after1 value1 ...        -> 1 (after: seconds until it may land)
# Every reply is returned with the script's `now` appended (wall seconds as text).
LANE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local fmt = function(x) return string.format('%.6f', x) end
local op = ARGV[1]
if op == 'submit' then
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'value', ARGV[3])
  return {seq, fmt(now)}
end
if op == 'claim' then
  local owner, holder, seq = ARGV[2], ARGV[3], tonumber(ARGV[4])
  local f = redis.call('HMGET', KEYS[1], 'seq', 'owner', 'value', 'holder', 'expires', 'sending')
  local newest = tonumber(f[1]) or 0
  if newest > seq and f[2] ~= owner then
    return {'superseded', f[3], fmt(now)}
  end
  local current, expires = f[4], tonumber(f[5]) or 0
  if current and current ~= holder and expires > now then
    return {'wait', fmt(expires), fmt(now)}
  end
  if current and current ~= holder and f[6] then
    redis.call('HSET', KEYS[2], current .. ':0', fmt(expires + tonumber(ARGV[7])) .. '|' .. f[6])
  end
  if not f[1] then
    redis.call('HSET', KEYS[1], 'seq', seq, 'owner', owner, 'value', ARGV[5])
  end
  local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
  redis.call('HSET', KEYS[1], 'holder', holder, 'expires', fmt(now + tonumber(ARGV[6])),
    'sending', ARGV[5])
  local reply = {'granted', fence}
  local entries = redis.call('HGETALL', KEYS[2])
  for i = 1, #entries, 2 do
    local sep = string.find(entries[i + 1], '|', 1, true)
    local landing = tonumber(string.sub(entries[i + 1], 1, sep - 1))
    if landing <= now then
      redis.call('HDEL', KEYS[2], entries[i])
    elseif string.sub(entries[i], 1, #owner + 1) ~= owner .. ':' then
      reply[#reply + 1] = string.sub(entries[i + 1], sep + 1)
      reply[#reply + 1] = fmt(landing)
    end
  end
  reply[#reply + 1] = fmt(now)
  return reply
end
if op == 'renew' then
  local f = redis.call('HMGET', KEYS[1], 'fence', 'holder', 'seq', 'owner')
  local ours = 0
  if f[1] == ARGV[2] and f[2] then
    redis.call('HSET', KEYS[1], 'expires', fmt(now + tonumber(ARGV[3])))
    ours = 1
  end
  local newer = 0
  if (tonumber(f[3]) or 0) > tonumber(ARGV[5]) and f[4] ~= ARGV[4] then newer = 1 end
  return {ours, newer, fmt(now)}
end
if op == 'release' then
  if redis.call('HGET', KEYS[1], 'fence') == ARGV[2] then
    redis.call('HDEL', KEYS[1], 'holder', 'sending')
    redis.call('HSET', KEYS[1], 'expires', '0')
  end
  local owner = ARGV[3]
  local fields = redis.call('HKEYS', KEYS[2])
  for i = 1, #fields do
    if string.sub(fields[i], 1, #owner + 1) == owner .. ':' then
      redis.call('HDEL', KEYS[2], fields[i])
    end
  end
  local n = 0
  for i = 4, #ARGV, 2 do
    n = n + 1
    local entry = fmt(now + tonumber(ARGV[i])) .. '|' .. ARGV[i + 1]
    redis.call('HSET', KEYS[2], owner .. ':' .. n, entry)
  end
  return {1, fmt(now)}
end
return redis.error_reply('unknown lane operation ' .. tostring(op))
"""


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisLaneStore(LaneStoreBase):
    """Lane claims and sequence numbers in Redis, through a `RedisLimiterBackend`'s link.

    `ttl` (seconds, > 0, default LANE_CLAIM_TTL = 2): a claim not renewed for this long
    lapses. Operations raise LimiterUnavailableError when Redis does not answer (also
    during an outage: ordering is not given up silently, even with a fallback share).
    """

    __slots__ = ("_claims", "_link", "_prefix")

    def __init__(self, *, link: RedisLink, prefix: str, ttl: float = LANE_CLAIM_TTL) -> None:
        super().__init__(ttl=ttl)
        link.register("lane", LANE_LUA)
        self._link = link
        self._prefix = prefix
        self._claims: dict[str, tuple[LaneClaim, int]] = {}  # key -> (claim, its seq)

    def __repr__(self) -> str:
        return f"<RedisLaneStore {self._link.url} ttl={self._ttl:g}s>"

    async def _call(self, key: str, args: list[str | int]) -> list[object]:
        base = f"{self._prefix}:lane:{{{key}}}"
        try:
            raw = await self._link.eval("lane", [base, base + ":u"], args)
        except RedisDown as down:
            raise self._link.unavailable(down) from None
        assert isinstance(raw, list)
        return raw

    async def submitted(self, key: str, value: str) -> int:
        raw = await self._call(key, ["submit", process_token(), value])
        return int(_text(raw[0]))

    async def _claim_once(
        self, key: str, seq: int, holder: str, value: str, horizon: float
    ) -> tuple[ClaimAnswer, float]:
        args: list[str | int] = [
            "claim",
            process_token(),
            holder,
            seq,
            value,
            repr(self._ttl),
            repr(horizon),
        ]
        raw = [_text(x) for x in await self._call(key, args)]
        now = float(raw[-1])
        kind = raw[0]
        if kind == "superseded":
            return ClaimAnswer("superseded", value=raw[1]), now
        if kind == "wait":
            return ClaimAnswer("wait", until=float(raw[1])), now
        rest = raw[2:-1]
        uncertain = tuple((rest[i], float(rest[i + 1])) for i in range(0, len(rest), 2))
        return ClaimAnswer("granted", fence=int(raw[1]), uncertain=uncertain), now

    async def claim(
        self, key: str, *, seq: int, value: str, deadline: float | None, horizon: float
    ) -> LaneClaim:
        claim = await super().claim(key, seq=seq, value=value, deadline=deadline, horizon=horizon)
        self._claims[key] = (claim, seq)
        return claim

    async def _renew_once(self, claim: LaneClaim) -> bool:
        seq = self._claims.get(claim.key, (claim, 0))[1]
        raw = await self._call(
            claim.key, ["renew", claim.fence, repr(self._ttl), process_token(), seq]
        )
        claim.newer = _text(raw[1]) == "1"
        return _text(raw[0]) == "1"

    async def _release_once(self, claim: LaneClaim, uncertain: list[tuple[str, float]]) -> None:
        if self._claims.get(claim.key, (None, 0))[0] is claim:
            del self._claims[claim.key]
        args: list[str | int] = ["release", claim.fence, process_token()]
        for value, after in uncertain:
            args += [repr(after), value]
        await self._call(claim.key, args)

    def newer_elsewhere(self, key: str, seq: int) -> bool:
        held = self._claims.get(key)
        return held is not None and held[1] == seq and held[0].newer
