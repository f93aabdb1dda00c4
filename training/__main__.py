"""Command line: ``python -m training train|experiments`` (console script ``train-models``).

Errors that a user can fix (unknown model, missing data package, unwritable repository) end with one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training.train import DEFAULT_MODELS, MODEL_NAMES

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the tutorial's Keras models and export them to the model repository.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, default_models: str) -> None:
        p.add_argument(
            "--models", default=default_models, help=f"comma-separated, from {', '.join(MODEL_NAMES)}"
        )
        p.add_argument("--epochs", type=int, default=None, help="override every model's epoch count")
        p.add_argument("--seed", type=int, default=0, help="keras.utils.set_random_seed value (default 0)")
        p.add_argument(
            "--quick", action="store_true", help="tiny subsets and 1 epoch: a smoke run in under a minute"
        )

    train = sub.add_parser("train", help="train models and export them as new versions of the repository")
    common(train, ",".join(DEFAULT_MODELS))
    train.add_argument("--repo", default="models", help="model repository directory (default: models)")
    train.add_argument("--batch-size", type=int, default=None, help="override every model's batch size")
    train.add_argument("--missing-only", action="store_true", help="train only models with no version yet")
    train.add_argument(
        "--variants",
        default="int8",
        help="precision variants exported next to model.onnx when they pass their accuracy gate: "
        "int8, or none (default int8)",
    )
    train.add_argument(
        "--cifar10-dir",
        default=os.environ.get("CIFAR10_DIR"),
        help="folder with the CIFAR-10 python batches (default: env CIFAR10_DIR; else download if online)",
    )

    exp = sub.add_parser("experiments", help="activation-function comparison (MLP and CNN)")
    common(exp, "mlp,cnn")
    exp.add_argument(
        "--activations", default="relu,tanh,sigmoid,elu", help="comma-separated Keras activations"
    )
    exp.add_argument(
        "--out", default="reports/activations", help="report root; a timestamped folder is added"
    )
    return parser


def _positive(value: int | None, flag: str) -> None:
    from training.pipeline import UsageError

    if value is not None and value < 1:
        raise UsageError(f"{flag} must be a positive integer, got {value}")


def _train(args: argparse.Namespace) -> int:
    from training.pipeline import UsageError, parse_models, run_training, summary_table
    from training.train import TrainConfig
    from training.variants import parse_variants

    models = parse_models(args.models)
    _positive(args.epochs, "--epochs")
    _positive(args.batch_size, "--batch-size")
    try:
        variants = parse_variants(args.variants)
    except ValueError as exc:
        raise UsageError(f"--variants: {exc}") from None
    base = TrainConfig(
        model=models[0],
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        quick=args.quick,
        cifar10_dir=args.cifar10_dir,
        progress=True,
    )
    started = time.perf_counter()
    rows = run_training(models, Path(args.repo), base, missing_only=args.missing_only, variants=variants)
    if any(not r.skipped for r in rows):
        print(summary_table(rows, time.perf_counter() - started))
    return 0


def _experiments(args: argparse.Namespace) -> int:
    from training.experiments import run_experiments
    from training.pipeline import UsageError, parse_models

    models = parse_models(args.models)
    if set(models) - {"mlp", "cnn"}:
        raise UsageError("experiments compare activations on mlp and cnn only")
    _positive(args.epochs, "--epochs")
    activations = [a.strip() for a in args.activations.split(",") if a.strip()]
    import keras

    for name in activations:
        try:
            keras.activations.get(name)
        except ValueError:
            raise UsageError(f"unknown activation {name!r} (any keras.activations name works)") from None
    report = run_experiments(
        models, activations, epochs=args.epochs, seed=args.seed, quick=args.quick, out=Path(args.out)
    )
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from training.data import DataUnavailable
    from training.export import ExportError
    from training.pipeline import UsageError

    try:
        return _train(args) if args.command == "train" else _experiments(args)
    except (UsageError, DataUnavailable, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; no partial version was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
