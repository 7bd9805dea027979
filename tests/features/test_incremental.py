"""IncrementalFeatures against the batch pipeline it replaces on the serving path.

Random OHLCV series (seeded numpy; hypothesis is not installed in this environment) at FX and
crypto price scales, with zero-range bars, volatility regimes and a weekend gap. After seeding on
the first required_bars() bars, every update is compared with `inputs_for_latest` (the tail
recompute serving used) and `compute_features` over all bars so far.

Tolerances: rtol 1e-6 is the acceptance bound. atol 1e-9 covers values that cross zero, where a
relative error means nothing: the two paths differ only by summation order (~1e-15 relative) and by
the memory of the batch tail's seed, which has decayed by (49/51)^600 ~ 4e-11 for the slowest EMA
(the features are O(1e-4..10) in ATR, return or oscillator units).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from export.train import TrainConfig, spec_from_stats
from orchestrator.features.baseline import history_bars
from orchestrator.features.dataset import fit_normalisation
from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import (
    ModelInputs,
    NotEnoughHistoryError,
    inputs_for_latest,
    required_bars,
)
from orchestrator.features.spec import CONTEXT_FEATURES, FeatureSpec
from orchestrator.marketdata.timeframes import Timeframe

RTOL, ATOL = 1e-6, 1e-9
CHECK_EVERY = 10
SCALES = (1.08, 60_000.0)


def random_bars(n: int, price: float, seed: int, gap_at: int | None = None) -> pd.DataFrame:
    """Geometric random walk with volatility regimes, valid OHLC, ~5% zero-range bars, 5m bars;
    `gap_at` starts a weekend: that bar opens 2 days 5 minutes after the previous one."""
    rng = np.random.default_rng(seed)
    vol = np.repeat(rng.uniform(2e-4, 3e-3, n // 50 + 1), 50)[:n]
    close = price * np.exp(np.cumsum(rng.standard_t(5, n) * vol / np.sqrt(5 / 3)))
    open_ = np.r_[price, close[:-1]] * np.exp(rng.normal(0.0, vol / 10))
    wick = np.abs(rng.normal(0.0, vol, (2, n)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    flat = rng.random(n) < 0.05
    open_[flat] = high[flat] = low[flat] = close[flat]
    volume = rng.lognormal(4.0, 1.0, n)
    steps = np.full(n, pd.Timedelta(minutes=5))
    if gap_at is not None:
        steps[gap_at] = pd.Timedelta(days=2, minutes=5)
    index = pd.Timestamp("2024-03-04 00:00", tz="UTC") + np.cumsum(steps) - steps[0]
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=pd.DatetimeIndex(index, name="time"),
    )


@dataclass(frozen=True)
class Market:
    price: float
    spec: FeatureSpec


@pytest.fixture(scope="module", params=SCALES, ids=lambda p: f"price{p:g}")
def market(request: pytest.FixtureRequest) -> Market:
    """A price scale and a spec whose normalisation was fitted on another series of that scale,
    as training does (every feature is scale-free; the check runs at several price scales)."""
    price = float(request.param)
    mean, std = fit_normalisation(compute_features(random_bars(4_000, price, seed=99)))
    return Market(price, spec_from_stats(mean, std, TrainConfig()))


def assert_inputs_equal(got: ModelInputs, want: ModelInputs) -> None:
    for name in ("seq", "tab", "ctx"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(got.atr, want.atr, rtol=RTOL, atol=ATOL)
    assert got.close == want.close
    assert got.bar_time == want.bar_time
    # The baselines' inputs, read by the serving head.
    # The week of bar measures is kept in float32 (compact states): ~1e-8 from the batch.
    np.testing.assert_allclose(got.har, want.har, rtol=1e-6, atol=1e-6, err_msg="har")
    assert np.isfinite(got.har).all()
    np.testing.assert_array_equal(got.season, want.season)


def assert_matches_batch(
    features: IncrementalFeatures, bars: pd.DataFrame, spec: FeatureSpec
) -> None:
    """`features` has consumed exactly `bars`: compare with both batch paths."""
    assert features.last_time == bars.index[-1]
    assert_inputs_equal(features.inputs(), inputs_for_latest(bars, spec))
    want = compute_features(bars).iloc[-1].to_numpy()
    np.testing.assert_allclose(features.raw_features(), want, rtol=RTOL, atol=ATOL)


FIELDS = ["open", "high", "low", "close", "volume"]


def ohlcv(bars: pd.DataFrame, i: int) -> tuple[float, float, float, float, float]:
    o, h, lo, c, v = bars[FIELDS].iloc[i].to_numpy(np.float64).tolist()
    return o, h, lo, c, v


def feed(features: IncrementalFeatures, bars: pd.DataFrame) -> None:
    for i, ts in enumerate(bars.index):
        features.update(ts, *ohlcv(bars, i))


def test_matches_batch_bar_by_bar(market: Market) -> None:
    spec = market.spec
    need = required_bars(spec)
    gap = need + 150  # the weekend lands mid-stream, after seeding
    bars = random_bars(need + 320, market.price, seed=3, gap_at=gap)
    features = IncrementalFeatures.seed(bars.iloc[:need], spec)
    assert_matches_batch(features, bars.iloc[:need], spec)
    around_gap = range(gap - 2, gap + 5)
    for t in range(need, len(bars)):
        feed(features, bars.iloc[t : t + 1])
        if (t - need) % CHECK_EVERY == 0 or t in around_gap or t == len(bars) - 1:
            assert_matches_batch(features, bars.iloc[: t + 1], spec)
    assert features.last_bar == ohlcv(bars, -1)


def test_warm_up_matches_batch_seeding(market: Market) -> None:
    """From the first bar pandas-ta computes everything (EMA-50 needs 50): seeds that completed a
    few bars earlier (ATR/RSI at 14, ADX 27, MACD 33, volume_z 47) still dominate every value.
    Later checks cannot see a wrong seed (its memory decays over the tail): this test pins them."""
    spec = market.spec
    bars = random_bars(140, market.price, seed=9)
    features = IncrementalFeatures(spec)
    for t in range(len(bars)):
        feed(features, bars.iloc[t : t + 1])
        if t + 1 >= 50:  # pandas-ta answers None for a series shorter than an indicator
            want = compute_features(bars.iloc[: t + 1]).iloc[-1].to_numpy()
            np.testing.assert_allclose(
                features.raw_features(), want, rtol=RTOL, atol=ATOL, err_msg=f"bar {t}"
            )
    with pytest.raises(NotEnoughHistoryError) as raised:
        features.inputs()  # as inputs_for_latest: fewer bars than its tail
    assert (raised.value.have, raised.value.need) == (len(bars), required_bars(spec))


def test_seed_uses_only_the_tail(market: Market) -> None:
    """Seeding on a long history reads its last required_bars(), like inputs_for_latest."""
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need + 500, market.price, seed=5)
    features = IncrementalFeatures.seed(bars, spec)
    assert_inputs_equal(features.inputs(), inputs_for_latest(bars, spec))
    np.testing.assert_allclose(
        features.raw_features(),
        compute_features(bars).iloc[-1].to_numpy(),
        rtol=RTOL,
        atol=ATOL,
    )


def test_corrected_bar_falls_back_to_seed(market: Market) -> None:
    """The engine's path for a corrected last bar: last_bar shows the difference, seed() again on
    the corrected history, carry on updating."""
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need + 60, market.price, seed=8)
    t = need + 40
    features = IncrementalFeatures.seed(bars.iloc[:need], spec)
    feed(features, bars.iloc[need:t])
    corrected = bars.iloc[:t].copy()
    last = corrected.index[-1]
    corrected.loc[last, "close"] *= 1.003
    corrected.loc[last, "high"] = max(corrected.loc[last, "high"], corrected.loc[last, "close"])
    corrected.loc[last, "volume"] += 17.0
    assert features.last_time == last
    assert features.last_bar == ohlcv(bars, t - 1)
    assert features.last_bar != ohlcv(corrected, -1)  # how a caller spots the correction
    with pytest.raises(ValueError, match="seed"):
        features.update(last, *ohlcv(corrected, -1))

    features = IncrementalFeatures.seed(corrected, spec)
    assert features.last_bar == ohlcv(corrected, -1)
    assert_matches_batch(features, corrected, spec)
    history = pd.concat([corrected, bars.iloc[t:]])
    for end in range(t, len(history)):
        feed(features, history.iloc[end : end + 1])
        if (end - t) % 4 == 0 or end == len(history) - 1:
            assert_matches_batch(features, history.iloc[: end + 1], spec)


def test_seed_on_too_few_bars_raises(market: Market) -> None:
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need - 1, market.price, seed=1)
    with pytest.raises(NotEnoughHistoryError) as raised:
        IncrementalFeatures.seed(bars, spec)
    assert (raised.value.have, raised.value.need) == (need - 1, need)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_non_finite_window_raises_like_batch(market: Market) -> None:
    """A market that never moved has ATR 0, so every ATR-scaled feature is NaN: no inputs."""
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need, market.price, seed=2)
    bars[["open", "high", "low", "close"]] = 1.25  # dyadic: every SMA of it is exact in both paths
    with pytest.raises(NotEnoughHistoryError):
        inputs_for_latest(bars, spec)
    features = IncrementalFeatures.seed(bars, spec)
    with pytest.raises(NotEnoughHistoryError):
        features.inputs()
    np.testing.assert_allclose(
        features.raw_features(), compute_features(bars).iloc[-1].to_numpy(), rtol=RTOL, atol=ATOL
    )


def test_inputs_shapes_and_no_aliasing(market: Market) -> None:
    """Returned tensors have the model's shapes and stay valid after later bars land (the ring
    is overwritten in place)."""
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need + 5, market.price, seed=4)
    features = IncrementalFeatures.seed(bars.iloc[:need], spec)
    first = features.inputs()
    n = spec.n_features
    assert first.seq.shape == (1, spec.window, n)
    assert first.tab.shape == (1, 2 * n)
    assert first.ctx.shape == (1, len(CONTEXT_FEATURES))
    assert first.seq.flags.c_contiguous
    kept = (first.seq.copy(), first.tab.copy(), first.ctx.copy())
    feed(features, bars.iloc[need:])
    for before, after in zip(kept, (first.seq, first.tab, first.ctx), strict=True):
        np.testing.assert_array_equal(before, after)


def _state_sizes(obj: object, seen: set[int] | None = None) -> list[int]:
    """Lengths of every container reachable from obj's slots: what must not grow per bar."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, deque | list | tuple):
        return [len(obj)] + [s for item in obj for s in _state_sizes(item, seen)]
    if isinstance(obj, np.ndarray):
        return [obj.size]
    sizes: list[int] = []
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                sizes += _state_sizes(getattr(obj, slot), seen)
    return sizes


def test_state_does_not_grow_with_history(market: Market) -> None:
    """O(1) per bar without timing anything: after the seed, 1,000 more bars leave every
    buffer the same size."""
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need + 1_000, market.price, seed=6)
    features = IncrementalFeatures.seed(bars.iloc[:need], spec)
    before = _state_sizes(features)
    feed(features, bars.iloc[need:])
    assert _state_sizes(features) == before
    # The largest buffers: the feature ring, and the baselines' week of 3 measures per bar.
    week = history_bars(Timeframe(spec.timeframe))
    assert max(before) <= max(2 * spec.window * spec.n_features, 3 * week)


def test_update_refuses_an_older_bar(market: Market) -> None:
    spec = market.spec
    need = required_bars(spec)
    bars = random_bars(need, market.price, seed=7)
    features = IncrementalFeatures.seed(bars, spec)
    with pytest.raises(ValueError, match="not after"):
        features.update(bars.index[-2], 1.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        features.update(bars.index[-1] + pd.Timedelta(minutes=5), 1.0, np.nan, 1.0, 1.0, 1.0)
