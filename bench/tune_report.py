"""The tuner's output: the ``serving.yaml`` snippet of the winner, ``tune.json``, ``tune.md`` and
``tune.png`` (throughput against p99 of every configuration, with the budget line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import yaml

from bench.tune_search import BEST_RULE, Result, errors
from bench.tune_space import Candidate

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

TICKS_MS = (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def snippet(model: str, cand: Candidate) -> tuple[str, str]:
    """(``serving.yaml`` text for the model, the ``SERVING_*`` lines for the server-wide values)."""
    text = yaml.safe_dump({"models": {model: cand.policy()}}, sort_keys=False)
    env = "\n".join(f"{k}={v}" for k, v in cand.env().items())
    return text, env


def verdict_lines(doc: dict[str, Any]) -> list[str]:
    """What the command prints at the end (and the report repeats)."""
    best, budget = doc.get("best"), doc["budget_ms"]
    if best is None:
        return ["No configuration could be measured (see the failures in tune.md)."]
    op = best["operating"]
    if doc["met"]:
        head = f"Best under p99 <= {budget:g} ms"
    else:
        head = f"NO configuration meets p99 <= {budget:g} ms with zero errors; the closest"
    result = (
        f"{head}: {best['key']} at {op['connections']} clients: {op['images_per_s']:,.0f} {doc['unit']}, "
        f"p50 {op['p50_ms']:.2f} ms, p99 {op['p99_ms']:.2f} ms, errors {errors(op)}"
    )
    return [result, "", "# serving.yaml (repository root)", doc["serving_yaml"].rstrip(),
            "# server-wide settings (environment)", doc["serving_env"]]  # fmt: skip


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def config_table(results: list[Result], budget_ms: float) -> list[str]:
    rows = ["| stage | configuration | status | clients | throughput/s | p50 ms | p99 ms | errors | meets budget | other CPU % |",
            "|---|---|---|--:|--:|--:|--:|--:|---|--:|"]  # fmt: skip
    for r in results:
        op = r.get("operating")
        status = r["status"] + (f": {r['reason'][:120]}" if r.get("reason") else "")
        if op is None:
            rows.append(f"| {r['stage']} | `{r['key']}` | {status} | – | – | – | – | – | – | – |")
            continue
        rows.append(f"| {r['stage']} | `{r['key']}` | {status} | {op['connections']} | {_f(op['images_per_s'], 0)} | "
                    f"{_f(op['p50_ms'])} | {_f(op['p99_ms'])} | {errors(op)} | {'yes' if r['meets'] else 'no'} | "
                    f"{_f(op.get('other_cpu_pct'), 0)} |")  # fmt: skip
    return rows


def point_table(results: list[Result], budget_ms: float) -> list[str]:
    rows = ["| configuration | clients | throughput/s | p50 ms | p99 ms | errors | within budget | server CPU % | other CPU % |",
            "|---|--:|--:|--:|--:|--:|---|--:|--:|"]  # fmt: skip
    for r in results:
        for p in r.get("points", []):
            ok = errors(p) == 0 and p["p99_ms"] <= budget_ms
            rows.append(f"| `{r['key']}` | {p['connections']} | {_f(p['images_per_s'], 0)} | {_f(p['p50_ms'])} | "
                        f"{_f(p['p99_ms'])} | {errors(p)} | {'yes' if ok else 'no'} | {p['server_cpu_pct']:.0f} | "
                        f"{p['other_cpu_pct']:.0f} |")  # fmt: skip
    return rows


BUSY_OTHER_CPU_PCT = 25.0  # other processes' CPU during a point, % of one core, above which it is flagged


def noise_lines(doc: dict[str, Any]) -> list[str]:
    """A warning when other processes took a noticeable share of the 2 cores during the points."""
    other = [p["other_cpu_pct"] for r in doc["configs"] for p in r.get("points", []) if "other_cpu_pct" in p]
    if not other or max(other) <= BUSY_OTHER_CPU_PCT:
        return []
    busy = sum(o > BUSY_OTHER_CPU_PCT for o in other)
    return [f"- ⚠ busy machine: other processes took {sum(other) / len(other):.0f} % of a core on average during "
            f"the points (up to {max(other):.0f} %; {busy} of {len(other)} points over {BUSY_OTHER_CPU_PCT:g} %): "
            "configurations measured under different noise do not compare well; rerun on a quiet machine "
            "before trusting the ranking."]  # fmt: skip


def repeat_lines(doc: dict[str, Any]) -> list[str]:
    """The winner measured a second time (when the budget allowed it)."""
    r = doc.get("repeat")
    if not r:
        return ["- The winner was not measured again (no time left in the budget, or nothing met it)."]
    if r["status"] != "ok":
        return [f"- Repeat of the winner failed: {r.get('reason')}"]
    held = (
        "its p99 held" if r["held"] else f"**its p99 did not hold** (over {doc['budget_ms']:g} ms or errors)"
    )
    return [f"- Repeat of the winner (fresh server, {r['connections']} clients): {r['images_per_s']:,.0f} {doc['unit']} "
            f"({r['change_pct']:+.1f} % against the first run), p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms: "
            f"{held}. Differences between configurations smaller than this spread are noise."]  # fmt: skip


def render(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    parts = [
        f"# Tuner: {doc['model']['name']} v{doc['model']['version']}, {doc['scenario']}, p99 <= {doc['budget_ms']:g} ms",
        "", f"Command: `{doc['command']}`", "",
        f"Machine: {env['cpu']}, {env['cores']} cores; 1-min load {env['load1_start']} at the start, "
        f"{env['load1_end']} at the end; other jobs running: {len(env['foreign'])}. Figures from a shared "
        "machine are indicative: compare configurations measured in the same run, not across days.", "",
        f"Search: {', '.join(doc['stages'])} (coordinate descent around the best so far); "
        f"{doc['measured']} configurations measured in {doc['elapsed_s']:.0f} s of a {doc['time_budget_s']:.0f} s budget; "
        f"{doc['points_per_config']}; {doc['warmup_s']:g} s warm-up + {doc['duration_s']:g} s per point.", "",
        f"Rule: {BEST_RULE}", "", "## Result", "", "```", *verdict_lines(doc), "```", "",
    ]  # fmt: skip
    parts += repeat_lines(doc) + noise_lines(doc)
    parts += [f"- note: {n}" for n in doc["notes"]]
    parts += [
        "",
        "## Every configuration (at its operating point)",
        "",
        *config_table(doc["configs"], doc["budget_ms"]),
    ]
    parts += ["", "## Every point", "", *point_table(doc["configs"], doc["budget_ms"])]
    parts += ["", "![throughput vs p99](tune.png)", ""]
    return "\n".join(parts)


def plot(doc: dict[str, Any], out: Path) -> str:
    """``tune.png``: one line per configuration through its client counts, budget line, winner marked."""
    fig, ax = plt.subplots(figsize=(11, 5.5))
    top = 1.0
    drawn = [r for r in doc["configs"] if r.get("points")]
    for i, r in enumerate(drawn):
        pts = r["points"]
        xs, ys = [p["p99_ms"] for p in pts], [p["images_per_s"] for p in pts]
        (line,) = ax.plot(xs, ys, marker="osD^v<>"[i % 7], ms=4, lw=1, label=r["key"], alpha=0.85,
                          color=plt.get_cmap("tab20")(i % 20))  # fmt: skip
        for p, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(str(p["connections"]), (x, y), fontsize=6, color=line.get_color(),
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        top = max(top, *ys)
    best = doc.get("best")
    if best is not None and best.get("operating"):
        op = best["operating"]
        ax.plot([op["p99_ms"]], [op["images_per_s"]], marker="*", ms=18, color="black", ls="none",
                label=f"{'best' if doc['met'] else 'closest'}: {best['key']} @{op['connections']}")  # fmt: skip
    ax.axvline(doc["budget_ms"], color="red", ls="--", lw=1, label=f"budget p99 {doc['budget_ms']:g} ms")
    xs_all = [p["p99_ms"] for r in doc["configs"] for p in r.get("points", [])] + [doc["budget_ms"]]
    lo, hi = min(xs_all) / 1.3, max(xs_all) * 1.3
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xticks([t for t in TICKS_MS if lo <= t <= hi], [f"{t:g}" for t in TICKS_MS if lo <= t <= hi])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvspan(lo, doc["budget_ms"], color="green", alpha=0.05)
    ax.set(xlabel="p99 latency, ms (wrk, client side); labels: client count",
           ylabel=f"{doc['unit']} (throughput)",
           title=f"Tuner: {doc['model']['name']}, {doc['scenario']}, budget p99 {doc['budget_ms']:g} ms")  # fmt: skip
    ax.set_ylim(0, top * 1.12)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out / "tune.png", dpi=110)
    plt.close(fig)
    return "tune.png"
