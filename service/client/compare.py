"""``serving-cli compare MODEL``: the champion/challenger report of a model's versions, from ``/metrics``.

The server's ``/metrics`` sums every worker. The report covers what the server counted since it started,
or, with ``--window 60s``, the difference between two scrapes that far apart. Per version: its share of
the model's requests, request count, 5xx rate, latency p50/p99 (interpolated in the buckets of
``serving_request_duration_seconds`` as PromQL's ``histogram_quantile`` does), the traffic split's
variants, and its shadow figures (mirrored requests run and dropped, agreement with the champion).

The **champion** is the version that answered the most requests; every other version seen is a
challenger. A challenger is **as good** when every criterion with at least ``--min-samples`` samples
holds, and at least one has them:

- agreement with the champion (classifiers: rows with the same top class, either version the shadow)
  >= ``--min-agreement`` (0.99); regressors: mean absolute difference <= ``--max-abs-diff`` (0.05, in the
  model's output units);
- its 5xx rate, over real requests and over mirrored ones, <= the champion's + ``--max-error-delta`` (0.01);
- its p99 over real requests <= ``--max-p99-ratio`` (1.25) x the champion's p99.

It is **worse** when a criterion with enough samples fails, and **not enough data** otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""(sample name, its labels other than ``model``) -> value."""


@dataclass(frozen=True)
class Rules:
    min_agreement: float = 0.99
    max_abs_diff: float = 0.05
    max_error_delta: float = 0.01
    max_p99_ratio: float = 1.25
    min_samples: int = 100


@dataclass
class Version:
    """One version's figures in the report."""

    version: int
    requests: int
    share: float
    errors: int
    p50_s: float | None
    p99_s: float | None
    split: dict[str, int]
    shadow_runs: int
    shadow_errors: int
    shadow_dropped: dict[str, int]
    agreement_rows: int = 0
    agree: int = 0
    abs_diff_requests: int = 0
    mean_abs_diff: float | None = None
    verdict: dict[str, Any] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def agreement(self) -> float | None:
        return self.agree / self.agreement_rows if self.agreement_rows else None


def scrape(url: str, token: str | None = None, timeout: float = 10.0) -> str:
    request = urllib.request.Request(url.rstrip("/") + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(response.read().decode())


def model_samples(text: str, model: str) -> Samples:
    """The ``serving_*`` samples of ``model`` in a ``/metrics`` text."""
    from prometheus_client.parser import text_string_to_metric_families

    found: Samples = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("serving_") and s.labels.get("model") == model:
                found[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "model")))] += s.value
    return dict(found)


def delta(after: Samples, before: Samples) -> Samples:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative ``{le: count}`` buckets (``None``: no observations)."""
    items = sorted(buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    rank, lower, below = q * items[-1][1], 0.0, 0.0
    for upper, count in items:
        if count >= rank:
            if math.isinf(upper):
                return lower  # the +Inf bucket: the highest finite bound, as Prometheus answers
            return upper if count == below else lower + (upper - lower) * ((rank - below) / (count - below))
        lower, below = upper, count
    return lower


def by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """``sum by (keys) (name)``."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (sample, labels), value in samples.items():
        if sample == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keys)] += value
    return out


