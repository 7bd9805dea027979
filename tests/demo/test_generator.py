"""Synthetic data has the properties the rest of the system relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.demo.generator import generate_bars, generate_market
from orchestrator.features.targets import range_targets
from orchestrator.ingest.pipeline import IngestOptions, prepare
from orchestrator.ingest.validate import validate_bars


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    a = generate_bars("BTCUSD", days=5, seed=3)
    b = generate_bars("BTCUSD", days=5, seed=3)
    c = generate_bars("BTCUSD", days=5, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["close"].equals(c["close"])


def test_seed_dataset_size() -> None:
    bars = generate_bars("BTCUSD", bars=215_699)
    assert len(bars) == 215_699
    assert bars.index.is_monotonic_increasing
    assert bars.index.is_unique
    assert (np.diff(bars.index.asi8) == 300 * 10**9).all()  # 24/7: no gaps


def test_calendars() -> None:
    eur = generate_bars("EURUSD", days=14)
    assert not ((eur.index.dayofweek == 5).any())  # closed on Saturdays
    assert not ((eur.index.dayofweek == 6) & (eur.index.hour < 22)).any()
    gold = generate_bars("XAUUSD", days=14)
    assert not (gold.index.hour == 21).any()  # daily break


def test_stylised_facts() -> None:
    bars = generate_bars("BTCUSD", days=120)
    returns = np.log(bars["close"]).diff().dropna()
    assert returns.kurt() > 3  # fat tails (excess kurtosis of a normal is 0)
    assert returns.abs().autocorr(1) > 0.1  # volatility clustering
    by_hour = returns.abs().groupby(returns.index.hour).mean()
    assert by_hour.max() / by_hour.min() > 1.3  # intraday seasonality


def test_every_generated_row_passes_ingestion_validation() -> None:
    frame = generate_market(["BTCUSD", "EURUSD", "XAUUSD"], days=10)
    raw = frame.assign(line=range(1, len(frame) + 1), raw_ts=frame["ts"].astype(str))
    prepared, _ = prepare(raw, IngestOptions(), "demo")
    accepted, rejected = validate_bars(prepared)
    assert rejected.empty
    assert len(accepted) == len(frame)


def test_a_session_market_trades_in_its_session_only_with_gaps_and_a_u_shaped_profile() -> None:
    bars = generate_bars("ESDEMO", days=60, seed=2)
    index = pd.DatetimeIndex(bars.index)
    minutes = index.hour * 60 + index.minute
    assert (index.dayofweek < 5).all()
    assert minutes.min() == 14 * 60 + 30
    assert minutes.max() == 20 * 60 + 55
    assert (bars.groupby(index.date).size() == 78).all()  # 6.5 hours of 5-minute bars a day
    # Each session opens away from the last close (an overnight gap), within a session it
    # does not.
    first = np.flatnonzero(np.diff(index.asi8, prepend=0) > 5 * 60 * 10**9)[1:]
    jumps = np.abs(bars.open.to_numpy()[first] - bars.close.to_numpy()[first - 1])
    inside = np.abs(bars.open.to_numpy()[1:] - bars.close.to_numpy()[:-1])
    assert np.median(jumps) > 5 * np.median(inside)
    # U-shaped: the first and last hours of the session range more than midday.
    hour_range = ((bars.high - bars.low) / bars.close).groupby(index.hour).mean()
    assert hour_range[14] > 1.5 * hour_range[17]
    assert hour_range[20] > 1.3 * hour_range[17]


def test_horizons_on_a_session_market_never_count_closed_hours() -> None:
    """A range target over h bars reads the next h *trading* bars: the last bar of a session
    looks at the first bars of the next session, not at the closed night."""
    bars = generate_bars("ESDEMO", days=20, seed=4)
    atr = np.ones(len(bars))
    targets = range_targets(bars, atr, [6])
    index = pd.DatetimeIndex(bars.index)
    last = int(np.flatnonzero(index.date != np.roll(index.date, -1))[0])  # a session's last bar
    next_session = bars.iloc[last + 1 : last + 7]
    assert (pd.DatetimeIndex(next_session.index).date > index[last].date()).all()
    expected = next_session.high.max() - bars.close.iloc[last]
    assert targets[last, 0] == expected
