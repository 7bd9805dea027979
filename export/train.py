"""Walk-forward training of the range models, the TP/SL classifiers and the metamodel.

Splits are time-ordered with a purge gap: a training sample's label window (up to the longest
horizon) must end before its test block starts, so no label peeks into the test period.
The model card reports out-of-fold metrics only, next to simple baselines scored on the same
folds (export/baselines.py, export/evaluation.py); the serving head that stacks networks and
baselines, sets the intervals and calibrates the probabilities is fitted on the out-of-fold rows.
The exported models are then refitted on all samples, with normalisation statistics fitted on
those training rows alone.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm import tqdm

from export.barriers import BarrierRows, fit_barrier_head
from export.baselines import (
    INTERVAL_LEVEL,
    BaselineFit,
    fit_baseline_stack,
    fit_blend,
    fit_calibration,
    fit_har_logistic,
    fit_interval_quantiles,
    fit_interval_ratios,
    har_logistic_proba,
)
from export.card import card_plots
from export.config import TrainConfig as TrainConfig  # where it lived: importers keep working
from export.evaluation import (
    Lags,
    NestedServed,
    OutOfFold,
    adaptive_coverage,
    adaptive_probabilities,
    classifier_report,
    coverage_report,
    gate_decisions,
    nested_served,
    range_report,
)
from export.evidence import ChallengerRows, challenger_rows
from export.gate import GATE_ALPHA, GateDecision
from export.networks import GRURange, MetaModel, TransformerRange
from orchestrator.features.barriers import SL_GRID_ATR, TP_GRID_ATR
from orchestrator.features.baseline import BASELINE_VERSION, baseline_features, season_cells
from orchestrator.features.dataset import (
    F32,
    context_vectors,
    fit_normalisation,
    normalise,
    sequence_windows,
    tabular_vectors,
)
from orchestrator.features.head import (
    BASE_RATE,
    NETWORKS,
    Calibration,
    ServingHead,
    stack_ranges,
)
from orchestrator.features.horizons import HORIZONS, horizon_bars
from orchestrator.features.indicators import FEATURE_NAMES, PARAMS, compute_features
from orchestrator.features.spec import (
    CLIP_Z,
    CONTEXT_FEATURES,
    PIPELINE_VERSION,
    SEQUENCE_WINDOW,
    FeatureSpec,
    pipeline_fingerprint,
)
from orchestrator.features.targets import barrier_outcomes, range_targets, triple_barrier
from orchestrator.marketdata.sessions import infer_week
from orchestrator.quality.adaptive import ADAPTIVE_RATE, probability_rate

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class SymbolData:
    symbol: str
    bars: pd.DataFrame
    features: pd.DataFrame
    ranges: F32
    long_label: npt.NDArray[np.float64]
    short_label: npt.NDArray[np.float64]
    har: npt.NDArray[np.float64]  # (T, 10) the baselines' inputs (BASELINE_INPUTS)
    season: I64  # (T,) (day of week, hour) cell
    label_span: int = 0  # bars after a row that its longest label reads
    # Bars of each horizon on this symbol's calendar (its sessions, derived from its bars).
    horizon_bars: list[int] = field(default_factory=list)
    # (T, sides, H, tp, sl) barrier outcome codes on the grid (features/targets.py).
    barriers: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros((0,), np.int8))


@dataclass
class Samples:
    symbol: I64  # index into the SymbolData list
    end: I64  # row of the window's last bar
    ts: I64  # that bar's open time, ns
    label_ts: I64  # open time of the last bar any of its labels reads, ns (the purge's measure)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Samples:
        return Samples(self.symbol[mask], self.end[mask], self.ts[mask], self.label_ts[mask])

    def __len__(self) -> int:
        return int(self.end.size)


@dataclass
class Inputs:
    seq: F32
    tab: F32
    ctx: F32
    ranges: F32
    long_label: F32
    short_label: F32


@dataclass
class TrainedModels:
    spec: FeatureSpec
    gru: GRURange
    transformer: TransformerRange
    xgb_long: xgb.Booster
    xgb_short: xgb.Booster
    meta: MetaModel
    card: dict[str, object] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)  # PNG per name, beside the card
    oof: OutOfFold | None = None  # every fold's test rows, to re-fit or study the head offline
    evidence: ChallengerRows | None = None  # what the nested folds served: the promotion test's


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The training configuration as JSON-friendly values (enums by value)."""
    return {k: (v.value if hasattr(v, "value") else v) for k, v in cfg.__dict__.items()}


