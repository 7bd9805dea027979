"""The model card as written beside each exported version: every section, the plots, and a
**Missed:** line wherever a target is missed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from export.__main__ import rewrite_cards
from export.card import card_plots, plot_file, render_card
from export.evaluation import (
    OutOfFold,
    classifier_report,
    coverage_report,
    nested_served,
    range_report,
)
from tests.export.test_evaluation import HORIZONS, LAGS, _out_of_fold

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _card(oof: OutOfFold, horizon_bars: dict[str, int | list[int]]) -> tuple[dict[str, Any], Any]:
    served = nested_served(oof, LAGS)
    card = {
        "samples": len(oof.fold),
        "folds": int(oof.fold.max()) + 1,
        "purge": "120 h",
        "embargo": "none needed",
        "data_from": "2019-01-01",
        "data_to": "2019-12-31",
        "symbols": ["SPX", "IXIC"],
        "bars": {"SPX": 5031, "IXIC": 5031},
        "source": "make real-data — SPX: S&P 500 index, daily (arch 8.0.0, NCSA)",
        "timeframe": "1d",
        "horizon_bars": horizon_bars,
        "ranges": range_report(oof, served, HORIZONS),
        "coverage": coverage_report(oof, served, HORIZONS),
        "probabilities": classifier_report(oof, served),
    }
    return card, served


def test_the_card_shows_every_section_and_names_the_served_confidence() -> None:
    oof = _out_of_fold(meta_knows_nothing=True)
    card, served = _card(oof, {"scalping": [1], "intraday": [23, 24]})
    text = render_card(card, version=3, card_file="MODEL_CARD_1d.md")
    assert text.startswith("# Model card — 1d version 3\n")
    assert "- Data: make real-data — SPX: S&P 500 index, daily (arch 8.0.0, NCSA); " in text
    assert "SPX 5031, IXIC 5031 bars" in text
    assert "| scalping (1 bar) |" in text
    assert "| intraday (23–24 bars) |" in text  # the symbols' sessions differ
    assert "![coverage](MODEL_CARD_1d_coverage.png)" in text
    assert "![reliability](MODEL_CARD_1d_reliability.png)" in text
    assert "| confidence from the chosen side's classifier, calibrated — chosen |" in text
    assert "| confidence from the metamodel, calibrated — not chosen |" in text
    assert "The served confidence maps the chosen side's classifier's score" in text
    # HAR drives the ranges and the networks know nothing: the served ranges equal HAR, whose
    # skill over itself is ~0 either side: only a horizon below the -0.005 target is missed.
    for horizon in HORIZONS:
        skill = card["ranges"][horizon]["served_skill"]["mean"]
        assert (f"{horizon} (skill {skill:+.3f})" in text) == (skill < -0.005)
    plots = card_plots(oof, served, card)
    assert set(plots) == {"reliability", "coverage"}
    assert all(png.startswith(PNG_MAGIC) and len(png) > 10_000 for png in plots.values())
    assert plot_file("MODEL_CARD_1d.md", "coverage") == "MODEL_CARD_1d_coverage.png"


def test_missed_coverage_and_calibration_are_written_plainly() -> None:
    oof = _out_of_fold()
    card, _ = _card(oof, {"scalping": 6, "intraday": 48})
    card["coverage"]["scalping"]["high"] = 0.86
    card["coverage"]["within_tolerance"] = False
    card["probabilities"]["long"]["ece"] = 0.041
    text = render_card(card, version=1, card_file="MODEL_CARD.md")
    assert "| scalping (6 bars) |" in text
    assert "same number of bars" not in text
    assert "**Missed:** some horizon's served coverage is outside the ±3-point band" in text
    assert "P(long wins) ECE 0.041 > 0.03" in text
    assert np.isfinite(card["ranges"]["intraday"]["served_skill"]["low"])


def test_cards_are_rewritten_from_the_newest_version_without_training(tmp_path: Path) -> None:
    card, _ = _card(_out_of_fold(), {"scalping": 6, "intraday": 48})
    card["timeframe"] = "5m"
    for version in (1, 3):
        folder = tmp_path / "cpu" / "range_gru" / str(version)
        folder.mkdir(parents=True)
        (folder / "model_card.json").write_text(json.dumps(card, default=float))
    assert rewrite_cards(tmp_path) == 0
    assert (
        (tmp_path / "cpu" / "MODEL_CARD.md").read_text().startswith("# Model card — 5m version 3\n")
    )
