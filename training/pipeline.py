"""Glue between the CLI and the pure parts: pick models, train each, export it, summarise."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from training import data as datasets
from training.cards import model_card
from training.export import ensure_writable, existing_versions, export
from training.reference import reference_statistics
from training.train import MODEL_NAMES, TrainConfig, load_data, train
from training.variants import DEFAULT_VARIANTS, build_variants


class UsageError(ValueError):
    """The command line asks for something that cannot be done (unknown model, bad option)."""


@dataclass
class Outcome:
    """One row of the summary table."""

    model: str
    version: int | None
    metric: str
    parity: float | None
    seconds: float
    skipped: str = ""


def parse_models(text: str) -> list[str]:
    """``"linear, cnn"`` -> ``["linear", "cnn"]``; unknown names raise :class:`UsageError`."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        what = f"unknown model {', '.join(map(repr, unknown))}" if unknown else "no model given"
        raise UsageError(f"{what}; valid names: {', '.join(MODEL_NAMES)}")
    return names


def has_version(repo: Path, name: str) -> bool:
    """True when ``repo/name`` holds at least one complete version (one with ``metadata.json``)."""
    return any((repo / name / str(v) / "metadata.json").is_file() for v in existing_versions(repo / name))


def headline(name: str, metrics: dict[str, float]) -> str:
    """The metric that matters for ``name``, as short text for the summary."""
    if name == "linear":
        return f"f(5)={metrics['prediction_at_5']:.4f}"
    if name == "mlp":
        return f"acc={metrics['accuracy']:.3f} auc={metrics['auc']:.3f} (majority {metrics['majority_baseline']:.3f})"
    if name == "rnn":
        return f"test_mse={metrics['test_mse']:.4f} (naive {metrics['baseline_mse']:.4f})"
    return f"acc={metrics['accuracy']:.4f}"


def preflight(models: list[str], repo: Path) -> None:
    """Fail before any training when the repository or a data package is missing."""
    ensure_writable(repo)
    if "cnn" in models:
        datasets.mnist_path()


def train_and_export(config: TrainConfig, repo: Path, variants: Sequence[str] = DEFAULT_VARIANTS) -> Outcome:
    """Load data, train, export one model (with ``variants``); CIFAR-10 without data becomes a skipped row."""
    started = time.perf_counter()
    try:
        data = load_data(config)
    except datasets.DataUnavailable as exc:
        if config.model == "cifar10" and not config.cifar10_dir:
            return Outcome(config.model, None, "", None, 0.0, skipped=str(exc))
        raise
    metrics, model = train(config, data)
    card = model_card(config.model, data, config.seed)
    extra: dict[str, Any] = {
        "seed": config.seed,
        "epochs": config.resolved_epochs,
        "batch_size": config.resolved_batch_size,
        "activation": config.activation,
        "quick": config.quick,
        "reference": reference_statistics(model, data.x_train, card.labels, config.seed),
    }
    metadata = export(
        model,
        repo,
        name=config.model,
        card=card,
        metrics=metrics,
        dataset=data.describe(),
        training_seconds=metrics["train_seconds"],
        extra=extra,
        variants=partial(build_variants, name=config.model, data=data, requested=variants, seed=config.seed),
    )
    for precision, v in metadata["variants"].items():
        if v["exported"]:  # the ones the gate kept out were logged as warnings already
            print(f"{config.model}: {precision} variant exported ({v['metric']} {v['value']:.4f}, fp32 "
                  f"{v['fp32']:.4f}; max deviation {v['max_abs_deviation']:.2g})", file=sys.stderr)  # fmt: skip
    parity = metadata["parity"]
    worst = max(parity["onnx_vs_saved_model"], parity["onnx_vs_keras"])
    return Outcome(
        config.model,
        metadata["version"],
        headline(config.model, metrics),
        worst,
        time.perf_counter() - started,
    )


def summary_table(rows: list[Outcome], total: float) -> str:
    """A plain-text table of the run (model, version, metric, parity diff, seconds)."""
    lines = [f"{'model':<8} {'version':>7}  {'metric':<48} {'parity':>9} {'seconds':>8}"]
    for r in rows:
        if r.skipped:  # already reported on its own line
            continue
        lines.append(f"{r.model:<8} {r.version!s:>7}  {r.metric:<48} {r.parity:>9.2e} {r.seconds:>8.1f}")
    lines.append(f"total {total:.1f} s")
    return "\n".join(lines)


def run_training(
    models: list[str],
    repo: Path,
    base: TrainConfig,
    missing_only: bool = False,
    variants: Sequence[str] = DEFAULT_VARIANTS,
) -> list[Outcome]:
    """Train and export ``models`` in order (all share ``base``'s options and ``variants``); print progress
    notes to stderr."""
    todo = []
    for name in models:
        if missing_only and has_version(repo, name):
            print(f"{name}: a version exists in {repo}, skipped (--missing-only)", file=sys.stderr)
        else:
            todo.append(name)
    preflight(todo, repo)
    rows: list[Outcome] = []
    for name in todo:
        config = TrainConfig(
            model=name,
            epochs=base.epochs,
            batch_size=base.batch_size,
            seed=base.seed,
            quick=base.quick,
            cifar10_dir=base.cifar10_dir,
            progress=base.progress,
        )
        row = train_and_export(config, repo, variants)
        if row.skipped:
            print(f"skipped {name}: {row.skipped}", file=sys.stderr)
        rows.append(row)
    return rows