def prepare_symbol(symbol: str, bars: pd.DataFrame, cfg: TrainConfig) -> SymbolData:
    """Features, labels and baseline inputs of one symbol; its horizons count its own sessions
    (features/horizons.py), so "swing" is one trading day on every market."""
    features = compute_features(bars)
    atr = features["atr"].to_numpy(np.float64)
    week = infer_week(pd.DatetimeIndex(bars.index), cfg.timeframe)
    counts = horizon_bars(cfg.timeframe, week.session_bars)
    label_bars = counts[HORIZONS.index(cfg.label_horizon)]
    return SymbolData(
        symbol,
        bars,
        features,
        range_targets(bars, atr, counts).astype(np.float32),
        triple_barrier(bars, atr, label_bars, cfg.tp_atr, cfg.sl_atr, +1),
        triple_barrier(bars, atr, label_bars, cfg.tp_atr, cfg.sl_atr, -1),
        baseline_features(bars, atr, cfg.timeframe),
        season_cells(pd.DatetimeIndex(bars.index)),
        max(counts),
        counts,
        barrier_outcomes(bars, atr, counts, TP_GRID_ATR, SL_GRID_ATR),
    )


def collect_samples(data: list[SymbolData]) -> Samples:
    """Every bar whose full window of features and every target are known, in time order."""
    symbols, ends, stamps, label_stamps = [], [], [], []
    for index, item in enumerate(data):
        finite = np.isfinite(item.features[list(FEATURE_NAMES)].to_numpy()).all(axis=1)
        run = np.convolve(finite.astype(np.int64), np.ones(SEQUENCE_WINDOW, np.int64), "full")
        window_ok = run[: finite.size] == SEQUENCE_WINDOW
        ok = (
            window_ok
            & np.isfinite(item.ranges).all(axis=1)
            & np.isfinite(item.long_label)
            & np.isfinite(item.short_label)
            & np.isfinite(item.har).all(axis=1)
        )
        rows = np.flatnonzero(ok)
        times = pd.DatetimeIndex(item.bars.index).asi8
        symbols.append(np.full(rows.size, index, np.int64))
        ends.append(rows.astype(np.int64))
        stamps.append(times[rows])
        # Every target of a kept row is known, so its longest label's last bar exists.
        label_stamps.append(times[np.minimum(rows + item.label_span, times.size - 1)])
    order = np.argsort(np.concatenate(stamps), kind="stable")
    return Samples(
        np.concatenate(symbols)[order],
        np.concatenate(ends)[order],
        np.concatenate(stamps)[order],
        np.concatenate(label_stamps)[order],
    )


def make_spec(data: list[SymbolData], train: Samples, cfg: TrainConfig) -> FeatureSpec:
    rows = pd.concat(
        [data[s].features.iloc[train.end[train.symbol == s]] for s in np.unique(train.symbol)]
    )
    mean, std = fit_normalisation(rows)
    return spec_from_stats(mean, std, cfg)


def spec_from_stats(mean: list[float], std: list[float], cfg: TrainConfig) -> FeatureSpec:
    """The feature spec for this pipeline with the given normalisation statistics."""
    return FeatureSpec(
        pipeline_version=PIPELINE_VERSION,
        fingerprint=pipeline_fingerprint(cfg.timeframe.value),
        timeframe=cfg.timeframe.value,
        window=SEQUENCE_WINDOW,
        feature_names=list(FEATURE_NAMES),
        context_features=list(CONTEXT_FEATURES),
        params={k: float(v) for k, v in PARAMS.items()},
        mean=mean,
        std=std,
        clip_z=CLIP_Z,
        horizons=[h.value for h in HORIZONS],
        horizon_bars=horizon_bars(cfg.timeframe),
        tp_atr=cfg.tp_atr,
        sl_atr=cfg.sl_atr,
        label_horizon=cfg.label_horizon.value,
        horizons_in_sessions=True,
    )


def build_inputs(data: list[SymbolData], samples: Samples, spec: FeatureSpec) -> Inputs:
    parts: list[tuple[F32, F32, F32, F32, F32, F32]] = []
    order = []
    for s in np.unique(samples.symbol):
        mask = samples.symbol == s
        ends = samples.end[mask]
        item = data[int(s)]
        z = normalise(item.features, spec)
        parts.append(
            (
                sequence_windows(z, ends),
                tabular_vectors(z, ends),
                context_vectors(z, ends),
                item.ranges[ends],
                item.long_label[ends].astype(np.float32),
                item.short_label[ends].astype(np.float32),
            )
        )
        order.append(np.flatnonzero(mask))
    back = np.argsort(np.concatenate(order), kind="stable")
    stacked = [np.concatenate([p[k] for p in parts])[back] for k in range(6)]
    return Inputs(*stacked)


