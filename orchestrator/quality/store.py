"""Live quality totals in Redis: each outcome counted once across replicas and restarts.

Every replica sees every prediction (the one that computed it, the others through its bar-close
event or the shared cache: shared.py, barclose.py), so every replica's tracker resolves every
outcome. There is no leader to leave it to (each bar goes to whichever replica claims it), and a
replica taking over from another would not know what that one had counted. So each outcome, one
horizon of one prediction, is claimed instead: one Lua script sets `{prefix}:quality:claim:
{symbol}:{timeframe}:{bar epoch}:v{version}:{horizon}` (`SET NX PX`) and, only when the claim is
new, adds the outcome's sums to the (timeframe, version) hash (`HINCRBY` / `HINCRBYFLOAT`,
confidence bins included) and its coverage to the drift list (`LPUSH` + `LTRIM`). Claim and count
are one atomic step, so no replica can die in between. One script call takes up to SEND_BATCH
outcomes alike (same group, horizon and fields), claims each, and adds the sums of the new ones
once per field: a call per outcome packed ~35 arguments each on the client and ran ~20 hash
commands in Redis, 0.9 s of client time and 0.3 s of Redis a pass at 10,000 symbols. A pass
sends all its calls in one pipeline, and reads the shared totals back for /api/stats, the
Prometheus gauges and `model-report`.

A claim lives `claim_ttl_s` (3 h: ~70 outcomes per symbol and hour on 5m, 15m and 1h, so ~200
claim keys per symbol, ~25 MB for 1,000 symbols). An outcome kept unsent (Redis away) for longer
than that, less `CLAIM_MARGIN_S`, is no longer counted (`stale`): another replica's claim on it
may have expired, and a late replica must never count what an expired claim no longer guards.
The wait is measured on this replica's clock from when it resolved the outcome, never from the
bars' timestamps, so replays of historical bars are counted like live ones. (A replica that
resolves an outcome more than a claim's lifetime after another one did, hours behind, would
count it again.)

**Redis away:** the pass counts in this replica's memory on top of the last totals it read, warns
once per outage, and keeps the outcomes (up to `UNSENT_MAX`) to send through the same claims once
Redis answers; each report entry says whether its numbers come from Redis or from memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Collection
from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.quality.totals import DRIFT_WINDOW, Group, Outcome, Source, Totals

log = logging.getLogger("orchestrator.quality")

CLAIM_TTL_S = 3 * 3600.0
# Another replica may have resolved (and claimed) the same outcome up to this much earlier.
CLAIM_MARGIN_S = 600.0
UNSENT_MAX = 100_000  # outcomes kept for Redis while it is away (~300 B each)

# One call per batch of outcomes alike (same group, horizon and fields). KEYS: totals hash, drift
# list, group set, then each outcome's claim. ARGV: claim ttl ms, drift window, group, interval
# level, horizons, the fields' kinds ('i' | 'f', one string), the fields (comma-separated), then
# per outcome its drift entry ('' for none) and its deltas (comma-separated, in field order).
# Returns how many claims were new: only theirs are summed, then added once per field.
_COUNT_ONCE = """
local kinds, fields, sums, drift, claimed = ARGV[6], {}, {}, {}, 0
for name in string.gmatch(ARGV[7], '[^,]+') do fields[#fields + 1] = name; sums[#fields] = 0 end
for k = 4, #KEYS do
  if redis.call('SET', KEYS[k], '1', 'NX', 'PX', ARGV[1]) then
    claimed = claimed + 1
    local at = 8 + 2 * (k - 4)
    if ARGV[at] ~= '' then drift[#drift + 1] = ARGV[at] end
    local j = 1
    for delta in string.gmatch(ARGV[at + 1], '[^,]+') do
      sums[j] = sums[j] + tonumber(delta)
      j = j + 1
    end
  end
end
if claimed == 0 then return 0 end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'meta:level', ARGV[4], 'meta:horizons', ARGV[5])
for j = 1, #fields do
  if string.sub(kinds, j, j) == 'f' then
    redis.call('HINCRBYFLOAT', KEYS[1], fields[j], string.format('%.17g', sums[j]))
  else
    redis.call('HINCRBY', KEYS[1], fields[j], string.format('%d', sums[j]))
  end
end
if #drift > 0 then
  redis.call('LPUSH', KEYS[2], unpack(drift))
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
end
return claimed
"""
SEND_BATCH = 500  # outcomes per script call: a call runs ~1 ms in Redis, which blocks meanwhile


class SharedTotals:
    """Every replica's totals as of the last pass, plus what this replica counted in memory
    while Redis was away (or is not configured)."""

    def __init__(
        self, redis: Redis | None, *, namespace: str, claim_ttl_s: float = CLAIM_TTL_S
    ) -> None:
        self.claim_ttl_s = claim_ttl_s
        self._redis = redis
        self._script = None if redis is None else redis.register_script(_COUNT_ONCE)
        self._namespace = f"{namespace}:quality"
        self._shared: dict[Group, Totals] = {}  # as read from Redis at the last pass
        self._memory: dict[Group, Totals] = {}  # counted here, not (yet) in Redis
        self._unsent: deque[Outcome] = deque(maxlen=UNSENT_MAX)
        self._available = redis is not None
        self.counted = 0  # outcomes this replica added to the shared totals
        self.counted_elsewhere = 0  # claimed by another replica first
        self.stale = 0  # kept unsent too long to be claimed safely
        self.redis_errors = 0

    @property
    def source(self) -> Source:
        shared = self._redis is not None and self._available and not self._memory
        return "redis" if shared else "memory"

    def totals(self) -> dict[Group, Totals]:
        """The shared totals, each plus this replica's own while Redis is away."""
        groups = dict(self._shared)
        for group, own in self._memory.items():
            groups[group] = groups[group].plus(own) if group in groups else own
        return groups

    async def count(self, outcomes: list[Outcome], now: datetime) -> None:
        """Into Redis, each outcome once across replicas; into memory while Redis is away."""
        if self._redis is None:
            for outcome in outcomes:
                self._remember(outcome)
            return
        if not self._unsent and not outcomes:
            return
        self._unsent = deque(self._fresh(self._unsent, now), maxlen=UNSENT_MAX)
        batch = [*self._unsent, *outcomes]
        try:
            failed = await self._send(batch) if batch else []
        except (RedisError, OSError) as exc:
            self._down(exc)
            for outcome in outcomes:
                self._remember(outcome)
                self._unsent.append(outcome)  # the oldest fall out past UNSENT_MAX
            return
        if self._unsent:
            log.info("live quality: %d outcomes counted in memory sent to Redis", len(self._unsent))
        self._unsent = deque(failed, maxlen=UNSENT_MAX)
        self._memory = {}
        for outcome in failed:
            self._remember(outcome)
        if not failed:
            self._up()

    async def refresh(self) -> None:
        """Reads every replica's totals from Redis (a no-op without it; kept when it fails)."""
        if self._redis is None:
            return
        try:
            self._shared = await self._read(self._redis)
        except (RedisError, OSError) as exc:
            self._down(exc)
            return
        if not self._unsent:
            self._up()

    def _remember(self, outcome: Outcome) -> None:
        group = (outcome.timeframe, outcome.version)
        totals = self._memory.setdefault(group, Totals(outcome.level, outcome.horizons))
        totals.add(outcome)

    def _fresh(self, unsent: Collection[Outcome], now: datetime) -> list[Outcome]:
        """The unsent outcomes still safe to claim; the others are dropped once (`stale`)."""
        window_s = self.claim_ttl_s - CLAIM_MARGIN_S
        kept = [o for o in unsent if (now - o.resolved_at).total_seconds() <= window_s]
        self.stale += len(unsent) - len(kept)
        return kept

    async def _send(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Claims and counts `outcomes` in one pipeline, a script call per batch alike; returns
        the outcomes of the calls Redis refused (read only, out of memory), to send again. A
        lost connection raises. One call per outcome packed ~35 arguments each, most of a
        10,000-symbol pass's client time (docs/benchmarks.md)."""
        assert self._redis is not None
        assert self._script is not None
        ttl_ms = str(int(self.claim_ttl_s * 1000))
        pipe = self._redis.pipeline(transaction=False)
        batches = _alike(outcomes)
        for batch in batches:
            keys, args = self._script_call(batch, ttl_ms)
            await self._script(keys=keys, args=args, client=pipe)
        results = await pipe.execute(raise_on_error=False)
        failed = []
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, Exception):
                failed += batch
                self._down(result)
            else:
                self.counted += int(result)
                self.counted_elsewhere += len(batch) - int(result)
        return failed

    def _script_call(self, batch: list[Outcome], ttl_ms: str) -> tuple[list[str], list[str]]:
        first = batch[0]
        group = (first.timeframe, first.version)
        keys = [
            self._totals_key(group),
            self._drift_key(group, first.horizon),
            f"{self._namespace}:groups",
            *(f"{self._namespace}:claim:{outcome.claim}" for outcome in batch),
        ]
        args = [
            ttl_ms,
            str(DRIFT_WINDOW),
            f"{first.timeframe}|{first.version}",
            "" if first.level is None else repr(first.level),
            ",".join(first.horizons),
            "".join("i" if isinstance(delta, int) else "f" for _, delta in first.increments),
            ",".join(name for name, _ in first.increments),
        ]
        for outcome in batch:
            args.append(outcome.drift or "")
            args.append(",".join(_number(delta) for _, delta in outcome.increments))
        return keys, args

    def _totals_key(self, group: Group) -> str:
        return f"{self._namespace}:totals:{group[0]}:v{group[1]}"

    def _drift_key(self, group: Group, horizon: str) -> str:
        return f"{self._namespace}:drift:{group[0]}:v{group[1]}:{horizon}"

    def _down(self, exc: BaseException) -> None:
        self.redis_errors += 1
        if self._available:
            log.warning(
                "Redis unavailable for live quality: counting in this replica's memory until it "
                "answers (%s)",
                exc,
            )
        self._available = False

    def _up(self) -> None:
        if not self._available:
            log.info("Redis answers again: live quality is shared again")
        self._available = True

    async def _read(self, redis: Redis) -> dict[Group, Totals]:
        # redis-py types the asyncio client's replies as "awaitable or not".
        found = cast("Awaitable[set[bytes]]", redis.smembers(f"{self._namespace}:groups"))
        groups = [_group(_text(member)) for member in sorted(await found)]
        pipe = redis.pipeline(transaction=False)
        for group in groups:
            pipe.hgetall(self._totals_key(group))
        hashes = await pipe.execute()
        shared: dict[Group, Totals] = {}
        for group, raw in zip(groups, hashes, strict=True):
            fields = {_text(k): _text(v) for k, v in raw.items()}
            level = fields.pop("meta:level", "")
            horizons = [h for h in fields.pop("meta:horizons", "").split(",") if h]
            sums = {name: float(value) for name, value in fields.items()}
            shared[group] = Totals(float(level) if level else None, horizons, sums)
        pipe = redis.pipeline(transaction=False)
        lists = [(g, h) for g, totals in shared.items() for h in totals.horizons]
        for group, horizon in lists:
            pipe.lrange(self._drift_key(group, horizon), 0, DRIFT_WINDOW - 1)
        for (group, horizon), entries in zip(lists, await pipe.execute(), strict=True):
            if entries:
                recent = deque((_text(e) for e in entries), maxlen=DRIFT_WINDOW)
                shared[group].drift[horizon] = recent
        return shared


def _alike(outcomes: list[Outcome]) -> list[list[Outcome]]:
    """The outcomes in batches of at most SEND_BATCH that one script call counts together:
    same group, horizon, interval level, horizons and increment fields (a label horizon's
    confidence bin names its fields), each batch in the order given."""
    batches: dict[tuple[object, ...], list[list[Outcome]]] = {}
    for outcome in outcomes:
        alike = (
            outcome.timeframe,
            outcome.version,
            outcome.horizon,
            outcome.level,
            tuple(outcome.horizons),
            tuple(name for name, _ in outcome.increments),
        )
        runs = batches.setdefault(alike, [[]])
        if len(runs[-1]) == SEND_BATCH:
            runs.append([])
        runs[-1].append(outcome)
    return [batch for runs in batches.values() for batch in runs]


def _number(delta: float) -> str:
    """A delta as the script reads it: an int exactly, a float to the last bit."""
    return str(delta) if isinstance(delta, int) else repr(float(delta))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _group(member: str) -> Group:
    timeframe, _, version = member.partition("|")
    return timeframe, version
