"""The model card: Markdown tables of models vs baselines, and two plots (reliability, coverage).

Every number comes from the card dict train_all builds (out-of-fold only); the card says in
words where a target is missed, so nobody has to compare numbers to find out.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from export.barriers import card_cells
from export.evaluation import (
    CONFIDENCE_LABELS,
    COVERAGE_TOLERANCE,
    ECE_TARGET,
    MIN_DECILE_TRADES,
    RANGE_MODELS,
    RELIABILITY_TOLERANCE,
    NestedServed,
    OutOfFold,
    reliability,
)
from orchestrator.features.head import BASELINES, NETWORKS, RANGE_BASELINES
from orchestrator.quality.adaptive import PROBABILITY_MEMORY_OUTCOMES

PLOT_NAMES = ("reliability", "coverage")
_SOURCE_WORDS = {NETWORKS: "networks' blend", BASELINES: "baselines' blend"}
SERVED_SKILL_TARGET = -0.005  # issue 23: never worse than the best baseline, within noise


def plot_file(card_file: str, name: str) -> str:
    """MODEL_CARD_1h.md -> MODEL_CARD_1h_reliability.png."""
    return card_file.removesuffix(".md") + f"_{name}.png"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def card_plots(oof: OutOfFold, served: NestedServed, card: dict[str, Any]) -> dict[str, bytes]:
    """Reliability diagram of the three served probabilities; interval coverage per horizon."""
    figure = Figure(figsize=(5.5, 5), dpi=100)
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect")
    rows = np.isfinite(served.p_long)
    scored = np.isfinite(served.confidence)
    for label, p, won in (
        ("P(long wins)", served.p_long[rows], oof.long_won[rows]),
        ("P(short wins)", served.p_short[rows], oof.short_won[rows]),
        ("confidence", served.confidence[scored], oof.won[scored]),
    ):
        table = [r for r in reliability(p, won) if r["count"] >= 20]
        if table:
            axis.plot(
                [r["mean_p"] for r in table],
                [r["observed"] for r in table],
                marker="o",
                label=label,
            )
    axis.set(
        xlabel="predicted probability (calibrated, out of sample)",
        ylabel="observed win rate",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability — {card['timeframe']} {', '.join(card['symbols'])}",
    )
    axis.legend(loc="upper left")
    plots = {"reliability": _png(figure)}

    coverage = card["coverage"]
    horizons = [h for h in card["ranges"]]
    figure = Figure(figsize=(6, 4), dpi=100)
    axis = figure.subplots()
    x = np.arange(len(horizons))
    for offset, side in ((-0.2, "high"), (0.2, "low")):
        axis.bar(x + offset, [coverage[h][side] for h in horizons], width=0.38, label=side)
    level = coverage["level"]
    axis.axhspan(level - COVERAGE_TOLERANCE, level + COVERAGE_TOLERANCE, color="green", alpha=0.15)
    axis.axhline(level, color="green", linewidth=1, label=f"nominal {level:.0%}")
    axis.set(
        xticks=x,
        xticklabels=horizons,
        ylim=(0.5, 1.0),
        ylabel="share of realised values inside",
        title="80 % interval coverage, out of sample",
    )
    axis.legend(loc="lower right")
    plots["coverage"] = _png(figure)
    if "barriers" in card:
        plots["barriers"] = barrier_plot(card)
    return plots


def barrier_plot(card: dict[str, Any]) -> bytes:
    """Reliability of P(take-profit first) and P(stop first), pooled over the cells each source
    serves, per horizon, on the nested rows."""
    tables = card["barriers"]["reliability"]
    figure = Figure(figsize=(9, 4.5), dpi=100)
    axes = figure.subplots(1, 2, sharey=True)
    for axis, source in zip(axes, ("model", "fallback"), strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        for horizon, by_source in tables.items():
            table = [r for r in by_source[source] if r["count"] >= 50]
            if table:
                axis.plot(
                    [r["mean_p"] for r in table],
                    [r["observed"] for r in table],
                    marker="o",
                    label=horizon,
                )
        axis.set(
            xlabel="predicted P(tp first) / P(stop first)",
            xlim=(0, 1),
            ylim=(0, 1),
            title=f"cells served by the {source}",
        )
        axis.legend(loc="upper left")
    axes[0].set_ylabel("observed frequency")
    figure.suptitle(f"Barrier outcomes, out of sample — {card['timeframe']}")
    return _png(figure)


def _f(value: float, digits: int = 3) -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _bar_span(counts: int | list[int]) -> str:
    """ "6 bars", or "276–288 bars" where the symbols' sessions differ."""
    low, high = (counts, counts) if isinstance(counts, int) else (min(counts), max(counts))
    text = str(low) if low == high else f"{low}–{high}"
    return f"{text} bar{'s' if high > 1 else ''}"