def _batches(n: int, size: int, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    perm = rng.permutation(n)
    return [perm[i : i + size] for i in range(0, n, size)]


def train_range_model(
    model: nn.Module, seq: F32, y: F32, cfg: TrainConfig, label: str
) -> nn.Module:
    """Adam on scale-balanced MSE; early stopping on the newest 15% of the training samples."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    split = int(len(seq) * 0.85)
    x_train = torch.from_numpy(seq[: split : cfg.stride])
    y_train = torch.from_numpy(y[: split : cfg.stride])
    x_val, y_val = torch.from_numpy(seq[split:]), torch.from_numpy(y[split:])
    scale = torch.from_numpy(np.maximum(y[:split].std(axis=0), 1e-3))
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    best, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    progress = tqdm(
        range(cfg.epochs), desc=f"train {label}", disable=not cfg.show_progress, leave=False
    )
    for _ in progress:
        model.train()
        for idx in _batches(len(x_train), cfg.batch_size, rng):
            optimiser.zero_grad()
            loss = (((model(x_train[idx]) - y_train[idx]) / scale) ** 2).mean()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        model.eval()
        with torch.no_grad():
            val = float((((predict(model, x_val) - y_val) / scale) ** 2).mean())
        progress.set_postfix(val_loss=f"{val:.4f}")
        if val < best - 1e-4:
            best, best_state, stale = val, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model


def predict(model: nn.Module, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    with torch.no_grad():
        return (
            torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
            if len(x)
            else torch.zeros(0)
        )


def train_classifier(tab: F32, y: F32, cfg: TrainConfig) -> xgb.Booster:
    split = int(len(tab) * 0.85)
    classifier = xgb.XGBClassifier(
        n_estimators=cfg.xgb_rounds,
        max_depth=4,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=5,
        tree_method="hist",
        n_jobs=cfg.threads,
        random_state=cfg.seed,
        early_stopping_rounds=30,
        eval_metric="logloss",
    )
    classifier.fit(tab[:split], y[:split], eval_set=[(tab[split:], y[split:])], verbose=False)
    booster = classifier.get_booster()
    best = classifier.best_iteration
    return booster[: best + 1] if best is not None else booster


def classifier_proba(booster: xgb.Booster, tab: F32) -> F32:
    positive = booster.inplace_predict(tab).astype(np.float32).reshape(-1)
    return np.stack([1 - positive, positive], axis=1)


def _meta_inputs(gru: F32, tf: F32, p_long: F32, p_short: F32, ctx: F32) -> tuple[F32, F32]:
    x, direction = MetaModel.assemble(
        *(torch.from_numpy(a) for a in (gru, tf, p_long, p_short, ctx))
    )
    return x.numpy(), direction.numpy()[:, 0]


def fit_metamodel(x: F32, won: F32, n_range: int, n_context: int) -> MetaModel:
    mean, std = x.mean(axis=0), np.where(x.std(axis=0) < 1e-9, 1.0, x.std(axis=0))
    regression = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, won)
    meta = MetaModel(n_range, n_context)
    with torch.no_grad():
        meta.linear.weight.copy_(torch.from_numpy(regression.coef_.astype(np.float32)))
        meta.linear.bias.copy_(torch.from_numpy(regression.intercept_.astype(np.float32)))
        meta.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        meta.std.copy_(torch.from_numpy(std.astype(np.float32)))
    return meta.eval()


def fit_base_models(
    data: list[SymbolData], train: Samples, cfg: TrainConfig
) -> tuple[FeatureSpec, GRURange, TransformerRange, xgb.Booster, xgb.Booster]:
    spec = make_spec(data, train, cfg)
    inputs = build_inputs(data, train, spec)
    n_out = inputs.ranges.shape[1]
    torch.manual_seed(cfg.seed)
    gru = GRURange(spec.n_features, n_out)
    train_range_model(gru, inputs.seq, inputs.ranges, cfg, "gru")
    torch.manual_seed(cfg.seed)
    transformer = TransformerRange(spec.n_features, n_out, spec.window)
    train_range_model(transformer, inputs.seq, inputs.ranges, cfg, "transformer")
    xgb_long = train_classifier(inputs.tab, inputs.long_label, cfg)
    xgb_short = train_classifier(inputs.tab, inputs.short_label, cfg)
    return spec, gru, transformer, xgb_long, xgb_short


def walk_forward_folds(samples: Samples, cfg: TrainConfig) -> list[tuple[Samples, Samples]]:
    """Expanding-window folds over the last half of the time span, purged by the labels: a
    training row's longest label must have read its last bar before the test block starts.
    Measured on the bars themselves, so a weekend or a night inside a label counts as it falls
    (a fixed 5-day purge let a 1,440-bar FX label that spans a weekend reach into the test)."""
    start, stop = samples.ts.min(), samples.ts.max() + 1
    block = (stop - start) * 0.5 / cfg.folds
    folds = []
    for k in range(cfg.folds):
        test_start = start + (stop - start) * 0.5 + k * block
        test_stop = test_start + block
        train = samples.subset(samples.label_ts < test_start)
        test = samples.subset((samples.ts >= test_start) & (samples.ts < test_stop))
        if len(train) and len(test):
            folds.append((train, test))
    if not folds:
        raise ValueError("not enough history for walk-forward folds; ingest more bars")
    return folds


def _gather(data: list[SymbolData], samples: Samples, name: str) -> npt.NDArray[Any]:
    """Column `name` of the SymbolData rows of `samples`, in the samples' order."""
    out: npt.NDArray[Any] | None = None
    for s in np.unique(samples.symbol):
        mask = samples.symbol == s
        values = getattr(data[int(s)], name)[samples.end[mask]]
        if out is None:
            out = np.empty((len(samples), *values.shape[1:]), values.dtype)
        out[mask] = values
    assert out is not None
    return out


def _row_horizon_bars(data: list[SymbolData], samples: Samples) -> I64:
    """(n, H): each sample's horizons in bars on its own symbol's calendar."""
    table = np.asarray([d.horizon_bars for d in data], np.int64)
    out: I64 = table[samples.symbol]
    return out


def _fold_baselines(
    data: list[SymbolData], train: Samples, test: Samples
) -> dict[str, npt.NDArray[Any]]:
    """The baselines fitted on a fold's training rows, predicting its test rows."""
    y, har, season = (_gather(data, train, k) for k in ("ranges", "har", "season"))
    test_har, test_season = _gather(data, test, "har"), _gather(data, test, "season")
    fit = BaselineFit.fit(har, season, y.astype(np.float64))
    out: dict[str, npt.NDArray[Any]] = dict(fit.predict(test_har, test_season))
    for side in ("long", "short"):
        won = _gather(data, train, f"{side}_label")
        base = float(won.mean())
        out[f"base_{side}"] = np.full(len(test), base)
        out[f"p_{side}_har"] = har_logistic_proba(fit_har_logistic(har, won), test_har, base)
    return out


def _nested_meta(x_meta: F32, won: F32, fold: I64, n_range: int, n_ctx: int) -> F64:
    """Metamodel scores for fold k from a metamodel fitted on folds < k (NaN on fold 0)."""
    scores = np.full(len(won), np.nan)
    for k in range(1, int(fold.max()) + 1):
        before, now = fold < k, fold == k
        if len(np.unique(won[before])) == 2:
            meta = fit_metamodel(x_meta[before], won[before], n_range, n_ctx)
            with torch.no_grad():
                scores[now] = meta.score(torch.from_numpy(x_meta[now])).numpy()[:, 0]
    return scores


def _rounded(table: npt.ArrayLike) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in np.asarray(table)]


