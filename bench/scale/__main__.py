"""Ten thousand symbols on one machine: how the bar-close engine's cost grows with the universe.

Per universe size N (default 1,000 / 3,000 / 10,000 symbols of generated 5m bars, in the
benchmark's own database, kept between runs so a rerun does not seed again):

- cold start: engine replicas started in front of N symbols, until every one of the N x 3 keys
  (5m, 15m, 1h) is predicted or refused for too little history;
- warm sweep: a new 5m bar for all N in one transaction, COMMIT until N new predictions are
  counted (and until every replica holds them);
- memory: each replica's resident set after the sweeps, and its growth per feature state
  (the slope of RSS over the states held, from one size to the next).

Usage: make bench-scale   (or MYSQL_DATABASE=trading_scale .venv/bin/python -m bench.scale
       [--sizes 1000,3000,10000] [--bars 800] [--repeats 3] [--replicas 1] [--profile]
       [--native-bars] [--cold-only])
Writes bench/results/scale.json (scale_replicas2.json with two replicas, scale_native.json with
--native-bars: 15m and 1h bars stored too, so all N x 3 keys hold states), scale.png (log-log)
and, with --profile and py-spy on PATH, scale_profile_n<N>.txt (warm sweeps) and
scale_profile_cold_n<N>.txt (the cold start) for the largest N.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.scale.run import RESULTS_DIR, run
from bench.serving.common import Json, log
from bench.serving.report import machine, write_json


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes wants numbers like 1000,3000,10000, got {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("--sizes wants positive numbers")
    return sizes


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) over log(x): 1 is linear growth."""
    if len(xs) < 2:
        return math.nan
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def summarise(results: Json) -> Json:
    sizes = sorted(int(n) for n in results["sizes"])
    rows = [results["sizes"][str(n)] for n in sizes]
    states = [r["states"] for r in rows]
    rss = [sum(r["rss_mb"]) for r in rows]
    per_state_kb = [
        (rss[i + 1] - rss[i]) * 1024 / max(1, states[i + 1] - states[i])
        for i in range(len(rows) - 1)
    ]
    summary: Json = {
        "warm_slope": slope(sizes, [r["warm"]["median_s"] for r in rows]),
        "cold_slope": slope(sizes, [r["cold"]["seconds"] for r in rows]),
        "rss_kb_per_state": per_state_kb,
    }
    if all(run.get("cpu_s") for r in rows for run in r["warm"]["runs"]):
        cpu = [warm_cpu_s(r) for r in rows]
        summary["warm_cpu_s"] = {str(n): c for n, c in zip(sizes, cpu, strict=True)}
        summary["warm_cpu_slope"] = slope(sizes, [sum(c.values()) for c in cpu])
    return summary


def warm_cpu_s(row: Json) -> dict[str, float]:
    """Median CPU seconds per warm sweep, per server (engine, Triton, database, Redis)."""
    runs = [run["cpu_s"] for run in row["warm"]["runs"]]
    return {name: float(np.median([run[name] for run in runs])) for name in runs[0]}


