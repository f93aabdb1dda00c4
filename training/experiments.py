"""The tutorial's exercise "experiment with different activation functions", as a reproducible report.

The MLP and the CNN are trained with each activation on the same data, split and seed; the report
(``report.md``: activation, final training loss, final held-out accuracy, time) and a PNG of the
learning curves go to ``<out>/<UTC timestamp>/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from training.train import TrainConfig, load_data, train

# (full, quick) epochs per model; the CNN uses 3 full-data epochs so that 4 activations take ~1 minute.
EXPERIMENT_EPOCHS = {"mlp": (30, 5), "cnn": (3, 2)}


@dataclass
class Trial:
    """One (model, activation) training run."""

    model: str
    activation: str
    loss: float
    accuracy: float
    seconds: float
    curves: dict[str, list[float]]


def run_trials(
    models: list[str],
    activations: list[str],
    epochs: int | None,
    seed: int,
    quick: bool,
    progress: bool = True,
) -> list[Trial]:
    """Train every (model, activation) pair; each model's data is loaded once and shared."""
    trials: list[Trial] = []
    for name in models:
        base = TrainConfig(model=name, seed=seed, quick=quick)
        data = load_data(base)
        n_epochs = epochs or EXPERIMENT_EPOCHS[name][1 if quick else 0]
        for activation in activations:
            config = TrainConfig(
                model=name,
                epochs=n_epochs,
                seed=seed,
                quick=quick,
                activation=activation,
                validate=True,
                progress=progress,
            )
            started = time.perf_counter()
            metrics, model = train(config, data)
            curves = {k: [float(v) for v in vals] for k, vals in model.history.history.items()}
            trials.append(
                Trial(
                    name,
                    activation,
                    metrics["loss"],
                    metrics["accuracy"],
                    time.perf_counter() - started,
                    curves,
                )
            )
    return trials


def write_markdown(trials: list[Trial], path: Path, seed: int, quick: bool) -> None:
    lines = [
        "# Activation functions: MLP (diabetes) and CNN (MNIST)",
        "",
        f"Same data, split and seed ({seed}) for every row{' — quick run on subsets' if quick else ''}. "
        "Loss is the last epoch's training loss; accuracy is on the held-out test split.",
        "",
        "| model | activation | epochs | final loss | final accuracy | time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for t in trials:
        lines.append(
            f"| {t.model} | {t.activation} | {len(t.curves['loss'])} | {t.loss:.4f} | {t.accuracy:.4f} | {t.seconds:.1f} |"
        )
    best: dict[str, Trial] = {}
    for t in trials:
        if t.model not in best or t.accuracy > best[t.model].accuracy:
            best[t.model] = t
    lines += ["", *(f"Best on {m}: **{t.activation}** ({t.accuracy:.4f})." for m, t in best.items())]
    lines += ["", "![learning curves](learning_curves.png)", ""]
    path.write_text("\n".join(lines))


def plot_curves(trials: list[Trial], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    models = list(dict.fromkeys(t.model for t in trials))
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for row, name in enumerate(models):
        for t in (t for t in trials if t.model == name):
            epochs = range(1, len(t.curves["loss"]) + 1)
            axes[row][0].plot(epochs, t.curves["loss"], marker=".", label=t.activation)
            axes[row][1].plot(epochs, t.curves.get("val_accuracy", []), marker=".", label=t.activation)
        axes[row][0].set(title=f"{name}: training loss", xlabel="epoch", ylabel="loss")
        axes[row][1].set(title=f"{name}: held-out accuracy", xlabel="epoch", ylabel="accuracy")
        for ax in axes[row]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_experiments(
    models: list[str],
    activations: list[str],
    epochs: int | None = None,
    seed: int = 0,
    quick: bool = False,
    out: Path = Path("reports/activations"),
    progress: bool = True,
) -> Path:
    """Run the comparison and write ``report.md`` + ``learning_curves.png``; return the report path."""
    trials = run_trials(models, activations, epochs, seed, quick, progress)
    folder = out / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder.mkdir(parents=True, exist_ok=False)
    plot_curves(trials, folder / "learning_curves.png")
    write_markdown(trials, folder / "report.md", seed, quick)
    return folder / "report.md"
