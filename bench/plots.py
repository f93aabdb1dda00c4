"""PNG plots of the results (matplotlib, Agg backend): throughput and latency against concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(servers: list[dict[str, Any]], single: bool) -> dict[str, list[dict[str, Any]]]:
    lines: dict[str, list[dict[str, Any]]] = {}
    for s in servers:
        for p in s["points"]:
            if (p["images_per_request"] == 1) == single:
                lines.setdefault(f"{s['server']} / {p['scenario']}", []).append(p)
    return {k: sorted(v, key=lambda p: p["connections"]) for k, v in lines.items()}


def plot_all(servers: list[dict[str, Any]], out: Path) -> list[str]:
    """Write ``throughput.png`` and ``latency.png`` into ``out``; returns their file names."""
    single, batch = _series(servers, True), _series(servers, False)
    ticks = sorted({p["connections"] for s in servers for p in s["points"]}) or [1]
    fig, axes = plt.subplots(1, 2 if batch else 1, figsize=(13 if batch else 7.5, 4.8), squeeze=False)
    ax = axes[0][0]
    for name, pts in single.items():
        ax.plot([p["connections"] for p in pts], [p["rps"] for p in pts], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="concurrent connections (wrk)", ylabel="requests/s",
           title="One image per request (JSON)")  # fmt: skip
    ax.axhline(4000, color="grey", ls=":", lw=1, label="target 4,000 req/s @64")
    ax.legend(fontsize=7)
    if batch:
        ax = axes[0][1]
        for name, pts in batch.items():
            ax.plot([p["connections"] for p in pts], [p["images_per_s"] for p in pts], marker="o", label=name)
        ax.axhline(60000, color="grey", ls=":", lw=1, label="target 60,000 images/s")
        ax.set(xscale="log", xlabel="concurrent connections (wrk)", ylabel="images/s",
               title="V2 binary, 64 images per request")  # fmt: skip
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    for a in axes[0]:
        a.set_xticks(ticks, [str(t) for t in ticks])
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)

    everything = {**single, **batch}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), squeeze=False)
    for ax, key, title in ((axes[0][0], "p50_ms", "p50 latency"), (axes[0][1], "p99_ms", "p99 latency")):
        for name, pts in everything.items():
            ax.plot([p["connections"] for p in pts], [p[key] for p in pts], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="concurrent connections (wrk)", ylabel="ms (wrk, client side)",
               title=title)  # fmt: skip
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.grid(True, which="both", alpha=0.3)
    axes[0][1].axhline(40, color="grey", ls=":", lw=1, label="target p99 40 ms @64")
    axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    return ["throughput.png", "latency.png"]