def plot(results: Json, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(n) for n in results["sizes"])
    rows = [results["sizes"][str(n)] for n in sizes]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    warm = [r["warm"]["median_s"] for r in rows]
    low = [r["warm"]["median_s"] - r["warm"]["min_s"] for r in rows]
    high = [r["warm"]["max_s"] - r["warm"]["median_s"] for r in rows]
    ax.errorbar(
        sizes,
        warm,
        yerr=[low, high],
        marker="o",
        capsize=3,
        label="warm sweep: COMMIT → all predicted",
    )
    if all("warm_serial" in r and "warm_runs" in r["restart"] for r in rows):
        ax.plot(
            sizes,
            [float(np.median([s["seconds"] for s in r["restart"]["warm_runs"]])) for r in rows],
            marker="v",
            ls="--",
            label="warm sweep after a restart (two sweeps in flight)",
        )
        ax.plot(
            sizes,
            [r["warm_serial"]["median_s"] for r in rows],
            marker="^",
            ls="--",
            label="warm sweep after a restart, one in flight (SWEEPS_IN_FLIGHT=1)",
        )
    ax.plot(
        sizes,
        [r["cold"]["seconds"] for r in rows],
        marker="s",
        label="cold start: every key seeded",
    )
    if all(run.get("cpu_s") for r in rows for run in r["warm"]["runs"]):
        cores = results.get("machine", {}).get("cpus") or 1
        ax.plot(
            sizes,
            [sum(warm_cpu_s(r).values()) / cores for r in rows],
            marker="x",
            ls="-.",
            label=f"floor: every server's CPU seconds ÷ {cores} cores",
        )
    ref = np.asarray(sizes, float)
    ax.plot(ref, warm[0] * ref / ref[0], ls=":", color="grey", label="linear from the first point")
    ax.axhline(2.0, ls="--", color="tab:blue", lw=0.8, label="warm target 2 s")
    ax.axhline(30.0, ls="--", color="tab:orange", lw=0.8, label="cold target 30 s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("symbols (5m bars; 3 timeframes served)")
    ax.set_ylabel("seconds")
    s = results["summary"]
    ax.set_title(
        f"bar-close cost vs universe size "
        f"(log-log slope: warm {s['warm_slope']:.2f}, cold {s['cold_slope']:.2f})"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Frames every sample shares (the process's entry, the loop, idle threads): left out of the summary.
_PLUMBING = (
    "threading.py",
    "runpy",
    "runners.py",
    "orchestrator/cli.py",
    "__main__.py",
    "api/server.py",
    "uvicorn/server.py",
    "concurrent/futures/thread.py",
    "queue.py",
    "logging/handlers.py",
)


def profile_summary(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """Share of samples per function (inclusive) in a py-spy raw (folded) profile, without the
    frames every sample shares."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        for frame in set(stack.split(";")):
            if any(part in frame for part in _PLUMBING):
                continue
            function, _, where = frame.partition(" (")
            counts[f"{function} ({where.rsplit('/', 1)[-1].split(':')[0]})"] += int(n)
    return [(name, count / max(1, total)) for name, count in counts.most_common(top)]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", type=_sizes, default=[1000, 3000, 10000])
    parser.add_argument("--bars", type=int, default=800, help="5m bars per symbol when seeding")
    parser.add_argument("--repeats", type=int, default=3, help="warm sweeps per size")
    parser.add_argument("--replicas", type=int, default=1, choices=(1, 2))
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the largest size's cold start and sweeps"
    )
    parser.add_argument(
        "--native-bars",
        action="store_true",
        help="also store 15m and 1h bars per symbol, so every one of the N x 3 keys holds a state",
    )
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="only the cold start of each size (an A/B of seeding: make bench-scale-ab)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the engine on core 0, Triton on core 1 (Triton on a machine of its own)",
    )
    args = parser.parse_args()
    started = datetime.now(UTC)
    results = asyncio.run(run(args))
    if args.cold_only:
        for n, r in results["sizes"].items():
            log(f"N={int(n):>6,}: cold {r['cold']['seconds']:.1f} s")
        return 0
    results["summary"] = summarise(results)
    results["machine"] = machine()
    results["command"] = "python -m bench.scale " + " ".join(sys.argv[1:])
    results["started"] = started.isoformat(timespec="seconds")
    suffix = "" if args.replicas == 1 else f"_replicas{args.replicas}"
    suffix += "_pinned" if args.pin else ""
    suffix += "_native" if args.native_bars else ""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    write_json(results, RESULTS_DIR / f"scale{suffix}.json")
    plot(results, RESULTS_DIR / f"scale{suffix}.png")
    for n, r in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        log(
            f"N={int(n):>6,}: warm {r['warm']['median_s']:.2f} s [{r['warm']['min_s']:.2f}-"
            f"{r['warm']['max_s']:.2f}], cold {r['cold']['seconds']:.1f} s, "
            f"RSS {sum(r['rss_mb']):,.0f} MB for {r['states']:,} states"
        )
        if "warm_serial" in r and "warm_runs" in r["restart"]:
            serial = r["warm_serial"]["median_s"]
            overlapped = float(np.median([s["seconds"] for s in r["restart"]["warm_runs"]]))
            log(
                f"         after a restart: overlapped sweeps {overlapped:.2f} s, one sweep in "
                f"flight {serial:.2f} s ({serial / overlapped:.2f}x)"
            )
    s = results["summary"]
    log(
        f"log-log slope warm {s['warm_slope']:.2f}, cold {s['cold_slope']:.2f}; RSS per state "
        + ", ".join(f"{v:.0f} KB" for v in s["rss_kb_per_state"])
    )
    for n, cpu in s.get("warm_cpu_s", {}).items():
        log(
            f"N={int(n):>6,}: CPU s per warm sweep "
            + ", ".join(f"{name} {v:.2f}" for name, v in cpu.items())
        )
    if "warm_cpu_slope" in s:
        log(f"log-log slope of every server's CPU per warm sweep {s['warm_cpu_slope']:.2f}")
    largest = max(args.sizes)
    for what, name in (("warm sweeps", "scale_profile"), ("cold start", "scale_profile_cold")):
        profile = RESULTS_DIR / f"{name}_n{largest}.txt"
        if args.profile and profile.exists():
            log(f"where the {what} spend their time (py-spy, share of samples):")
            for function, share in profile_summary(profile):
                log(f"  {share:6.1%}  {function}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
