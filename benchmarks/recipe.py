"""Learning curves of training-recipe variants, from the history.json of `gram fit` run folders.

    .venv/bin/python benchmarks/recipe.py RUN [RUN ...] --out curves.png [--title T] [--x cpu|wall|batches]

Left: validity of one sample per held-out puzzle, drawn from the prior (solid) and through the
guide (dashed), against CPU minutes of the training process (`--x cpu`, the default where the
history records them: load-independent), wall minutes or batches. Right: the KL of every supervision step (nats per
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


XLABEL = {"cpu": "training CPU minutes", "wall": "training minutes (wall)", "batches": "batches"}


def _x(record: dict, x: str) -> float:
    if x == "batches":
        return record["step"]
    if x == "cpu" and "cpu_seconds" in record:
        return record["cpu_seconds"] / 60
    return record["seconds"] / 60


def plot(runs: list[Path], title: str = "", x: str = "cpu") -> plt.Figure:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for i, run in enumerate(runs):
        batches, evals = read_history(run)
        minutes = [_x(r, x) for r in evals]
        color = f"C{i}"
        ax.plot(minutes, [r["eval"].get("prior_valid", np.nan) for r in evals], "-o", color=color, ms=3, label=run.name)
        guide = [r["eval"].get("guide_valid", np.nan) for r in evals]
        ax.plot(minutes, guide, "--", color=color, alpha=0.7)
        if batches:
            kl = np.mean([r["kl"] for r in batches[-50:]], axis=0)
            bx.plot(np.arange(1, len(kl) + 1), kl, "-o", color=color, ms=3, label=run.name)
    ax.set(
        xlabel=XLABEL[x],
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
        "| run | CPU minutes | wall minutes | batches | prior valid | guide valid | KL per step (last 50 batches) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        batches, evals = read_history(run)
        last = evals[-1]
        kl = np.mean([r["kl"] for r in batches[-50:]], axis=0) if batches else []
        lines.append(
            f"| {run.name} | {last.get('cpu_seconds', float('nan')) / 60:.1f} | {last['seconds'] / 60:.1f} | {last['step']} | {last['eval'].get('prior_valid', float('nan')):.1%} "
            f"| {last['eval'].get('guide_valid', float('nan')):.1%} | {' '.join(f'{v:.2f}' for v in kl)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="")
    p.add_argument("--x", choices=sorted(XLABEL), default="cpu", help="the curves' x axis")
    args = p.parse_args(argv)
    fig = plot(args.runs, args.title, args.x)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(table(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