def versions(samples: Samples) -> list[Version]:
    """Every version the samples mention, oldest first."""
    requests = by(samples, "serving_requests_total", "version", "code")
    buckets = by(samples, "serving_request_duration_seconds_bucket", "version", "le")
    split = by(samples, "serving_traffic_requests_total", "version", "variant")
    runs = by(samples, "serving_shadow_requests_total", "version", "outcome")
    dropped = by(samples, "serving_shadow_dropped_total", "version", "reason")
    agreement = by(samples, "serving_shadow_agreement_total", "primary", "shadow")
    seen = {k[0] for k in [*requests, *split, *runs, *dropped]} | {v for k in agreement for v in k}
    total = sum(n for (v, _), n in requests.items() if v)
    rows = []
    for v in sorted((v for v in seen if v.isdigit()), key=int):
        count = sum(n for (ver, _), n in requests.items() if ver == v)
        latency = {float(le): n for (ver, le), n in buckets.items() if ver == v}
        rows.append(Version(
            int(v), int(count), count / total if total else 0.0,
            int(sum(n for (ver, code), n in requests.items() if ver == v and code.startswith("5"))),
            quantile(0.5, latency), quantile(0.99, latency),
            {variant: int(n) for (ver, variant), n in split.items() if ver == v and n},
            int(runs.get((v, "success"), 0)), int(runs.get((v, "error"), 0)),
            {reason: int(n) for (ver, reason), n in dropped.items() if ver == v and n},
        ))  # fmt: skip
    return rows


def _pair_sum(table: dict[tuple[str, ...], float], pair: set[str], result: str | None = None) -> float:
    return sum(n for k, n in table.items() if {k[0], k[1]} == pair and (result is None or k[2] == result))


def report(samples: Samples, model: str, window_s: float | None, rules: Rules = Rules()) -> dict[str, Any]:
    """The report as plain data (what ``--json`` prints); each challenger carries its verdict."""
    rows = versions(samples)
    champion = max(rows, key=lambda r: (r.requests, -r.version)) if rows else None
    agreement = by(samples, "serving_shadow_agreement_total", "primary", "shadow", "result")
    diff_sum = by(samples, "serving_shadow_abs_diff_sum", "primary", "shadow")
    diff_count = by(samples, "serving_shadow_abs_diff_count", "primary", "shadow")
    for row in rows:
        if champion is not None and row is not champion:
            pair = {str(row.version), str(champion.version)}
            row.agreement_rows = int(_pair_sum(agreement, pair))
            row.agree = int(_pair_sum(agreement, pair, "agree"))
            row.abs_diff_requests = int(_pair_sum(diff_count, pair))
            if row.abs_diff_requests:
                row.mean_abs_diff = _pair_sum(diff_sum, pair) / row.abs_diff_requests
            row.verdict = verdict(row, champion, rules)
    listed = [{**asdict(r), "error_rate": r.error_rate, "agreement": r.agreement} for r in rows]
    champ = champion.version if champion else None
    return {
        "model": model,
        "window_s": window_s,
        "champion": champ,
        "rules": asdict(rules),
        "versions": listed,
    }


