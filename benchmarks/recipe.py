"""Learning curves of training-recipe variants, from the history.json of `gram fit` run folders.

    .venv/bin/python benchmarks/recipe.py RUN [RUN ...] --out curves.png [--title T]

Left: validity of one sample per held-out puzzle, drawn from the prior (solid) and through the
guide (dashed), against training minutes. Right: the KL of every supervision step (nats per
puzzle, mean over the last 50 batches). A gap between the dashed and solid curves is y leaking
through the guide; only the solid curves count. Also prints a markdown table of the last values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_history(run: Path) -> tuple[list[dict], list[dict]]:
    history = json.loads((Path(run) / "history.json").read_text())
    return [r for r in history if "loss" in r], [r for r in history if "eval" in r]


def plot(runs: list[Path], title: str = "") -> plt.Figure:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for i, run in enumerate(runs):
        batches, evals = read_history(run)
        minutes = [r["seconds"] / 60 for r in evals]
        color = f"C{i}"
        ax.plot(minutes, [r["eval"].get("prior_valid", np.nan) for r in evals], "-o", color=color, ms=3, label=run.name)
        guide = [r["eval"].get("guide_valid", np.nan) for r in evals]
        ax.plot(minutes, guide, "--", color=color, alpha=0.7)
        if batches:
            kl = np.mean([r["kl"] for r in batches[-50:]], axis=0)
            bx.plot(np.arange(1, len(kl) + 1), kl, "-o", color=color, ms=3, label=run.name)
    ax.set(
        xlabel="training minutes",
        ylabel="valid (held-out, 1 sample)",
        ylim=(0, 1),
        title="prior (solid), guide (dashed)",
    )
    bx.set(xlabel="supervision step", ylabel="KL (nats per puzzle)", title="KL of every supervision step")
    bx.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def table(runs: list[Path]) -> str:
    lines = [
        "| run | minutes | batches | prior valid | guide valid | KL per step (last 50 batches) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        batches, evals = read_history(run)
        last = evals[-1]
        kl = np.mean([r["kl"] for r in batches[-50:]], axis=0) if batches else []
        lines.append(
            f"| {run.name} | {last['seconds'] / 60:.1f} | {last['step']} | {last['eval'].get('prior_valid', float('nan')):.1%} "
            f"| {last['eval'].get('guide_valid', float('nan')):.1%} | {' '.join(f'{v:.2f}' for v in kl)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    fig = plot(args.runs, args.title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(table(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
