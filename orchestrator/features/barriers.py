"""Any take-profit and stop: P(take-profit first), P(stop first), P(neither), expected bars and R.

One model serves every barrier: over a horizon the price path from the entry close, in ATR
units, is a Brownian motion with drift, X_t = m·t + s·W_t for t in [0, 1] of the horizon. The
three outcomes are the first-passage probabilities of that path between the take-profit +a and
the stop -b (short: the mirrored path), in closed form: by the method of images where the
horizon is short against the corridor (the killed density is a sum of Gaussians, the drift
enters by Girsanov's factor, its integrals against exponentials are differences of normal
CDFs), by the sine series of the same density where it is long. Because every barrier reads
the same path, the probabilities sum to 1 and P(take-profit first) falls as the take-profit
moves away and rises as the stop does, for any m and s: consistency and monotonicity by
construction, not by constraint.

- The **fallback** (no skill): driftless, m = 0, with the served volatility, s from the served
  high and low ranges of the horizon (for a Brownian motion E[max] = s·sqrt(2/pi)). Its
  expected R before costs is exactly 0 (optional stopping): it says there is no edge.
- The **model**: the same path with a drift read from what the bar close already served (the
  asymmetry of the served ranges and P(long wins) - P(short wins)), a volatility scale and a
  log-normal mixture of volatilities (PathShape), fitted on out-of-fold barrier outcomes
  (export/barriers.py). A mixture of such paths keeps both guarantees. The gate serves it for a
  barrier cell only where it beat the fallback's Brier score on the nested folds and was
  calibrated there.

Checks bar by bar on a path sampled at n points cross a level later than the continuous path
does; Broadie, Glasserman & Kou (1997) correct this by moving each level out by
0.5826·s/sqrt(n). The served ranges are measured on the bars' highs and lows, which see the
path within a bar, so serving monitors continuously (n = 0); the correction is there for
paths sampled coarsely (tests/features/test_barriers.py samples a few points per bar).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr, ndtr  # type: ignore[import-untyped]

F64 = npt.NDArray[np.float64]

BARRIER_VERSION = 1
BGK_BETA = 0.5826  # -zeta(1/2) / sqrt(2 pi): the discrete-monitoring shift per step's sd
MODEL = "model"
FALLBACK = "fallback"
SIDES: tuple[str, ...] = ("long", "short")
TP_GRID_ATR: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
SL_GRID_ATR: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
MAX_DRIFT_SD = 2.0  # |m| <= 2 s: a drift beyond two standard deviations is not believed
SERIES_SWITCH = 0.6  # s / (a + b): images below, the sine series above
IMAGE_TERMS = 2  # images -2..2: the next is 2·3/0.6 = 10 sd away
EIGEN_TERMS = 6  # the 7th decays as e^(-(7 pi 0.6)^2 / 2) = e^-87
TIME_NODES = 8  # Gauss-Legendre nodes of the expected exit time (within 0.3 % of the horizon)
HALF_PI_SQRT = math.sqrt(math.pi / 2)
UNDERFLOW_SD = -30.0  # Phi(-30) = 5e-198: below it a difference of two Phi may underflow


class BarrierOdds(NamedTuple):
    """Per row: the three outcomes (summing to 1) and the expected bars to exit."""

    p_tp: F64
    p_sl: F64
    p_neither: F64
    expected_bars: F64
    expected_r: F64  # before costs, in R (multiples of the stop distance)


def _log_cdf_difference(lo: F64, hi: F64) -> F64:
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails (-inf where they meet).
    Both ends are moved to the lower tail, where ndtr keeps its relative accuracy, and the
    difference is taken directly (2.3x faster than through log_ndtr, as accurate against
    mpmath); only where ndtr would underflow is it taken in logs."""
    upper = lo > 0  # both in the upper tail: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
    top, bottom = np.where(upper, -lo, hi), np.where(upper, -hi, lo)
    with np.errstate(divide="ignore"):
        out: F64 = np.log(ndtr(top) - ndtr(bottom))
    deep = top < UNDERFLOW_SD
    if deep.any():
        log_top, log_bottom = log_ndtr(top[deep]), log_ndtr(bottom[deep])
        out[deep] = log_top + np.log1p(-np.exp(np.minimum(log_bottom - log_top, 0.0)))
    return out


def _weighted_mass(c: F64, centre: F64, shift: F64, a: F64, b: F64, s: F64) -> F64:
    """e^(c·centre) · P(lo < centre + shift + s·Z < hi) over the corridor (-b, a)."""
    log_mass = _log_cdf_difference((-b - centre - shift) / s, (a - centre - shift) / s)
    out: F64 = np.exp(np.minimum(c * centre + log_mass, 700.0))
    return out


