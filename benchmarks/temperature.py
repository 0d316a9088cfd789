"""Precision against diversity: prior samples of trained runs at several sampling temperatures.

    .venv/bin/python benchmarks/temperature.py RUN [RUN ...] [--taus 0,0.25,0.5,0.75,1,1.25,1.5]
        [--num-samples 20] [--puzzles 200] [--out curves.png] [--json out.json]
    .venv/bin/python benchmarks/temperature.py --load A.json [B.json ...] --out curves.png   (redraw, no sampling)

`--temperature τ` multiplies the prior's σ at sampling only (τ = 0: the prior mean, one
trajectory per puzzle). For every run and τ this scores `num_samples` prior samples of each of
the first `puzzles` held-out inputs (gram_ppl.inference.evaluate.evaluate_run, exact ground
truth): single-sample validity (the precision) and coverage@N (the diversity: distinct valid
solutions over the number of solutions). For generation (the blank board) it draws
`num_samples x puzzles` boards and reports the share valid and the distinct valid boards over
the task's grid count. Prints a markdown table; `--out` draws validity against coverage, one
curve per run, τ written beside each point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json  # noqa: E402

from gram_ppl.inference import svi_pyro  # noqa: E402
from gram_ppl.inference.evaluate import evaluate_run  # noqa: E402
from gram_ppl.inference.run import load_run  # noqa: E402
from gram_ppl.inference.sampling import generate  # noqa: E402
from gram_ppl.tasks.sudoku import GRID_COUNTS  # noqa: E402


def score(run, tau: float, num_samples: int, puzzles: int | None) -> dict:
    """Validity and coverage of one run's prior samples at temperature tau."""
    if not run.task.checker:
        raise SystemExit(f"{run.config.task.name}: no checker, so no validity against temperature")
    if run.config.task.generates:  # Sudoku generation: the share of the task's grid set drawn
        n = num_samples * (puzzles or 1)
        g = generate(run, n, temperature=tau)
        total = GRID_COUNTS[run.task.size]
        return {"valid": g.share_valid, "coverage": g.distinct_valid / total, "distinct_valid": g.distinct_valid,
                "samples": n}  # fmt: skip
    m = evaluate_run(run, num_samples, puzzles=puzzles, temperature=tau)
    return {"valid": m["valid"], "coverage": m["coverage"], "exact": m["exact"], "puzzles": m["puzzles"]}


def _label(folder: str) -> str:
    return "/".join(Path(folder).parts[-2:])  # runs/demo/gram -> demo/gram


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--load", nargs="+", type=Path, help="--json files of earlier calls: table and curves, no sampling")
    p.add_argument("--taus", default="0,0.25,0.5,0.75,1,1.25,1.5")
    p.add_argument("--num-samples", type=int, default=20)
    p.add_argument("--puzzles", type=int, help="at most this many held-out puzzles (default all)")
    p.add_argument("--out", type=Path, help="PNG: validity against coverage, one curve per run")
    p.add_argument("--json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    svi_pyro.setup(args.threads)
    taus = [float(t) for t in args.taus.split(",")]
    if any(t < 0 for t in taus):
        raise SystemExit("temperatures must be >= 0")
    if bool(args.runs) == bool(args.load):
        raise SystemExit("give run folders or --load JSON files, not both")
    rows = {}
    for saved in args.load or ():
        rows.update(json.loads(saved.read_text())["rows"])
    for folder in args.runs:
        run = load_run(folder)
        rows[str(folder)] = [{"tau": t, **score(run, t, args.num_samples, args.puzzles)} for t in taus]
    taus = sorted({r["tau"] for rs in rows.values() for r in rs})
    print("| run | " + " | ".join(f"τ = {t:g}" for t in taus) + " |")
    print("|---|" + "---|" * len(taus))
    for name, rs in rows.items():
        at = {r["tau"]: f"{r['valid']:.1%} / {r['coverage']:.1%}" for r in rs}
        print(f"| {_label(name)}: valid / coverage | " + " | ".join(at.get(t, "") for t in taus) + " |")
    if args.out:
        fig, ax = plt.subplots(figsize=(5.6, 4.4), layout="constrained")
        for name, rs in rows.items():
            ax.plot([r["coverage"] for r in rs], [r["valid"] for r in rs], marker="o", label=_label(name))
            last = None
            for r in rs:  # label a point only if it is clear of the last labelled one (6x6's are stacked)
                here = (r["coverage"], r["valid"])
                if last is None or max(abs(here[0] - last[0]), abs(here[1] - last[1])) > 0.02:
                    ax.annotate(f"{r['tau']:g}", here, fontsize=7, xytext=(3, 3), textcoords="offset points")
                    last = here
        ax.set(xlabel=f"coverage@{args.num_samples} (diversity)", ylabel="one prior sample valid (precision)",
               title="sampling temperature τ: precision against diversity")  # fmt: skip
        ax.legend(fontsize=7)
        fig.savefig(args.out, dpi=110)
        plt.close(fig)
    write_json(args.json, {"rows": rows, "num_samples": args.num_samples, "puzzles": args.puzzles})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
