"""Predictions shared by every replica through Redis: each bar of each symbol is inferred once.

A sweep on any replica first reads the shared cache (Litestar's `RedisStore`, one pipelined MGET
for the whole sweep), then claims what is missing (`SET NX PX`, one pipeline), computes only what
it claimed, writes the results back and publishes them as one bar-close event (Litestar channels,
Redis pub/sub). The other replicas take those predictions from the event, or from the cache when
a request arrives first; a bar claimed by a replica that died is claimed again once its claim
expires (`claim_ttl_s`).

Redis is an accelerator, never a dependency of serving: when a call fails (or takes longer than
the client's timeout) the replica works alone for `retry_after_s` — it computes everything it is
asked for (the other replicas may compute the same bars meanwhile) and publishes nothing — then
tries Redis again.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.dates import epoch_seconds
from orchestrator.features.head import OnlineLevels
from orchestrator.features.online import NO_TENSOR, ModelInputs
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import EnsembleOutput
from orchestrator.inference.prediction import FeatureKey, Prediction
from orchestrator.marketdata.timeframes import Timeframe

log = logging.getLogger("orchestrator.shared")

BAR_CLOSE_CHANNEL = "bar-close"
# (key, bar time, model version, revision of the stored series): a corrected bar or another model
# version is another prediction.
Token = tuple[FeatureKey, datetime, str, int]


class SharedPrediction(msgspec.Struct, array_like=True, frozen=True):
    """What a replica needs to answer for a bar it did not compute (about 350 bytes)."""

    symbol: str
    timeframe: str
    bar_time: datetime
    version: str
    close: float
    atr: float
    gru_range: list[float]
    transformer_range: list[float]
    p_long: float
    p_short: float
    confidence: float
    direction: float
    revision: int
    har: list[float]  # the serving head's baseline inputs
    season: int
    # The computing replica's adaptive interval level per column (every replica serves the
    # same intervals for the bar); None: the fitted 80 %.
    miscoverage: list[float] | None = None
    horizon_bars: list[int] | None = None  # on the symbol's calendar; None: the spec's
    # Its shift of P(long), P(short) and the confidence (live outcomes); None: none.
    probability_shift: list[float] | None = None

    @classmethod
    def of_rows(
        cls,
        predictions: list[Prediction],
        out: EnsembleOutput,
        har: npt.NDArray[np.float64],
        season: npt.NDArray[np.int64],
        listed: dict[int, ListedLevels],
    ) -> list[SharedPrediction]:
        """The record of each prediction of one batched answer `out` (a sweep's chunk, with its
        baselines' inputs): each array is listed once for the chunk rather than once a row, ~2 %
        of a 10,000-symbol sweep's loop time. `listed`: the online levels already turned into
        lists, by id (a sweep's predictions share one levels object)."""
        gru, transformer = out.gru_range.tolist(), out.transformer_range.tolist()
        p_long, p_short = out.p_long.tolist(), out.p_short.tolist()
        confidence, direction = out.confidence.tolist(), out.direction.tolist()
        hars, seasons = har.tolist(), season.tolist()
        records = []
        for row, prediction in enumerate(predictions):
            miscoverage, shift = _listed_levels(prediction.levels, listed)
            records.append(
                cls(
                    prediction.symbol,
                    prediction.timeframe,
                    prediction.bar_time,
                    prediction.version,
                    prediction.inputs.close,
                    prediction.inputs.atr,
                    gru[row],
                    transformer[row],
                    p_long[row],
                    p_short[row],
                    confidence[row],
                    direction[row],
                    prediction.revision,
                    hars[row],
                    seasons[row],
                    miscoverage,
                    prediction.horizon_bars,
                    shift,
                )
            )
        return records

    @property
    def token(self) -> Token:
        return (self.symbol, Timeframe(self.timeframe)), self.bar_time, self.version, self.revision

    @property
    def expires_in_s(self) -> int:
        """Kept while it can still be the newest bar's answer: three bars, at least 15 minutes
        (a closed market keeps its last bar longer; it is then computed once more)."""
        return max(900, 3 * Timeframe(self.timeframe).seconds)

    def prediction(self, spec: FeatureSpec) -> Prediction:
        """A Prediction that answers like the computing replica's (the tensors stay there)."""
        inputs = ModelInputs(
            NO_TENSOR,
            NO_TENSOR,
            NO_TENSOR,
            self.atr,
            self.close,
            pd.Timestamp(self.bar_time),
            np.array([self.har], dtype=np.float64),
            np.array([self.season], dtype=np.int64),
        )
        out = EnsembleOutput(
            np.array([self.gru_range], dtype=np.float32),
            np.array([self.transformer_range], dtype=np.float32),
            np.array([self.p_long], dtype=np.float32),
            np.array([self.p_short], dtype=np.float32),
            np.array([self.confidence], dtype=np.float32),
            np.array([self.direction], dtype=np.float32),
            self.version,
        )
        return Prediction(
            self.symbol,
            self.timeframe,
            self.bar_time,
            self.version,
            spec,
            inputs,
            out,
            self.revision,
            levels=OnlineLevels(_array(self.miscoverage), _array(self.probability_shift)),
            horizon_bars=list(self.horizon_bars or ()),
        )


ListedLevels = tuple[list[float] | None, list[float] | None]


def _listed_levels(levels: OnlineLevels | None, listed: dict[int, ListedLevels]) -> ListedLevels:
    if levels is None:
        return None, None
    found = listed.get(id(levels))
    if found is None:
        found = listed[id(levels)] = (
            _listed(levels.miscoverage),
            _listed(levels.probability_shift),
        )
    return found


def _listed(values: npt.NDArray[np.float64] | None) -> list[float] | None:
    return None if values is None else values.tolist()


def _array(values: list[float] | None) -> npt.NDArray[np.float64] | None:
    return None if values is None else np.asarray(values, np.float64)


class BarCloseEvent(msgspec.Struct, frozen=True):
    origin: str  # the replica that computed them (it ignores its own events)
    predictions: list[SharedPrediction]


class _EncodedEvent(msgspec.Struct, frozen=True):
    """A BarCloseEvent built from predictions already encoded for the cache (decodes as one)."""

    origin: str
    predictions: list[msgspec.Raw]


class _EventOrigin(msgspec.Struct, frozen=True):
    """A BarCloseEvent read for its origin alone: the predictions are skipped, not built (a
    replica's own 10,000-prediction event cost ~3 % of its sweep's loop to decode and drop)."""

    origin: str


def token_name(token: Token) -> str:
    (symbol, timeframe), bar_time, version, revision = token
    return f"{symbol}:{timeframe.value}:{_epoch_s(bar_time)}:v{version}:r{revision}"


# A sweep names thousands of tokens of a few bar times, twice (claims, then the cache).
_epoch_s = functools.lru_cache(maxsize=256)(epoch_seconds)


# One script call per sweep instead of a pipeline of one SET per key: at 10,000 keys the
# pipeline's per-command packing and reply parsing in redis-py was ~30 % of a sweep's event-loop
# time (py-spy, bench-scale); the script does the same SETs inside Redis.
_CLAIM = """
local won = {}
for i, key in ipairs(KEYS) do
  won[i] = redis.call('SET', key, '1', 'NX', 'PX', ARGV[1]) and 1 or 0
end
return won
"""
_SET_MANY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'EX', ARGV[2 * i])
end
return #KEYS
"""
SCRIPT_KEYS = 2000  # keys per script call: bounds one call's time inside Redis (single-threaded)
# A replica's watched series (those with a WebSocket feed open) are announced again this often,
# and another replica forgets them this long after the last announcement (a replica that died).
WATCH_REFRESH_S = 10.0
WATCH_TTL_S = 30.0
Series = tuple[str, str]  # (symbol, timeframe) as the stream names them


class WatchedSeries(msgspec.Struct, array_like=True, frozen=True):
    """One replica's announcement: the series its clients watch, valid until `expires_at`."""

    expires_at: float  # epoch seconds
    series: list[Series]


class PredictionStore(RedisStore):
    """RedisStore with the bulk operations a sweep needs, on the same client and namespace."""

    def __init__(self, redis: Redis, *, namespace: str) -> None:
        super().__init__(redis, namespace=namespace)
        self._claim = redis.register_script(_CLAIM)
        self._set_many = redis.register_script(_SET_MANY)

    async def get_many(self, names: list[str]) -> list[bytes | None]:
        if not names:
            return []
        values: list[bytes | None] = await self._redis.mget([self._make_key(n) for n in names])
        return values

    async def claim_many(self, names: list[str], ttl_s: float) -> list[bool]:
        """SET NX with a time to live for each name; True where this call set it."""
        won: list[bool] = []
        for start in range(0, len(names), SCRIPT_KEYS):
            keys = [self._make_key(f"claim:{name}") for name in names[start : start + SCRIPT_KEYS]]
            replies = await self._claim(keys=keys, args=[int(ttl_s * 1000)])
            won += [bool(ok) for ok in replies]
        return won

    async def release_many(self, names: list[str]) -> None:
        """Drops claims taken by claim_many."""
        if names:
            await self._redis.unlink(*(self._make_key(f"claim:{name}") for name in names))

    # redis' stubs type these as `T | Awaitable[T]` and hash values as str: ignored below.
    async def announce_watched(self, replica_id: str, watched: WatchedSeries) -> None:
        encoded = msgspec.msgpack.encode(watched)
        await self._redis.hset(self._make_key("watched"), replica_id, encoded)  # type: ignore[misc, arg-type]

    async def forget_watched(self, replica_id: str) -> None:
        await self._redis.hdel(self._make_key("watched"), replica_id)  # type: ignore[misc]

    async def watched(self) -> dict[str, WatchedSeries]:
        """Every replica's last announcement, by replica id."""
        raw: dict[bytes, bytes] = await self._redis.hgetall(self._make_key("watched"))  # type: ignore[misc]
        return {
            replica.decode(): msgspec.msgpack.decode(value, type=WatchedSeries)
            for replica, value in raw.items()
        }

    async def set_many(self, items: list[tuple[str, bytes, int]]) -> None:
        """SET with an expiry for each (name, value, seconds)."""
        for start in range(0, len(items), SCRIPT_KEYS):
            chunk = items[start : start + SCRIPT_KEYS]
            args: list[bytes | int] = []
            for _, value, expires_in_s in chunk:
                args += [value, expires_in_s]
            await self._set_many(keys=[self._make_key(name) for name, _, _ in chunk], args=args)


class SharedPredictions:
    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        replica_id: str,
        claim_ttl_s: float = 10.0,
        retry_after_s: float = 1.0,
    ) -> None:
        self.store = PredictionStore(redis, namespace=f"{namespace}:predictions")
        self.replica_id = replica_id
        self.claim_ttl_s = claim_ttl_s
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self.cache_hits = 0
        self.claims_won = 0
        self.claims_lost = 0
        self.received = 0
        self.redis_errors = 0
        self.left_to_watchers = 0  # background keys left to the replica whose client watches them
        self._announced: frozenset[Series] | None = None
        self._announced_at = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        self.redis_errors += 1
        if self.available:
            log.warning(
                "Redis %s failed, serving alone for %.1f s: %s", what, self.retry_after_s, exc
            )
        self._down_until = time.monotonic() + self.retry_after_s

    async def fetch(self, tokens: list[Token]) -> dict[Token, SharedPrediction]:
        """The shared predictions of `tokens` already computed by some replica."""
        if not tokens or not self.available:
            return {}
        try:
            values = await self.store.get_many([token_name(t) for t in tokens])
        except (RedisError, OSError) as exc:
            self._failed("read", exc)
            return {}
        found = {}
        for token, raw in zip(tokens, values, strict=True):
            if raw is not None:
                found[token] = msgspec.msgpack.decode(raw, type=SharedPrediction)
        self.cache_hits += len(found)
        return found

    async def claim(self, tokens: list[Token]) -> set[Token]:
        """The tokens this replica now computes; the others are being computed elsewhere.
        Without Redis every token is ours."""
        if not tokens:
            return set()
        if not self.available:
            return set(tokens)
        try:
            won = await self.store.claim_many([token_name(t) for t in tokens], self.claim_ttl_s)
        except (RedisError, OSError) as exc:
            self._failed("claim", exc)
            return set(tokens)
        claimed = {t for t, ok in zip(tokens, won, strict=True) if ok}
        self.claims_won += len(claimed)
        self.claims_lost += len(tokens) - len(claimed)
        return claimed

    async def release(self, tokens: list[Token]) -> None:
        """Gives up claims this replica could not compute (too little history, a failure)."""
        if not tokens or not self.available:
            return
        try:
            await self.store.release_many([token_name(t) for t in tokens])
        except (RedisError, OSError) as exc:
            self._failed("release", exc)

    def due(self, watched: frozenset[Series]) -> bool:
        """Whether the other replicas must hear of `watched`: it changed, or the last
        announcement is WATCH_REFRESH_S old."""
        if not self.available:
            return False
        if watched != self._announced:
            return True
        return bool(watched) and time.time() - self._announced_at >= WATCH_REFRESH_S

    async def announce(self, watched: frozenset[Series]) -> None:
        """Tells the other replicas which series this one's clients watch, so that their
        background sweeps leave those to this one (none: the announcement is withdrawn)."""
        now = time.time()
        try:
            if watched:
                entry = WatchedSeries(now + WATCH_TTL_S, sorted(watched))
                await self.store.announce_watched(self.replica_id, entry)
            else:
                await self.store.forget_watched(self.replica_id)
        except (RedisError, OSError) as exc:
            self._failed("announcement of watched series", exc)
            return
        self._announced, self._announced_at = watched, now

    async def watched_elsewhere(self) -> frozenset[Series]:
        """The series another live replica's clients watch (empty without Redis)."""
        if not self.available:
            return frozenset()
        try:
            entries = await self.store.watched()
        except (RedisError, OSError) as exc:
            self._failed("read of watched series", exc)
            return frozenset()
        now = time.time()
        return frozenset(
            series
            for replica, entry in entries.items()
            if replica != self.replica_id and entry.expires_at > now
            for series in entry.series
        )

    async def share(
        self, shared: list[SharedPrediction], announce: Callable[[bytes], None] | None = None
    ) -> None:
        """Announces a sweep's records (`SharedPrediction.of_rows`) as one bar-close event, then
        writes them to the cache: the other replicas' WebSocket clients wait for the event,
        requests that miss it find the cache. Nothing is said when Redis is known to be away."""
        if not shared or not self.available:
            return
        encoded = [msgspec.msgpack.encode(record) for record in shared]  # once, for both
        if announce is not None:
            raw = [msgspec.Raw(value) for value in encoded]
            announce(msgspec.msgpack.encode(_EncodedEvent(self.replica_id, raw)))
        items = [
            (token_name(record.token), value, record.expires_in_s)
            for record, value in zip(shared, encoded, strict=True)
        ]
        try:
            await self.store.set_many(items)
        except (RedisError, OSError) as exc:
            self._failed("write", exc)

    def decode_event(self, payload: bytes) -> list[SharedPrediction]:
        """The predictions of another replica's event ([] for our own)."""
        if msgspec.msgpack.decode(payload, type=_EventOrigin).origin == self.replica_id:
            return []
        event = msgspec.msgpack.decode(payload, type=BarCloseEvent)
        self.received += len(event.predictions)
        return event.predictions