_IMAGES = np.arange(-IMAGE_TERMS, IMAGE_TERMS + 1, dtype=np.float64)[:, None]
_IMAGE_SIGNS = np.repeat([1.0, -1.0], len(_IMAGES))[:, None]  # the two families of images
_MIRROR = np.array([1.0, -1.0])[:, None, None]  # S and J: the drift and its mirror


def _image_sums(a: F64, b: F64, m: F64, s: F64) -> tuple[F64, F64]:
    """(S, J) by the method of images: fast where the horizon is short against the corridor.
    Every image of both sums at once: (sum, k and family, the inputs); J is S's mirror
    (drift -m, Girsanov weight -nu)."""
    width, nu = a + b, m / (s * s)
    centres = np.concatenate([2 * _IMAGES * width, 2 * _IMAGES * width - 2 * b])
    masses = _weighted_mass(_MIRROR * nu, centres, _MIRROR * m, a, b, s)
    sums = (_IMAGE_SIGNS * masses).sum(axis=1)
    return sums[0], sums[1]


_TERMS = np.arange(1, EIGEN_TERMS + 1, dtype=np.float64)[:, None]
_PARITY = np.where(_TERMS % 2 == 1, -1.0, 1.0)  # (-1)^n


def _eigen_sums(a: F64, b: F64, m: F64, s: F64) -> tuple[F64, F64]:
    """(S, J) by the sine series of the killed density: fast where the horizon is long.
    Every term at once: rows (n) x columns (the inputs)."""
    width, nu = a + b, m / (s * s)
    girsanov = np.exp(-0.5 * (m / s) ** 2)
    omega = _TERMS * math.pi / width
    common = ((2 / width) * np.sin(omega * b) * np.exp(-0.5 * (omega * s) ** 2) * omega) / (
        nu * nu + omega * omega
    )
    survival = (common * (1 - _PARITY * np.exp(nu * width))).sum(axis=0)
    weighted = (common * (1 - _PARITY * np.exp(-nu * width))).sum(axis=0)
    return survival * np.exp(-nu * b) * girsanov, weighted * np.exp(nu * b) * girsanov


def _survival(a: F64, b: F64, m: F64, s: F64) -> tuple[F64, F64]:
    """(S, J): S = P(the path stays in (-b, a) until the end), J = E[e^(-2 nu X_1); stayed],
    nu = m / s^2, for 0 <= m <= MAX_DRIFT_SD·s. Images where s is under SERIES_SWITCH of the
    corridor's width, the sine series above it: either needs only a few terms there."""
    short = s < SERIES_SWITCH * (a + b)
    if short.all() or not short.any():  # one method for every row: no gathering
        survival, weighted = (_image_sums if short.all() else _eigen_sums)(a, b, m, s)
    else:
        survival, weighted = np.empty_like(a), np.empty_like(a)
        for rows, sums in ((short, _image_sums), (~short, _eigen_sums)):
            survival[rows], weighted[rows] = sums(a[rows], b[rows], m[rows], s[rows])
    return np.clip(survival, 0.0, 1.0), np.maximum(weighted, 0.0)


def _hit_probabilities(
    a: F64, b: F64, m: F64, s: F64, survival: F64, weighted: F64
) -> tuple[F64, F64, F64]:
    """(p_tp, p_sl, p_neither) for drift m > 0 (the caller mirrors negative drifts and raises
    one too small to divide by, see _least_drift) from _survival's sums at the horizon's end."""
    width, nu = a + b, m / (s * s)
    down_b, down_l = np.exp(-2 * nu * b), -np.expm1(-2 * nu * width)
    p_tp = ((1 - survival) - down_b * (1 - weighted)) / down_l
    p_tp = np.clip(p_tp, 0.0, 1.0 - survival)
    return p_tp, 1.0 - survival - p_tp, survival


def _least_drift(m: F64, s: F64, width: F64) -> F64:
    """|drift| raised to at least 1e-9 x s^2 / width: the first-passage formula divides by the
    drift, and this moves the answer by ~1e-9 while the division's cancellation costs ~1e-7."""
    out: F64 = np.maximum(m, 1e-9 * s * s / width)
    return out


class PathShape(NamedTuple):
    """How the model's path departs from one Brownian motion (0: the fallback's).

    `dispersion`: the horizon's volatility is uncertain, log-normal around the served one with
    this sd: a mixture of Brownian motions, with fatter tails, so far levels are reached more
    often and near ones less often than one volatility says (fitted 0.2-0.6 on the real sets)."""

    dispersion: float = 0.0