def _gated_stack(blend: F64, baselines: F64, decisions: list[GateDecision]) -> F64:
    """The exported stack: per column the networks' blend where the gate serves NETWORKS, else
    the baselines' blend (zero weight on both networks)."""
    return np.stack(
        [
            blend[j] if decision.served == NETWORKS else baselines[j]
            for j, decision in enumerate(decisions)
        ]
    )


def fit_head(
    oof: OutOfFold,
    served: NestedServed,
    lags: Lags,
    data: list[SymbolData],
    samples: Samples,
) -> tuple[ServingHead, dict[str, Any]]:
    """The exported head and the gate's decisions: baselines on every sample, the rest on every
    out-of-fold row, the gate on every nested row (folds >= 1)."""
    y = _gather(data, samples, "ranges").astype(np.float64)
    baselines = BaselineFit.fit(_gather(data, samples, "har"), _gather(data, samples, "season"), y)
    range_gates, probability_gates = gate_decisions(oof, served, lags, oof.fold >= 1)
    baseline_stack = fit_baseline_stack(oof.stack_inputs(), oof.ranges, lags.ranges)
    blend = fit_blend(oof.stack_inputs(), oof.ranges, lags.ranges)
    stack = _gated_stack(blend, baseline_stack, range_gates)
    # Intervals around what each column serves: the stack applied to the out-of-fold inputs.
    oof_served = stack_ranges(stack, oof.stack_inputs())
    ratios = fit_interval_ratios(oof_served, oof.ranges)
    quantiles, floors = fit_interval_quantiles(oof_served, oof.ranges)
    source = served.confidence_source
    confidence_raw = oof.confidence_inputs()[source]
    scored = np.isfinite(confidence_raw)
    calibrations = {
        "p_long": fit_calibration(oof.p_long, oof.long_won),
        "p_short": fit_calibration(oof.p_short, oof.short_won),
        "confidence": fit_calibration(confidence_raw[scored], oof.won[scored]),
    }
    base_rates = {
        "p_long": float(_gather(data, samples, "long_label").mean()),
        "p_short": float(_gather(data, samples, "short_label").mean()),
        "confidence": float(oof.won.mean()),
    }
    for name, decision in probability_gates.items():
        if decision.served == BASE_RATE:
            calibrations[name] = Calibration.constant(base_rates[name])
    head = ServingHead(
        baseline_version=BASELINE_VERSION,
        har_coef=_rounded(baselines.har),
        log_har_coef=_rounded(baselines.log_har),
        log_har_smear=[round(float(v), 6) for v in baselines.log_har_smear],
        gk_coef=_rounded(baselines.har_gk),
        seasonal=_rounded(baselines.seasonal),
        train_mean=[round(float(v), 6) for v in baselines.train_mean],
        stack=_rounded(stack),
        baseline_stack=_rounded(baseline_stack),
        served=[d.served for d in range_gates],
        reference=[d.baseline for d in range_gates],
        interval_level=INTERVAL_LEVEL,
        interval_ratio=_rounded(ratios),
        p_long=calibrations["p_long"],
        p_short=calibrations["p_short"],
        confidence=calibrations["confidence"],
        confidence_source=source,
        probability_served={name: d.served for name, d in probability_gates.items()},
        interval_quantiles=_rounded(quantiles),
        interval_floor=floors,
        adaptive_rate=ADAPTIVE_RATE,
        probability_rate=probability_rate(lags.label, len(data)),
        rate_symbols=len(data),
    )
    gate = {
        "alpha": GATE_ALPHA,
        "ranges": [msgspec.to_builtins(d) for d in range_gates],
        "probabilities": {name: msgspec.to_builtins(d) for name, d in probability_gates.items()},
        "base_rates": base_rates,
    }
    return head, gate


