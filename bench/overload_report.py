"""The overload report: a table per load and server, and a plot of goodput and p99 against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TARGET_GOODPUT = 0.9
TARGET_REJECT_P99_MS = 50.0


def peak(result: dict[str, Any]) -> float:
    """The most rows/s of correct answers the server gave: closed-loop saturation, one lone client (the
    capacity) or any open-loop point."""
    first = result.get("capacity_rows_per_s", result["saturation"]["goodput_rows_per_s"])
    return max([first, *(p["goodput_rows_per_s"] for p in result["points"])])


def table(doc: dict[str, Any]) -> str:
    lines = [
        "| server | load | closed-loop saturation rows/s | offered | offered req/s (unsent) | goodput rows/s | "
        "of peak | accepted p99 ms | rejected p99 ms | 503 | errors | recovery s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in doc["results"]:
        if "error" in result:
            lines.append(f"| {result['server']} | — | not run: {result['error'][:120]} |||||||")
            continue
        for p in result["points"]:
            errors = p["timeouts"] + p["connection_errors"] + p["wrong"] + p["other_status"]
            lines.append(
                f"| {result['server']} | {result['load']} | {result['saturation']['goodput_rows_per_s']:,.0f} | "
                f"{p['multiple']:g}x | {p['offered_per_s']:,.0f} ({p['unsent']}) | {p['goodput_rows_per_s']:,.0f} | "
                f"{p['goodput_rows_per_s'] / peak(result):.0%} | {p['ok_p99_ms']:,.0f} | {p['rejected_p99_ms']:,.0f} | "
                f"{p['rejected']} | {errors} | {p['recovery_s']:.2f} |"
            )
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    runs = [r for r in doc["results"] if "error" not in r]
    loads = sorted({r["load"] for r in runs})
    fig, axes = plt.subplots(2, len(loads), figsize=(6.5 * len(loads), 8), squeeze=False)
    for column, load in enumerate(loads):
        top, bottom = axes[0][column], axes[1][column]
        for r in (r for r in runs if r["load"] == load):
            xs = [p["multiple"] for p in r["points"]]
            top.plot(xs, [p["goodput_rows_per_s"] for p in r["points"]], marker="o", label=r["server"])
            bottom.plot(xs, [max(p["ok_p99_ms"], 0.1) for p in r["points"]], marker="o", label=r["server"])
        top.set(
            title=f"{load}: goodput", xlabel="offered load (x saturation)", ylabel="rows/s of correct answers"
        )
        bottom.set(title=f"{load}: p99 of correct answers", xlabel="offered load (x saturation)", ylabel="ms",
                   yscale="log")  # fmt: skip
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(doc: dict[str, Any], out: Path) -> None:
    plot(doc, out / "overload.png")
    text = [
        f"# Overload: {doc['date']}, model {doc['model']}",
        "",
        f"Open loop, server pinned to core 0 (one worker), generator on core 1; {doc['point_s']:g} s per point; "
        f"queue budget {doc['queue_delay_ms']:g} ms for ours and PyTriton. Offered load is a multiple of each "
        "server's closed-loop saturation (32 connections for JSON, 4 for binary); goodput = rows/s of correct "
        "answers finished during the burst after its first 0.5 s, also as a share of the server's peak (the "
        "most it gave anywhere in the run). Up to 512 keep-alive connections; requests due while all are "
        "busy are unsent.",
        f"Targets: goodput at 4x >= {TARGET_GOODPUT:.0%} of saturation; rejections p99 <= {TARGET_REJECT_P99_MS:g} ms.",
        "",
        table(doc),
        "",
        "![goodput and p99](overload.png)",
    ]
    (out / "overload.md").write_text("\n".join(text) + "\n")
