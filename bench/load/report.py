"""The record of one `make load` run: summary.json + summary.md in the results folder, one line
appended to runs.jsonl (so repeated runs show the spread), and the plot of throughput and
latency over time from locust's --csv-full-history."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

Json = dict[str, Any]
REST_ORDER = (
    "/api/predict/[symbol]",
    "/api/signals/[symbol]",
    "/api/history/[symbol]",
    "/api/indicators/[symbol]",
)
WS_BAR = "WS bar message (since COMMIT)"


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(raw: str | None) -> float | None:
    if raw in (None, "", "N/A"):
        return None
    return float(raw)


def endpoint_table(out: Path) -> list[Json]:
    table = []
    for row in _rows(out / "locust_stats.csv"):
        table.append(
            {
                "type": row["Type"],
                "name": row["Name"],
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": _num(row["Requests/s"]),
                "avg_ms": _num(row["Average Response Time"]),
                "p50_ms": _num(row["50%"]),
                "p90_ms": _num(row["90%"]),
                "p99_ms": _num(row["99%"]),
                "max_ms": _num(row["Max Response Time"]),
                "avg_bytes": _num(row["Average Content Size"]),
            }
        )
    return table


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def markdown(summary: Json) -> str:
    s = summary
    rest = s["rest_total"]
    lines = [
        f"run {s['started_at']} ({s['command']} {' '.join(s['argv'])}), commit {s['git_commit']}",
        f"{s['settings']['rest_users']} REST users + {s['settings']['ws_users']} WebSocket "
        f"users, {s['settings']['duration']}, replicas {', '.join(s['hosts'])}, "
        f"{s['symbols']['generated']} generated + {len(s['symbols']['demo'])} demo symbols, "
        f"a bar every {s['settings']['replay_interval_s']:g} s ({s['bar_steps']} bar steps)",
        "",
        "| endpoint | requests | failures | req/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in s["endpoints"]:
        if row["type"] == "WS":
            continue
        lines.append(
            f"| `GET {row['name']}` | {row['requests']:,} | {row['failures']} | "
            f"{row['rps']:.1f} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | "
            f"{_ms(row['max_ms'])} |"
        )
    lines.append(
        f"| **REST total** | **{rest['requests']:,}** | **{rest['failures']}** | "
        f"**{rest['rps']:.1f}** | **{_ms(rest['p50_ms'])}** | **{_ms(rest['p99_ms'])}** | "
        f"{_ms(rest['max_ms'])} |"
    )
    for row in s["endpoints"]:
        if row["type"] == "WS":
            lines.append(
                f"| {row['name']} | {row['requests']:,} | {row['failures']} | "
                f"{row['rps']:.2f} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | "
                f"{_ms(row['max_ms'])} |"
            )
    lines += ["", "requests per replica (client side): " + ", ".join(
        f"{host} {counts.get('requests', 0):,} ({counts.get('failures', 0)} failed)"
        for host, counts in sorted(s["replicas"].items())
    )]  # fmt: skip
    for host, stats in s["server_side"].items():
        lines.append(f"server side {host}: {stats}")
    for host, ws in s["ws_latency_by_replica"].items():
        lines.append(f"WS bar COMMIT -> message via {host}: {ws}")
    lines.append(f"WS counters: {s['ws_counts']}")
    cpu = s["cpu_cores_used"]
    lines.append(
        "CPU cores used on average: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        + f"; load average before {s['load_average_before'][0]:.2f}"
    )
    lines.append(f"failures (all kinds, REST + WS): {s['failures_total']}")
    if s["failure_kinds"]:
        lines += [
            f"  {f['Occurrences']} x {f['Method']} {f['Name']}: {f['Error']}"
            for f in s["failure_kinds"]
        ]
    return "\n".join(lines)


def _server_side(stats: Any, before: Any) -> Any:
    """What a replica's /api/stats says about the run: responses by status, the bar-close
    engine's sweeps/predictions/errors, the stream, the prediction cache (since the replica
    started); `during_measurement`: the bar-close counters' growth while locust ran."""
    if not isinstance(stats, dict):
        return stats
    bar_close = stats.get("bar_close") or {}
    stream = stats.get("stream") or {}
    earlier = (before.get("bar_close") or {}) if isinstance(before, dict) else {}
    return {
        "during_measurement": {
            k: (bar_close.get(k) or 0) - (earlier.get(k) or 0)
            for k in ("sweeps", "predictions", "feature_seeds", "errors")
        },
        "responses_by_status": stats.get("responses_by_status"),
        "server_p50_p99_ms": [
            round((stats.get("latency") or {}).get(k) or 0, 2) for k in ("p50_ms", "p99_ms")
        ],
        "bar_close": {
            k: bar_close.get(k)
            for k in ("sweeps", "predictions", "triton_requests", "feature_seeds", "errors")
        },
        "stream": {
            k: stream.get(k)
            for k in ("computations", "messages_sent", "messages_dropped", "errors")
        },
        "cache_hit_rate": stats.get("cache_hit_rate"),
    }