def train_all(data: list[SymbolData], cfg: TrainConfig) -> TrainedModels:
    torch.set_num_threads(cfg.threads)
    samples = collect_samples(data)
    if len(samples) < 2000:
        raise ValueError(
            f"only {len(samples)} usable samples; need at least 2000 (ingest more bars)"
        )
    folds = walk_forward_folds(samples, cfg)
    if len(folds) < 2:
        raise ValueError(
            f"only {len(folds)} walk-forward fold; the served head is judged on folds fitted "
            "on earlier ones and needs at least 2 (3 to judge the calibrated confidence): use "
            "--folds 3 or more, or ingest more bars"
        )
    parts: dict[str, list[npt.NDArray[Any]]] = {}

    def keep(name: str, values: npt.NDArray[Any]) -> None:
        parts.setdefault(name, []).append(values)

    for k, (train, test) in enumerate(
        tqdm(folds, desc="walk-forward", disable=not cfg.show_progress)
    ):
        spec, gru, transformer, xl, xs = fit_base_models(data, train, cfg)
        inputs = build_inputs(data, test, spec)
        seq = torch.from_numpy(inputs.seq)
        keep("gru", predict(gru, seq).numpy())
        keep("transformer", predict(transformer, seq).numpy())
        keep("pl", classifier_proba(xl, inputs.tab))
        keep("ps", classifier_proba(xs, inputs.tab))
        keep("ctx", inputs.ctx)
        keep("ranges", inputs.ranges)
        keep("yl", inputs.long_label)
        keep("ys", inputs.short_label)
        keep("fold", np.full(len(test), k, np.int64))
        keep("ts", test.ts)
        keep("symbol", test.symbol)
        keep("barriers", _gather(data, test, "barriers"))
        keep("horizon_bars", _row_horizon_bars(data, test))
        for name, values in _fold_baselines(data, train, test).items():
            keep(name, values)
    cat = {key: np.concatenate(values) for key, values in parts.items()}
    x_meta, direction = _meta_inputs(
        cat["gru"], cat["transformer"], cat["pl"], cat["ps"], cat["ctx"]
    )
    won = np.where(direction > 0, cat["yl"], cat["ys"]).astype(np.float32)
    n_range, n_ctx = cat["gru"].shape[1], cat["ctx"].shape[1]
    oof = OutOfFold(
        fold=cat["fold"],
        ts=cat["ts"],
        ranges=cat["ranges"].astype(np.float64),
        gru=cat["gru"].astype(np.float64),
        transformer=cat["transformer"].astype(np.float64),
        train_mean=cat["train_mean"],
        seasonal=cat["seasonal"],
        har=cat["har"],
        log_har=cat["log_har"],
        har_gk=cat["har_gk"],
        long_won=cat["yl"].astype(np.float64),
        short_won=cat["ys"].astype(np.float64),
        p_long=cat["pl"][:, 1].astype(np.float64),
        p_short=cat["ps"][:, 1].astype(np.float64),
        p_long_har=cat["p_long_har"],
        p_short_har=cat["p_short_har"],
        base_long=cat["base_long"],
        base_short=cat["base_short"],
        meta=_nested_meta(x_meta, won, cat["fold"], n_range, n_ctx),
        won=won.astype(np.float64),
        direction=direction.astype(np.float64),
        barriers=cat["barriers"],
        horizon_bars=cat["horizon_bars"],
        symbol=cat["symbol"],
    )
    longest = [max(column) for column in zip(*(d.horizon_bars for d in data), strict=True)]
    lags = Lags(
        [b for b in longest for _ in ("high", "low")], longest[HORIZONS.index(cfg.label_horizon)]
    )
    served = nested_served(oof, lags)
    horizons = [h.value for h in HORIZONS]
    card: dict[str, object] = {
        "samples": len(samples),
        "folds": len(folds),
        "fold_ranges": [
            [str(pd.Timestamp(test.ts.min(), tz="UTC")), str(pd.Timestamp(test.ts.max(), tz="UTC"))]
            for _, test in folds
        ],
        "purge": "by the labels: a training row's longest label (its last bar read) ends "
        "before its test block starts, nights and weekends counted as they fall",
        "embargo": "none needed: every training row precedes its test block (expanding window)",
        "data_from": str(pd.Timestamp(samples.ts.min(), tz="UTC")),
        "data_to": str(pd.Timestamp(samples.ts.max(), tz="UTC")),
        "symbols": [d.symbol for d in data],
        "bars": {d.symbol: len(d.bars) for d in data},
        "source": cfg.data_source,
        "timeframe": cfg.timeframe.value,
        "horizon_bars": {
            h.value: sorted({d.horizon_bars[k] for d in data}) for k, h in enumerate(HORIZONS)
        },
        "ranges": range_report(oof, served, horizons),
        "coverage": coverage_report(oof, served, horizons),
        "coverage_adaptive": adaptive_coverage(oof, served, lags, horizons, ADAPTIVE_RATE),
        "probabilities": classifier_report(oof, served),
        "probabilities_adaptive": adaptive_probabilities(
            oof, served, lags, probability_rate(lags.label, len(data))
        ),
        "config": config_dict(cfg),
    }
    head, card["gate"] = fit_head(oof, served, lags, data, samples)
    rows = BarrierRows(
        fold=oof.fold,
        ts=oof.ts,
        ranges=served.ranges,
        p_long=served.p_long,
        p_short=served.p_short,
        outcomes=oof.barriers,
        label_bars=longest,
        bars=oof.horizon_bars.astype(np.float64),
    )
    barrier_head, card["barriers"] = fit_barrier_head(rows, horizons)
    head = msgspec.structs.replace(head, barriers=barrier_head)
    card["fold_gates"] = {str(k): v for k, v in served.fold_gates.items()}
    final_meta = fit_metamodel(x_meta, won, n_range, n_ctx)
    spec, gru, transformer, xl, xs = fit_base_models(data, samples, cfg)
    spec = msgspec.structs.replace(spec, head=head)
    plots = card_plots(oof, served, card)
    evidence = challenger_rows(oof, served, [d.symbol for d in data], longest)
    return TrainedModels(spec, gru, transformer, xl, xs, final_meta, card, plots, oof, evidence)