def _range_section(card: dict[str, Any]) -> list[str]:
    names = [*RANGE_MODELS, *RANGE_BASELINES]
    lines = [
        "## Range forecasts vs baselines",
        "",
        "MSE in ATR² (lower is better) on the folds the served ensemble is scored on; skill = "
        "1 − MSE / MSE of the best baseline, mean over folds with a 95 % interval.",
        "",
        "| horizon | " + " | ".join(names) + " | best baseline | served skill [95 % CI] |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    missed = []
    bars = card.get("horizon_bars", {})
    for horizon, entry in card["ranges"].items():
        scores, skill = entry["scores"], entry["served_skill"]
        cells = [_f(scores[n]["mse"], 4) if n in scores else "—" for n in names]
        span = f" ({_bar_span(bars[horizon])})" if horizon in bars else ""
        lines.append(
            f"| {horizon}{span} | "
            + " | ".join(cells)
            + f" | {entry['best_baseline']} | {_f(skill['mean'])} "
            f"[{_f(skill['low'])}, {_f(skill['high'])}] |"
        )
        if skill["mean"] < SERVED_SKILL_TARGET:
            missed.append(f"{horizon} (skill {skill['mean']:+.3f})")
    lines += [
        "",
        "| horizon | " + " | ".join(f"{n} R² / QLIKE" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for horizon, entry in card["ranges"].items():
        scores = entry["scores"]
        lines.append(
            f"| {horizon} | "
            + " | ".join(
                f"{_f(scores[n]['r2'])} / {_f(scores[n]['qlike'])}" if n in scores else "—"
                for n in names
            )
            + " |"
        )
    lines.append("")
    if missed:
        lines.append(
            f"**Missed** (target: served skill ≥ {SERVED_SKILL_TARGET} at every horizon, i.e. "
            "never worse than the best baseline): " + ", ".join(missed) + "."
        )
    else:
        lines.append(
            f"The served ranges are within {abs(SERVED_SKILL_TARGET)} of the best baseline or "
            "better at every horizon (the gate serves a baseline where the networks do not beat "
            "it)."
        )
    return lines


def _coverage_section(card: dict[str, Any], plot_prefix: str) -> list[str]:
    coverage = card["coverage"]
    adaptive = card.get("coverage_adaptive")
    level = coverage["level"]
    extra = " adaptive high | adaptive low |" if adaptive is not None else ""
    lines = [
        "",
        f"## {level:.0%} intervals",
        "",
        f"Coverage out of sample ({coverage['rows']} rows; target {level:.0%} ± "
        f"{COVERAGE_TOLERANCE:.0%}):",
        "",
        "| horizon | high | low |" + extra,
        "|---|---|---|" + ("---|---|" if adaptive is not None else ""),
    ]
    for horizon in card["ranges"]:
        row = f"| {horizon} | {coverage[horizon]['high']:.3f} | {coverage[horizon]['low']:.3f} |"
        if adaptive is not None:
            row += f" {adaptive[horizon]['high']:.3f} | {adaptive[horizon]['low']:.3f} |"
        lines.append(row)
    if adaptive is not None:
        lines += [
            "",
            "Served live: the **adaptive** intervals (adaptive conformal inference, step "
            f"{adaptive['rate']}): each resolved outcome moves the level of its column, so a run "
            "of misses widens the interval. The adaptive columns replay the test folds in time "
            "order, each outcome arriving its horizon's bars late, as live; the first two keep "
            "the level fixed.",
        ]
    lines += ["", f"![coverage]({plot_file(plot_prefix, 'coverage')})", ""]
    served = adaptive if adaptive is not None else coverage
    if not served["within_tolerance"]:
        lines.append(
            "**Missed:** some horizon's served coverage is outside the ±3-point band (table above)."
        )
    return lines


def _probability_section(card: dict[str, Any], plot_prefix: str) -> list[str]:
    probabilities = card["probabilities"]
    adaptive = card.get("probabilities_adaptive", {})
    lines = [
        "",
        "## Probabilities (calibrated out of sample)",
        "",
        "| output | rows | AUC | log-loss | Brier skill vs base rate | ECE | ECE, shifted live "
        "(served) | baselines (AUC / Brier skill) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missed = []
    if "confidence" not in probabilities:
        missed.append("the calibrated confidence is not scored (it needs 3 or more folds)")
    served_keys = ("long", "short", "confidence")
    for key in (*served_keys, *(f"confidence_{name}" for name in CONFIDENCE_LABELS)):
        entry = probabilities.get(key)
        if entry is None:
            continue
        baselines = "; ".join(
            f"{name} {_f(b['auc'])} / {_f(b['brier_skill'])}"
            for name, b in entry["baselines"].items()
        )
        live = adaptive.get(key) if key in served_keys else None
        lines.append(
            f"| {entry['name']} | {entry['rows']} | {_f(entry['auc'])} | {_f(entry['log_loss'])} | "
            f"{_f(entry['brier_skill'])} | {_f(entry['ece'])} | "
            f"{'—' if live is None else _f(live['ece'])} | {baselines} |"
        )
        if key not in served_keys:
            continue  # a candidate shown for comparison; its misses are not the served numbers'
        scored = live or entry  # what is served live is what must meet the targets
        if scored["ece"] > ECE_TARGET:
            missed.append(f"{entry['name']} ECE {scored['ece']:.3f} > {ECE_TARGET}")
        for row in scored["reliability"]:
            if not row["within_tolerance"]:
                missed.append(
                    f"{entry['name']} decile {row['bin']} off by "
                    f"{row['observed'] - row['mean_p']:+.3f} over {row['count']} trades"
                )
    if "confidence_vs_classifier_gap" in probabilities:
        lines += [
            "",
            "The served confidence maps "
            f"{CONFIDENCE_LABELS[probabilities['confidence_source']]}'s score: of the two "
            "candidates above it had the lower out-of-sample Brier score.",
            "",
            "Mean |confidence − P(win) of the chosen side|: "
            f"{probabilities['confidence_vs_classifier_gap']:.3f} (both estimate the same event).",
        ]
    if adaptive:
        rate = next(iter(adaptive.values()))["rate"]
        lines += [
            "",
            "Served live: each probability **shifted by its resolved outcomes** (step "
            f"{rate:.5f} per outcome: the win rate of about {PROBABILITY_MEMORY_OUTCOMES} "
            "independent labels), so a win rate that drifts from the folds' is followed. The "
            "shifted column replays the test folds in time order, each outcome arriving its "
            "label's bars late; the targets below are checked on it.",
        ]
    lines += ["", f"![reliability]({plot_file(plot_prefix, 'reliability')})", ""]
    if missed:
        lines.append(
            f"**Missed** (target: ECE ≤ {ECE_TARGET}, every decile with ≥ {MIN_DECILE_TRADES} "
            f"trades within ±{RELIABILITY_TOLERANCE:.0%}): " + "; ".join(missed) + "."
        )
    else:
        lines.append("Calibration targets met.")
    return lines


def _gate_section(card: dict[str, Any]) -> list[str]:
    gate = card.get("gate")
    if gate is None:
        return []
    lines = [
        "",
        "## What is served: the gate",
        "",
        "Fixed before training (export/gate.py): an output serves the model only when a one-sided "
        f"Diebold–Mariano test (Newey–West variance, 2 lags per label bar) rejects at "
        f"{gate['alpha']} that its loss is not lower than the reference's on the nested "
        "out-of-sample rows (ranges: squared error, and mean QLIKE not higher; probabilities: "
        "Brier against the base rate). Otherwise the reference is served. The reference of a "
        "range output is the baselines' blend: a convex blend of HAR, log-HAR, HAR on "
        "Garman–Klass and the seasonal profile, fitted on the earlier folds.",
        "",
        "| output | served | tested against | skill | p-value | rows |",
        "|---|---|---|---|---|---|",
    ]
    horizons = list(card["ranges"])
    for j, decision in enumerate(gate["ranges"]):
        output = f"{horizons[j // 2]} {'high' if j % 2 == 0 else 'low'}"
        served = _SOURCE_WORDS.get(decision["served"], decision["served"])
        against = _SOURCE_WORDS.get(decision["baseline"], decision["baseline"])
        lines.append(
            f"| {output} | {served} | {against} | {_f(decision['skill'])} | "
            f"{_f(decision['p_value'])} | {decision['rows']} |"
        )
    for name, decision in gate["probabilities"].items():
        lines.append(
            f"| {name} | {decision['served']} | base rate "
            f"{gate['base_rates'][name]:.3f} | {_f(decision['skill'])} | "
            f"{_f(decision['p_value'])} | {decision['rows']} |"
        )
    served_networks = sum(d["served"] == NETWORKS for d in gate["ranges"])
    lines += [
        "",
        f"{served_networks} of {len(gate['ranges'])} range outputs serve the networks' blend; "
        "the rest serve the baselines' blend. Skill is 1 − model loss / reference loss on the "
        "tested rows.",
    ]
    return lines


def _worst_ece(cells: list[dict[str, Any]]) -> float:
    return max((max(c["ece_tp"], c["ece_sl"]) for c in cells), default=math.nan)


def _barrier_section(card: dict[str, Any], plot_prefix: str) -> list[str]:
    barriers = card.get("barriers")
    if barriers is None:
        return []
    head = barriers["head"]
    lines = [
        "",
        "## Your own take-profit and stop: the barrier model",
        "",
        "P(take-profit first), P(stop first) and P(neither) for any levels come from one path "
        "model (orchestrator/features/barriers.py): the fallback is a driftless Brownian motion "
        "with the served volatility; the model adds a drift read from the served numbers, a "
        "volatility scale and a volatility mixture, fitted on the earlier folds. A cell (side, "
        "horizon, take-profit, stop in ATR) serves the model only where a one-sided "
        f"Diebold–Mariano test finds its Brier loss below the fallback's at {barriers['alpha']} "
        f"*and* its P(take-profit first) and P(stop first) have ECE <= {barriers['ece_target']} "
        "on the nested rows; elsewhere the fallback answers. Skill is 1 − Brier / fallback "
        "Brier (three outcomes); nested: each fold served what the gate on the folds before "
        "chose.",
        "",
        "| horizon | drift slopes (asymmetry, P(long)−P(short)) | vol scale | vol dispersion "
        "| cells served by the model | model skill range | ECE of served model cells (max) "
        "| ECE of the fallback (max) | nested served skill (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    all_cells = card_cells(barriers)
    horizons = list(dict.fromkeys(c["horizon"] for c in all_cells))
    for k, name in enumerate(horizons):
        cells = [c for c in all_cells if c["horizon"] == name]
        model = [c for c in cells if c["served"] == "model"]
        fallback = [c for c in cells if c["served"] != "model"]
        slopes = head["drift_coef"][k]
        lines.append(
            f"| {name} | {slopes[1]:+.2f}, {slopes[2]:+.2f} | "
            f"{math.exp(head['log_scale'][k]):.2f} | {head['dispersion'][k]:.2f} | "
            f"{len(model)} of {len(cells)} | {min(c['model_skill'] for c in cells):+.3f} … "
            f"{max(c['model_skill'] for c in cells):+.3f} | {_f(_worst_ece(model))} | "
            f"{_f(_worst_ece(fallback))} | {min(c['served_skill'] for c in cells):+.3f} |"
        )
    lines += [
        "",
        "Per cell, the long side (rows: take-profit, columns: stop, in ATR; M: the model "
        "answers, with its skill; f: the fallback):",
        "",
    ]
    tp_grid, sl_grid = head["tp_grid"], head["sl_grid"]
    for name in horizons:
        lines += [
            f"{name}:",
            "",
            "| TP \\ SL | " + " | ".join(f"{v:g}" for v in sl_grid) + " |",
            "|---|" + "---|" * len(sl_grid),
        ]
        for tp in tp_grid:
            row = []
            for sl in sl_grid:
                cell = next(
                    c
                    for c in all_cells
                    if c["horizon"] == name
                    and c["side"] == "long"
                    and c["tp_atr"] == tp
                    and c["sl_atr"] == sl
                )
                mark = "M" if cell["served"] == "model" else "f"
                row.append(f"{mark} {cell['model_skill']:+.3f}")
            lines.append(f"| {tp:g} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append(f"![barrier reliability]({plot_file(plot_prefix, 'barriers')})")
    return lines


def render_card(card: dict[str, Any], version: int, card_file: str) -> str:
    bars = ", ".join(f"{s} {n}" for s, n in card["bars"].items())
    lines = [
        f"# Model card — {card['timeframe']} version {version}",
        "",
        f"- Data: {card['source']}; {bars} bars, {card['data_from']} → {card['data_to']}; "
        f"{card['samples']} samples.",
        f"- Evaluation: {card['folds']} expanding walk-forward folds over the last half; "
        f"purge {card['purge']}; embargo: {card['embargo']}.",
        "- The served ensemble is scored nested: its head is fitted on the folds before the one it "
        "is scored on (see docs/models.md).",
        "",
        *_range_section(card),
        *_gate_section(card),
        *_coverage_section(card, card_file),
        *_probability_section(card, card_file),
        *_barrier_section(card, card_file),
    ]
    return "\n".join(lines) + "\n"
