"""The report's one chart (six panels, every one a ratio) and its headline table, from one run's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

GREEN, RED, GREY, BLUE, ORANGE = "#2e7d32", "#c62828", "#757575", "#1565c0", "#ef6c00"


def _bars(ax: Any, labels: list[str], values: list[float], target: float | None, title: str, xlabel: str,
          better_low: bool = True) -> None:
    colors = [GREY if target is None else (GREEN if (v <= target if better_low else v >= target) else RED)
              for v in values]
    y = range(len(labels))
    ax.barh(list(y), values, color=colors)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    if target is not None:
        ax.axvline(target, color=RED, linestyle="--", linewidth=1, label=f"target {target}x")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(0, max(values + [target or 0]) * 1.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)


def draw(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    (cold, warm, hook), (fan, claims, scale) = axes

    if "cold" in data:
        rows = data["cold"]["rows"]
        _bars(cold, [r["function"] for r in rows], [r["ratio"] for r in rows], 1.25,
              "Cold start: import / floor import", "ratio (lower is better)")
    if "warm" in data:
        rows = data["warm"]["rows"]
        _bars(warm, [r["function"] for r in rows], [r["ratio"] for r in rows], 1.5,
              "Warm request / its irreducible work", "ratio (lower is better)")
    if "webhook" in data:
        h, f = data["webhook"]["handler"], data["webhook"]["floor"]
        labels = ["throughput: floor / handler", "ack p50: handler / floor", "ack p99: handler / floor"]
        values = [f["rate"] / h["rate"], h["p50_ms"] / f["p50_ms"], h["p99_ms"] / f["p99_ms"]]
        _bars(hook, labels, values, None, f"Webhook ingestion: {h['rate']:.0f} events/s, p99 {h['p99_ms']:.1f} ms",
              "ratio to verify + one INSERT (lower is better)")
    if "fanout" in data:
        rows = data["fanout"]["rows"]
        _bars(fan, [f"push service at {r['latency_ms']} ms" for r in rows], [r["ours"] / r["naive"] for r in rows],
              3.0, "Push fan-out / naive webpush() loop", "throughput ratio (higher is better)", better_low=False)
    if "claims" in data:
        for (kind, by), color in zip(data["claims"]["rows"].items(), (BLUE, ORANGE)):
            ks = sorted(int(k) for k in by)
            claims.plot(ks, [by[str(k)] / by["1"] for k in ks], marker="o", color=color, label=kind)
        claims.axhline(1.0, color="black", linewidth=0.8)
        claims.set_xscale("log", base=2)
        claims.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        claims.set_ylim(0, None)
        claims.set_title("Job claims (SKIP LOCKED): throughput / 1 worker", fontsize=10)
        claims.set_xlabel("concurrent workers (2 CPUs)", fontsize=8)
        claims.legend(fontsize=8)
    if "scale" in data:
        rows = data["scale"]["rows"]
        for (measure, by), color in zip(rows.items(), (BLUE, ORANGE, GREEN)):
            sizes = sorted(int(s) for s in by)
            scale.plot(sizes, [by[str(s)] / by[str(sizes[0])] for s in sizes], marker="o", color=color,
                       label=measure)
        scale.axhline(1.0, color="black", linewidth=0.8)
        scale.set_xscale("log")
        scale.set_ylim(0, 2.5)
        scale.set_title("Per-request cost / cost at 1k rows", fontsize=10)
        scale.set_xlabel("rows in the table (presence history, queued deliveries)", fontsize=8)
        scale.legend(fontsize=8)
    for ax in axes.flat:
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("NomadNexus functions: every figure a ratio measured in the same run", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def headline(data: dict[str, Any]) -> str:
    """One line per figure the issue asks for."""
    lines = ["## Headline", "", "| figure | result |", "|---|---|"]
    if "cold" in data:
        rows = data["cold"]["rows"]
        worst = max(rows, key=lambda r: r["ratio"])
        lines.append(f"| cold import / floor, worst function | {worst['ratio']:.2f}x ({worst['function']}) |")
    if "warm" in data:
        rows = data["warm"]["rows"]
        worst = max(rows, key=lambda r: r["ratio"])
        lines.append(f"| warm request / irreducible work, worst function | {worst['ratio']:.2f}x "
                     f"({worst['function']}) |")
    if "webhook" in data:
        h, f = data["webhook"]["handler"], data["webhook"]["floor"]
        lines.append(f"| webhook ingestion | {h['rate']:.0f} events/s ({h['rate'] / f['rate']:.2f}x the floor's "
                     f"rate), p99 ack {h['p99_ms']:.1f} ms ({h['p99_ms'] / f['p99_ms']:.2f}x the floor's) |")
    if "fanout" in data:
        cells = ", ".join(f"{r['ours'] / r['naive']:.1f}x at {r['latency_ms']} ms" for r in data["fanout"]["rows"])
        lines.append(f"| fan-out / naive loop | {cells} |")
    if "claims" in data:
        for kind, by in data["claims"]["rows"].items():
            cells = ", ".join(f"{by[k] / by['1']:.2f}x" for k in ("2", "4", "8"))
            lines.append(f"| {kind} claimed by 2, 4, 8 workers / 1 worker | {cells} |")
    if "scale" in data:
        for measure, ratio in data["scale"]["ratio"].items():
            lines.append(f"| {measure}: 100k rows / 1k rows | {ratio:.2f}x |")
    if "livekit" in data:
        j, r = data["livekit"]["join"], data["livekit"]["row"]
        lines.append(f"| real LiveKit join path: livekit-token + connect / connect with a local token | "
                     f"{j['ratio']:.2f}x (target <= 1.10x) |")
        if "parts_ms" in j:
            from bench.bench_livekit import breakdown

            lines.append(f"| ... the function's own share alone (no local gateway, no HTTP) | "
                         f"{breakdown(j)['function_ratio']:.2f}x (target <= 1.10x) |")
        lines.append(f"| real LiveKit webhook to voice_presence row | p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
                     f"over {r['n']} joins (target p99 < 250 ms) |")
    if "admin" in data:
        e, s = data["admin"]["endpoint"]["total"], data["admin"]["schedule_run"]
        lines.append(f"| rank change to visible in LiveKit, member-admin (p50 / p99) | {e['p50'] * 1000:.0f} / "
                     f"{e['p99'] * 1000:.0f} ms |")
        lines.append(f"| rank change to visible in LiveKit, schedule (interval + p99 of a run) | "
                     f"{data['admin']['interval']} s + {s['p99'] * 1000:.0f} ms |")
    return "\n".join(lines) + "\n"