BROWNIAN = PathShape()  # one Brownian motion: the fallback's path
DISPERSION_NODES = 3  # Gauss-Hermite nodes of the volatility mixture
_HERMITE = np.polynomial.hermite_e.hermegauss(DISPERSION_NODES)
_LEGENDRE = np.polynomial.legendre.leggauss(TIME_NODES)
_TIMES = np.concatenate([[1.0], (_LEGENDRE[0] + 1) / 2])  # the horizon's end, then the nodes


@functools.lru_cache(maxsize=256)
def _mixture(dispersion: float) -> list[tuple[float, float]]:
    """(multiplier of s, weight) pairs with mean multiplier 1 (one pair without dispersion)."""
    if dispersion <= 0:
        return [(1.0, 1.0)]
    nodes, weights = _HERMITE
    weights = weights / weights.sum()
    return [
        (math.exp(dispersion * z - dispersion**2 / 2), float(w))
        for z, w in zip(nodes, weights, strict=True)
    ]


def barrier_odds(
    tp_atr: npt.ArrayLike,
    sl_atr: npt.ArrayLike,
    drift_atr: npt.ArrayLike,
    scale_atr: npt.ArrayLike,
    horizon_bars: npt.ArrayLike,
    checks: int = 0,
    exit_times: bool = True,
    shape: PathShape = BROWNIAN,
) -> BarrierOdds:
    """Outcomes of a long trade with take-profit `tp_atr` above and stop `sl_atr` below the
    entry, when the path drifts `drift_atr` and has sd `scale_atr` over `horizon_bars` bars (a
    short trade: pass -drift). `checks` > 0: the levels are checked at that many points over the
    horizon (the discrete-monitoring shift); 0: continuously. `shape`: the model's departures
    from one Brownian motion. Inputs broadcast together. `exit_times` False skips the expected
    bars and R (NaN; they cost TIME_NODES more survival evaluations)."""
    given = [
        np.asarray(v, np.float64) for v in (tp_atr, sl_atr, drift_atr, scale_atr, horizon_bars)
    ]
    out_shape = np.broadcast(*given).shape
    flat: list[F64] = [
        (v if v.shape == out_shape else np.broadcast_to(v, out_shape)).ravel() for v in given
    ]
    tp, sl, drift, scale, bars = flat
    scale = np.maximum(scale, 1e-9)
    drift = np.minimum(np.maximum(drift, -MAX_DRIFT_SD * scale), MAX_DRIFT_SD * scale)
    shift = BGK_BETA * scale / math.sqrt(checks) if checks > 0 else np.zeros_like(scale)
    level_tp, level_sl = tp + shift, sl + shift
    up = drift >= 0  # a falling path is the mirror of a rising one with the levels swapped
    a, b = np.where(up, level_tp, level_sl), np.where(up, level_sl, level_tp)
    # Every volatility of the mixture (and every time node of the exit integral) in one batch:
    # one custom barrier is a handful of rows, where numpy's per-call cost dominates.
    mixture = _mixture(shape.dispersion)
    multipliers = np.array([m for m, _ in mixture])[:, None]
    mix_weights = np.array([w for _, w in mixture])[:, None]
    n, copies = tp.size, len(mixture)

    s_mix = (scale * multipliers).ravel()
    a_mix, b_mix = np.concatenate([a] * copies), np.concatenate([b] * copies)
    m_mix = _least_drift(np.concatenate([np.abs(drift)] * copies), s_mix, a_mix + b_mix)
    # Time 1 (the horizon's end: the three outcomes) and the exit integral's nodes, one batch.
    times = _TIMES if exit_times else _TIMES[:1]
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) where a mass vanishes
        survival, weighted = _survival(
            np.concatenate([a_mix] * len(times)),
            np.concatenate([b_mix] * len(times)),
            (times[:, None] * m_mix).ravel(),
            (np.sqrt(times)[:, None] * s_mix).ravel(),
        )
    at_end = slice(0, s_mix.size)
    first, second, stays = _hit_probabilities(
        a_mix, b_mix, m_mix, s_mix, survival[at_end], weighted[at_end]
    )
    up_mix = np.concatenate([up] * copies)
    p_tp = (mix_weights * np.where(up_mix, first, second).reshape(-1, n)).sum(axis=0)
    p_sl = (mix_weights * np.where(up_mix, second, first).reshape(-1, n)).sum(axis=0)
    neither = (mix_weights * stays.reshape(-1, n)).sum(axis=0)
    exit_fraction = np.full_like(tp, np.nan)
    if exit_times:  # E[min(exit, end)] = integral of the survival over the horizon
        per_node = survival[s_mix.size :].reshape(TIME_NODES, copies, n)
        exit_fraction = np.einsum("t,m,tmn->n", _LEGENDRE[1] / 2, mix_weights[:, 0], per_node)
    # Optional stopping on the model's levels: E[X at exit] = drift x E[exit fraction]; a fill
    # at the trade's own level differs from the monitored level by the shift.
    gain = drift * exit_fraction - (p_tp - p_sl) * shift
    expected_r = gain / np.maximum(sl, 1e-9)
    out = (p_tp, p_sl, neither, exit_fraction * bars, expected_r)
    return BarrierOdds(*(v.reshape(out_shape) for v in out))


