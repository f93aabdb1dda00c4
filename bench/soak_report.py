"""The soak's report: a table on stdout, ``soak.json`` (everything, with the RSS/fd samples) and ``soak.md``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.config import ROOT
from bench.procs import foreign_busy_processes


def environment(a: argparse.Namespace) -> dict[str, Any]:
    """The machine and the run's settings; the load averages show how busy the shared machine was."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "date": dt.date.today().isoformat(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip() or "?",
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "foreign_busy": foreign_busy_processes(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k != "out"},
    }


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:g}"


def summary_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    s = doc["soak"]
    return [
        ("requests", f"{s['sent']:,} (+ {doc['warmup']['sent']:,} warm-up)"),
        ("errors / wrong answers", f"{s['errors']} / {s['wrong']} (warm-up {doc['warmup']['errors']} / "
                                   f"{doc['warmup']['wrong']})"),
        ("duration", f"{s['duration_s']:.1f} s"),
        ("throughput", f"{_num(s['rps'])} req/s"),
        ("clients", str(doc["environment"]["settings"]["clients"])),
        ("CPU, % of one core: server / clients / other processes",
         " / ".join(f"{doc['cpu'][k]:.0f}" for k in ("server_cpu_pct", "client_cpu_pct", "other_cpu_pct"))),
        ("load average (1 min) start / end",
         f"{doc['environment']['load_start'][0]} / {doc['environment'].get('load_end', ['?'])[0]}"),
    ]  # fmt: skip


def _process_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    before, after = doc.get("idle_before", {}), doc.get("idle_after", {})
    for p in doc["processes"]:
        if "rss_warm_mb" not in p:
            rows.append([p["process"], p["problem"], "", "", "", "", "", "", "✗"])
            continue
        rows.append([p["process"], f"{p['rss_warm_mb']:.1f}", f"{p['rss_end_mb']:.1f}",
                     f"{p['rss_growth_pct']:+.2f} %", f"{p.get('rss_late_growth_pct', 0.0):+.2f} %",
                     f"{p['rss_max_mb']:.1f}",
                     f"{p['fds_warm']} → {p['fds_end']} (max {p['fds_max']})",
                     f"{before.get(p['process'], {}).get('fds', '?')} / {after.get(p['process'], {}).get('fds', '?')}",
                     "✓" if p["ok"] else "✗"])  # fmt: skip
    return rows


PROC_HEAD = [
    "process",
    "RSS after warm-up MB",
    "RSS end MB",
    "growth",
    "2nd half",
    "RSS max MB",
    "fds warm → end",
    "fds idle before / after",
    "ok",
]


def table(doc: dict[str, Any]) -> str:
    """Plain-text summary for stdout."""
    summary = summary_rows(doc)
    width = max(len(k) for k, _ in summary)
    lines = [f"{k:<{width}}  {v}" for k, v in summary]
    rows = [PROC_HEAD, *_process_rows(doc)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(PROC_HEAD))]
    lines += ["", *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows), ""]
    lines += [f"{'PASS' if c['ok'] else 'FAIL'}  {c['criterion']}: {c['value']}" for c in doc["criteria"]]
    return "\n".join(lines)


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    out = [f"# Soak, {env['date']}", "", f"`{doc['command']}` (commit {env['commit']}, {env['cores']} cores, "
           f"Python {env['python']}; server ready {doc['started_s']} s after start)", ""]  # fmt: skip
    if env["foreign_busy"]:
        out += [f"Other busy processes at the start: {len(env['foreign_busy'])}.", ""]
    out += _md_table(["", ""], [list(r) for r in summary_rows(doc)])
    kinds = doc["soak"]["per_kind"]
    out += _md_table(["request kind", "requests", "errors", "wrong", "p50 ms", "p99 ms"],
                     [[k, f"{v['requests']:,}", str(v["errors"]), str(v["wrong"]), f"{v['p50_ms']}",
                       f"{v['p99_ms']}"] for k, v in kinds.items()])  # fmt: skip
    models = doc["soak"]["per_model"]
    out += _md_table(["model", *models], [["requests", *(f"{n:,}" for n in models.values())]])
    out += _md_table(PROC_HEAD, _process_rows(doc))
    out += _md_table(["criterion", "value", "ok"],
                     [[c["criterion"], c["value"], "✓" if c["ok"] else "✗"] for c in doc["criteria"]])  # fmt: skip
    errors = doc["soak"]["first_errors"] + doc["warmup"]["first_errors"]
    if errors:
        out += ["First errors:", "", *(f"- `{e}`" for e in errors)]
    return "\n".join(out).rstrip() + "\n"


def write(doc: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "soak.md").write_text(markdown(doc))
