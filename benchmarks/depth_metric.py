"""Depth extrapolation of generation (the paper's Table 2 shape): a generation run's sample quality
against the number of supervision steps used at sampling, from the training depth up to many
times it.

    .venv/bin/python benchmarks/depth_metric.py RUN [--multiples 1,2,4,8,16] [--samples 1000]
        [--out curve.png] [--json out.json] [--latest] [--temperature τ]

For a digits run: the judge's recognisable share and the Fréchet distance to held-out digits
(gram_ppl.tasks.digits.image_metrics, with the training-digit and noise references); for a Sudoku
generation run: the valid share and distinct valid grids (inference.evaluate.generation_report).
`--samples` prior samples of the blank input at each depth (seed stream "generate", the one
`benchmarks/quality.py` and `gram generate` draw from). A run trained with fit.keep_best (the
default for Sudoku generation) is sampled from its best evaluation's weights; `--latest` samples
its latest weights instead (what keeping the best is worth); `--temperature` scales the prior's σ
at sampling (1: the model as trained; START:END a schedule over each depth's steps; default the
run's, config.temperature_schedule).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json  # noqa: E402

from gram_ppl.cli.common import temperature as temperature_type  # noqa: E402
from gram_ppl.config import temperature_record  # noqa: E402
from gram_ppl.inference.api import generate, generation_report, load_run  # noqa: E402


def depth_rows(
    folder: str, multiples: list[int], samples: int, latest: bool = False, temperature: float | None = None
) -> list[dict]:
    run = load_run(folder, latest=latest)
    base, tau = run.config.fit.n_sup, temperature_record(run.config, temperature)
    rows = []
    judge = None
    for m in multiples:
        g = generate(run, samples, depth=m * base, temperature=temperature)
        if run.task.checker:
            row = generation_report(g.boards, g.valid, run.data.train.y, run.data.test.y, g.conflicts,
                                    run.task.grid_count)  # fmt: skip
        else:
            from gram_ppl.tasks.digits import image_metrics, judge_for

            judge = judge or judge_for(run.data.train.y)
            row = image_metrics(g.boards, run.data.train.y, judge)
        rows.append({"depth": m * base, "multiple": m, **tau, **row})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--multiples", default="1,2,4,8,16", help="sampling depths as multiples of the training N_sup")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--out", help="a PNG of the curve")
    p.add_argument("--json")
    p.add_argument("--latest", action="store_true", help="the latest weights, not the kept ones (fit.keep_best)")
    p.add_argument("--temperature", type=temperature_type, help="scale the prior's σ (default: the run's)")
    args = p.parse_args(argv)
    multiples = [int(v) for v in args.multiples.split(",")]
    rows = depth_rows(args.run, multiples, args.samples, args.latest, args.temperature)
    images = "frechet" in rows[0]
    keys = ("recognisable", "frechet") if images else ("valid", "distinct_valid")
    print(f"| depth | {keys[0]} | {keys[1]} |\n|---|---|---|")
    for r in rows:
        print(f"| {r['depth']} | {r[keys[0]]:.3f} | {r[keys[1]]:.3f} |")
    if args.out:
        from gram_ppl.plots import PlotFigure

        fig = PlotFigure(figsize=(8, 3.2), layout="constrained")
        for ax, key in zip(fig.subplots(1, 2), keys, strict=True):
            ax.plot([r["depth"] for r in rows], [r[key] for r in rows], marker="o")
            if key == "frechet":
                for ref, style in (("frechet_real", "--"), ("frechet_noise", ":")):
                    ax.axhline(rows[0][ref], color="0.5", ls=style, lw=0.8, label=ref.replace("frechet_", ""))
                ax.legend(fontsize=7)
            ax.set(xscale="log", xlabel="supervision steps at sampling (log)", ylabel=key, xticks=[r["depth"] for r in rows],
                   xticklabels=[str(r["depth"]) for r in rows])  # fmt: skip
        fig.save(args.out)
    write_json(args.json, rows)
    return 0 if np.isfinite([r[keys[0]] for r in rows]).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