def ws_latency(out: Path) -> Json:
    """Bar COMMIT -> WebSocket message, per replica, from the subscribers' message log."""
    rows = [r for r in _rows_tsv(out / "ws_messages.tsv") if float(r["commit_epoch"]) > 0]
    result: Json = {}
    for replica in sorted({r["replica"] for r in rows}):
        ms = sorted(
            (float(r["received_epoch"]) - float(r["commit_epoch"])) * 1e3
            for r in rows
            if r["replica"] == replica
        )
        result[replica] = {
            "messages": len(ms),
            "p50_ms": ms[len(ms) // 2],
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
            "max_ms": ms[-1],
            "over_1s": sum(m > 1000 for m in ms),
        }
    return result


def _rows_tsv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def plot(out: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(out / "locust_stats_history.csv")
    if not rows:
        return
    t0 = min(int(r["Timestamp"]) for r in rows)
    series: dict[str, list[tuple[int, int, float | None, float | None]]] = {}
    for r in rows:
        name = r["Name"] if r["Type"] else "Aggregated"
        series.setdefault(name, []).append(
            (
                int(r["Timestamp"]) - t0,
                int(r["Total Request Count"]),
                _num(r["50%"]),
                _num(r["99%"]),
            )
        )

    def per_second(points: list[tuple[int, int, float | None, float | None]], smooth: int = 5):
        """Requests per second from the cumulative counts, averaged over `smooth` s."""
        xs, ys = [], []
        for i in range(smooth, len(points)):
            dt = points[i][0] - points[i - smooth][0]
            if dt > 0:
                xs.append(points[i][0])
                ys.append((points[i][1] - points[i - smooth][1]) / dt)
        return xs, ys

    fig, (top, bottom, cpu_ax) = plt.subplots(
        3, 1, figsize=(10, 10), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2]}
    )
    rest_total: dict[int, float] = {}
    for name in REST_ORDER:
        if name not in series:
            continue
        xs, ys = per_second(series[name])
        top.plot(xs, ys, label=name, linewidth=1)
        for x, y in zip(xs, ys, strict=True):
            rest_total[x] = rest_total.get(x, 0.0) + y
        pts = [(x, p50, p99) for x, _, p50, p99 in series[name] if p50 is not None]
        line = bottom.plot(
            [p[0] for p in pts], [p[1] for p in pts], linewidth=1, label=f"{name} p50"
        )
        bottom.plot(
            [p[0] for p in pts], [p[2] for p in pts], linewidth=1, linestyle="--",
            color=line[0].get_color(), label=f"{name} p99",
        )  # fmt: skip
    if rest_total:
        xs = sorted(rest_total)
        top.plot(xs, [rest_total[x] for x in xs], color="black", linewidth=1.5, label="REST total")
    if WS_BAR in series:
        xs, ys = per_second(series[WS_BAR], smooth=10)
        top.plot(xs, ys, color="grey", linewidth=1, label="WS bar messages/s (10 s avg)")
        pts = [(x, p50, p99) for x, _, p50, p99 in series[WS_BAR] if p50 is not None]
        bottom.plot(
            [p[0] for p in pts], [p[1] for p in pts], color="grey", label="WS COMMIT→message p50"
        )
        bottom.plot(
            [p[0] for p in pts], [p[2] for p in pts], color="grey", linestyle="--",
            label="WS COMMIT→message p99",
        )  # fmt: skip
    top.set_ylabel("requests/s (5 s average)")
    top.set_title("make load: two replicas, mixed REST + WebSocket traffic")
    top.legend(fontsize=7, loc="lower right")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("latency ms (locust's 10 s window)")
    bottom.legend(fontsize=6, ncol=2, loc="upper right")
    bottom.grid(alpha=0.3, which="both")
    cpu_rows = _rows_tsv(out / "cpu.tsv")
    if cpu_rows:
        xs = [float(r["t_s"]) for r in cpu_rows]
        groups = [k for k in cpu_rows[0] if k not in ("t_s", "machine_total")]
        ours = [[float(r[k]) for r in cpu_rows] for k in groups]
        cpu_ax.stackplot(xs, *ours, labels=groups, alpha=0.7)
        cpu_ax.plot(
            xs, [float(r["machine_total"]) for r in cpu_rows], color="black", linewidth=1,
            label="whole machine (incl. other engineers' work)",
        )  # fmt: skip
        cpu_ax.set_ylabel("CPU cores (2 in all)")
        cpu_ax.legend(fontsize=7, loc="upper left", ncol=3)
        cpu_ax.grid(alpha=0.3)
    cpu_ax.set_xlabel("seconds since start")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write_report(record: Json, out: Path, png: Path) -> Json:
    extra: Json = {}
    if (out / "extra.json").exists():
        extra = json.loads((out / "extra.json").read_text())
    failures = _rows(out / "locust_failures.csv")
    if extra.get("endpoints"):  # exact: written by the locustfile when the test stopped
        endpoints = sorted(extra["endpoints"].values(), key=lambda e: (e["type"], e["name"]))
    else:  # locust's CSV, written once a second
        endpoints = [e for e in endpoint_table(out) if e["name"] != "Aggregated"]
    summary = {
        **record,
        "endpoints": endpoints,
        "rest_total": extra.get("rest_total", {}),
        "replicas": extra.get("replicas", {}),
        "ws_counts": extra.get("ws", {}),
        "server_side": {
            host: _server_side(stats, record.get("replica_stats_before", {}).get(host))
            for host, stats in record.get("replica_stats", {}).items()
        },
        "ws_latency_by_replica": ws_latency(out),
        "failures_total": sum(r["failures"] for r in endpoints),
        "failure_kinds": failures,
        "plot": _relative(png),
    }
    summary["markdown"] = markdown(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary["markdown"] + "\n")
    brief = {
        k: v
        for k, v in summary.items()
        if k not in ("replica_stats", "replica_stats_before", "markdown")
    }
    with (out / "runs.jsonl").open("a") as f:
        f.write(json.dumps(brief, default=str) + "\n")
    plot(out, png)
    return summary


def _relative(path: Path) -> str:
    """`path` from the checkout's root, so no machine's layout lands in committed results."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name