def fallback_scale(up_atr: npt.ArrayLike, down_atr: npt.ArrayLike) -> F64:
    """The path's sd over the horizon from the served mean high and low ranges (ATR units):
    for a Brownian motion E[max] = E[-min] = s·sqrt(2/pi)."""
    mean = (np.asarray(up_atr, np.float64) + np.asarray(down_atr, np.float64)) / 2
    out: F64 = HALF_PI_SQRT * np.maximum(mean, 1e-6)
    return out


def drift_inputs(
    up_atr: npt.ArrayLike, down_atr: npt.ArrayLike, p_long: npt.ArrayLike, p_short: npt.ArrayLike
) -> F64:
    """(..., 3) what the drift reads: 1, the served ranges' asymmetry, P(long) - P(short)."""
    up, down = np.asarray(up_atr, np.float64), np.asarray(down_atr, np.float64)
    asymmetry = (up - down) / np.maximum(up + down, 1e-6)
    edge = np.asarray(p_long, np.float64) - np.asarray(p_short, np.float64)
    ones = np.ones(np.broadcast_shapes(asymmetry.shape, edge.shape))
    return np.stack(np.broadcast_arrays(ones, asymmetry, edge), axis=-1)


class PathParams(NamedTuple):
    drift_atr: F64  # over the horizon, ATR units, for the long side
    scale_atr: F64


class BarrierHead(msgspec.Struct, frozen=True):
    """The fitted path model per horizon and, per barrier cell, what the gate serves."""

    version: int
    tp_grid: list[float]
    sl_grid: list[float]
    drift_coef: list[list[float]]  # (H, 3): drift in units of s, on drift_inputs
    log_scale: list[float]  # (H,): log of the model's multiplier of the fallback's s
    served: list[list[list[list[str]]]]  # [side][horizon][tp][sl]: MODEL or FALLBACK
    dispersion: list[float] = []  # (H,): PathShape per horizon (empty: one Brownian motion)

    def shape(self, horizon: int) -> PathShape:
        return PathShape(self.dispersion[horizon]) if self.dispersion else BROWNIAN

    def check(self, horizons: int) -> None:
        if self.version != BARRIER_VERSION:
            raise ValueError(
                f"barrier head v{self.version}, this server reads v{BARRIER_VERSION}; "
                "retrain with `make models`"
            )
        shape = (len(SIDES), horizons, len(self.tp_grid), len(self.sl_grid))
        if np.shape(self.drift_coef) != (horizons, 3) or np.shape(self.served) != shape:
            raise ValueError("barrier head has the wrong shape for this spec's horizons")

    def source(self, side: str, horizon: int, tp_atr: float, sl_atr: float) -> str:
        """What answers a barrier: the nearest grid cell's decision (in log distance)."""
        i = int(np.argmin(np.abs(np.log(np.asarray(self.tp_grid) / tp_atr))))
        j = int(np.argmin(np.abs(np.log(np.asarray(self.sl_grid) / sl_atr))))
        return self.served[SIDES.index(side)][horizon][i][j]

    def path(self, horizon: int, scale: F64, inputs: F64) -> PathParams:
        """The model's drift and sd for horizon k from the fallback's sd and drift_inputs."""
        coef = np.asarray(self.drift_coef[horizon], np.float64)
        model_scale = scale * math.exp(self.log_scale[horizon])
        drift = np.clip(inputs @ coef, -MAX_DRIFT_SD, MAX_DRIFT_SD) * model_scale
        return PathParams(drift, model_scale)


def side_drift(side: str, drift: F64) -> F64:
    """The drift of the path in the trade's favour (a short trade profits from a fall)."""
    out: F64 = drift if side == "long" else -drift
    return out