def verdict(row: Version, champion: Version, rules: Rules) -> dict[str, Any]:
    """Each criterion with enough samples, held or failed, and the verdict they make."""
    enough, checks = rules.min_samples, []
    if row.agreement_rows >= enough and row.agreement is not None:
        text = f"agreement {row.agreement:.1%} >= {rules.min_agreement:.1%} ({row.agreement_rows} rows)"
        checks.append((row.agreement >= rules.min_agreement, text))
    if row.abs_diff_requests >= enough and row.mean_abs_diff is not None:
        text = f"mean |difference| {row.mean_abs_diff:.4g} <= {rules.max_abs_diff:g}"
        checks.append((row.mean_abs_diff <= rules.max_abs_diff, text))
    base = champion.error_rate or 0.0
    attempts = row.shadow_runs + row.shadow_errors
    for what, errors, count in [
        ("5xx", row.errors, row.requests),
        ("shadow errors", row.shadow_errors, attempts),
    ]:
        if count >= enough:
            text = f"{what} {errors / count:.1%} <= {base:.1%} + {rules.max_error_delta:.1%}"
            checks.append((errors / count <= base + rules.max_error_delta, text))
    if row.requests >= enough and row.p99_s is not None and champion.p99_s:
        text = f"p99 {_ms(row.p99_s)} <= {rules.max_p99_ratio:g} x {_ms(champion.p99_s)}"
        checks.append((row.p99_s <= rules.max_p99_ratio * champion.p99_s, text))
    failed = [text for ok, text in checks if not ok]
    return {
        "champion": champion.version,
        "verdict": "worse" if failed else "as good" if checks else "not enough data",
        "held": [text for ok, text in checks if ok],
        "failed": failed,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cells(row: dict[str, Any], champion: int | None) -> list[str]:
    agreement = "-"
    if row["agreement_rows"]:
        agreement = f"{_pct(row['agreement'])} of {row['agreement_rows']} rows"
    elif row["abs_diff_requests"]:
        agreement = f"mean |diff| {row['mean_abs_diff']:.4g} ({row['abs_diff_requests']} requests)"
    ran = row["shadow_runs"] + row["shadow_errors"]
    return [
        str(row["version"]), "champion" if row["version"] == champion else "challenger", _pct(row["share"]),
        str(row["requests"]), _pct(row["error_rate"]), _ms(row["p50_s"]), _ms(row["p99_s"]),
        " ".join(f"{k}:{n}" for k, n in row["split"].items()) or "-", str(ran) if ran else "-",
        " ".join(f"{k}:{n}" for k, n in row["shadow_dropped"].items()) or "-", agreement,
    ]  # fmt: skip


def render(data: dict[str, Any]) -> str:
    """The report as a table and one verdict line per challenger."""
    span = "since the server started" if data["window_s"] is None else f"over the last {data['window_s']:g} s"
    lines = [f"model {data['model']}: champion version {data['champion']}, {span} (all workers)"]
    head = [
        "version",
        "role",
        "share",
        "requests",
        "5xx",
        "p50",
        "p99",
        "split",
        "shadow",
        "dropped",
        "agreement",
    ]
    table = [head, *(_cells(row, data["champion"]) for row in data["versions"])]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    for row in data["versions"]:
        v = row["verdict"]
        if v:
            reasons = "; ".join([*(f"FAILED {t}" for t in v["failed"]), *v["held"]])
            reasons = reasons or f"fewer than {data['rules']['min_samples']} samples for every criterion"
            lines.append(
                f"verdict: version {row['version']} is {v['verdict']} vs version {v['champion']} ({reasons})"
            )
    return "\n".join(lines)


def parse_window(text: str) -> float:
    """``90``, ``90s``, ``5m`` or ``1h`` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 60s, 5m or 1h; got {text!r}") from None
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"the window must be > 0; got {text!r}")
    return seconds


def add_parser(sub: Any) -> None:
    """Register ``compare`` on the CLI's subcommands."""
    p = sub.add_parser("compare", help="champion/challenger report of a model's versions (from /metrics)")
    p.add_argument("model")
    p.add_argument("--url", default=argparse.SUPPRESS, help="server address (as the global --url)")
    p.add_argument("--window", type=parse_window, help="report the last WINDOW (60s, 5m) instead of all time")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--token", help="bearer token, where the server protects /metrics")
    for name, value in asdict(Rules()).items():
        p.add_argument(
            f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"default {value}"
        )


def run(args: argparse.Namespace) -> int:
    """The ``compare`` command: 0 with a report; 1 when ``/metrics`` cannot be read or has no such model."""
    rules = Rules(**{name: getattr(args, name) for name in asdict(Rules())})
    try:
        samples = model_samples(scrape(args.url, args.token), args.model)
        if args.window is not None:
            time.sleep(args.window)
            samples = delta(model_samples(scrape(args.url, args.token), args.model), samples)
    except urllib.error.HTTPError as exc:
        hint = " (pass --token: /metrics is protected)" if exc.code in (401, 403) else ""
        print(f"error: {args.url}/metrics answered HTTP {exc.code}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:  # URLError included: refused, unreachable, timed out
        print(f"error: cannot read {args.url}/metrics: {exc}", file=sys.stderr)
        return 1
    data = report(samples, args.model, args.window, rules)
    if not data["versions"]:
        print(f"error: {args.url}/metrics has no requests of model {args.model!r}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if args.json else render(data))
    return 0
