"""Synthetic data has the properties the rest of the system relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.demo.generator import generate_bars, generate_market
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
