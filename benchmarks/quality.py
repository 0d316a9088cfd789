"""Quality benchmark: GRAM against the deterministic baseline, identical networks and budgets.

    .venv/bin/python benchmarks/quality.py [--tasks nqueens8,coloring8,gen4,sudoku6]
        [--variants gram,deterministic] [--seeds 0,1,2] [--minutes 30 | --cpu-minutes 30 | --steps N]
        [--out runs/quality] [--json runs/quality.json]

Tasks (paper Table 1 and §10, our data protocols in docs/data.md):
- nqueens8: 8-Queens completion, paper protocol; accuracy (one prior sample valid) and
  coverage@20 on the held-out inputs;
- coloring8: 3-colouring of 8-node graphs, paper protocol; conflict edges of one sample summed
  over the test set, accuracy and coverage@20 (colourings up to colour names);
- gen4: unconditional 4×4 Sudoku, trained on 230 of the 288 grids; validity and uniqueness of
  5,000 samples, how many of the 288 grids and of the 58 held-out grids appear;
- gen6, gen9 (not in the default list): unconditional 6×6 / 9×9 Sudoku from 10,000 random
  training grids (1,000 held out); validity, distinct valid boards, the share of valid samples
  that copy a training grid, held-out grids generated (inference.evaluate.generation_report);
- sudoku6: 6×6 Sudoku completion with unique solutions; exact accuracy of one prior sample at
  the run's sample depth (config.sample_depth: 16·N_sup) and against depth (every step up to
  it), and against width (majority vote over N prior samples at the sample depth);
- nqueens10_rows, coloring10 (not in the default list: 30-minute runs each): 10-Queens in the
  row encoding (paper protocol, 7-9 queens removed) and 10-node colouring, as nqueens8/coloring8;
- coloring8_rows, coloring10_rows (not in the default list): coloring8's / coloring10's graphs
  with one token per vertex (its neighbour set), scored as coloring8;
- sudoku9 (not in the default list): hard 9x9 Sudoku, the local generator's minimal puzzles
  with solver effort >= 1 (1,000 train / 100 test, about 2 minutes to build), scored as sudoku6;
  the paper's Sudoku-Extreme setting is the accelerator preset `--preset paper-sudoku`;
- arc1_10 (not in the default list): ARC-AGI-1 on a 10x10 canvas (the 178 training and 77
  evaluation puzzles whose grids fit, 8 augmented versions each, one puzzle-embedding token):
  per-row exact accuracy and pass@2 over the versions of each held-out test pair;
- digits: unconditional generation of binarised 8x8 digits (docs/data.md); the judge's
  recognisable share, the Fréchet distance of its features to held-out digits (with the
  training digits' and uniform noise's as references), class entropy, copies of training images
  and distinct share of samples x puzzles images.

Each (task, variant, seed) trains into OUT/{task}-{variant}-s{seed}; a finished folder is
reused, a shorter one resumed up to its budget, so the benchmark can be interrupted and re-run.
--cpu-minutes budgets CPU time of the training process (equal compute whatever the load).
Prints a markdown table (mean ± s.d. over seeds) shaped like the paper's Table 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import width_curves, write_json  # noqa: E402

from gram_ppl.config import FitConfig, GramConfig, NetConfig, TaskConfig, sample_depth, temperature_record  # noqa: E402
from gram_ppl.inference.evaluate import generation_report  # noqa: E402
from gram_ppl.inference.run import evaluate_run, fit, load_config, load_run  # noqa: E402
from gram_ppl.inference.sampling import generate, rollout  # noqa: E402
from gram_ppl.models.priors import PRIORS  # noqa: E402
from gram_ppl.overrides import apply_overrides  # noqa: E402
from gram_ppl.seeds import seed_for  # noqa: E402

TASKS = {
    "nqueens8": TaskConfig(name="nqueens", size=8),
    "coloring8": TaskConfig(name="coloring", size=8),
    "gen4": TaskConfig(name="sudoku", size=4, mode="generate"),
    "gen6": TaskConfig(name="sudoku", size=6, mode="generate"),
    "gen9": TaskConfig(name="sudoku", size=9, mode="generate"),
    "sudoku6": TaskConfig(name="sudoku", size=6, mode="unique"),
    "nqueens10_rows": TaskConfig(name="nqueens_rows", size=10),
    "coloring10": TaskConfig(name="coloring", size=10),
    "coloring8_rows": TaskConfig(name="coloring_rows", size=8),
    "coloring10_rows": TaskConfig(name="coloring_rows", size=10),
    "digits": TaskConfig(name="digits", size=8),
    "sudoku9": TaskConfig(name="sudoku", size=9, mode="unique", min_effort=1, num_train=1000, num_test=100),
    "arc1_10": TaskConfig(name="arc1", size=10),
}
NETS = {"arc1_10": NetConfig(prefix_tokens=1)}  # the puzzle embedding's token; the default network otherwise
DEFAULT_TASKS = ("nqueens8", "coloring8", "gen4", "sudoku6")
GENERATE = ("gen4", "gen6", "gen9")  # unconditional Sudoku grids: inference.evaluate.generation_report
SOLVED = (
    "nqueens8",
    "coloring8",
    "nqueens10_rows",
    "coloring10",
    "coloring8_rows",
    "coloring10_rows",
    "arc1_10",
)  # accuracy and coverage against exact solutions
PAPER = {  # paper Table 1 (GRAM / TRM), where it reports the task
    "nqueens8": "GRAM 99.7% acc., 90.3% cov. / TRM 66.8%, 36.1%",
    "coloring8": "GRAM 2.7 conflicts, 85.8% cov.",
    "nqueens10_rows": "GRAM 91.7% acc., 63.5% cov. / TRM 47.9%, 13.2% (cell tokens)",
    "coloring10_rows": "GRAM 51.3% cov. (colouring-10, edge tokens)",
}
WIDTHS = (1, 2, 4, 8, 16, 20)


def train(name: str, variant: str, seed: int, minutes, steps, out: Path, overrides, cpu_minutes=None,
          eval_minutes: float | None = None) -> Path:  # fmt: skip
    """Train (or resume, or reuse) one run folder."""
    folder = out / f"{name}-{variant}-s{seed}"
    cfg = GramConfig(task=TASKS[name], net=NETS.get(name, NetConfig()), fit=FitConfig(variant=variant, seed=seed))
    cfg = apply_overrides(cfg, overrides, PRIORS)  # priors.* edits the model file's PRIORS block, as gram fit does
    resume = (folder / "checkpoint.pt").is_file()
    if resume:
        if load_config(folder).fit.variant != variant:
            raise SystemExit(f"{folder}: holds another variant")
        history = json.loads((folder / "history.json").read_text())
        done_s = max((r["seconds"] for r in history), default=0.0)
        done_cpu = max((r.get("cpu_seconds", 0.0) for r in history), default=0.0)
        done_steps = max((r["step"] for r in history), default=0)
        if (
            (minutes is not None and done_s >= 60 * minutes)
            or (cpu_minutes is not None and done_cpu >= 60 * cpu_minutes)
            or (steps is not None and done_steps >= steps)
        ):
            return folder  # finished: reused as it is (even if the model file was edited since)
    fit(cfg, folder, minutes=minutes, steps=steps, cpu_minutes=cpu_minutes, resume=resume, progress=False,
        eval_every_s=60 * (eval_minutes or (1.0 if name in GENERATE else 5.0)))  # fmt: skip
    return folder


def evaluate(name: str, folder: Path, samples: int, puzzles: int | None, gen: int) -> dict:
    run = load_run(folder)
    history = json.loads((folder / "history.json").read_text())
    train_s = max((r["seconds"] for r in history), default=0.0)
    batches = max((r["step"] for r in history if "loss" in r), default=0)
    cpu_s = max((r.get("cpu_seconds", 0.0) for r in history), default=0.0)
    info = {"minutes": train_s / 60, "cpu_minutes": cpu_s / 60, "batches": batches,
            "params": sum(p.numel() for p in run.net.parameters())}  # fmt: skip
    if name == "digits":
        return {**info, **evaluate_run(folder, num_samples=samples, puzzles=puzzles)}
    if name in SOLVED:
        m = evaluate_run(folder, num_samples=samples, puzzles=puzzles)
        keys = ("valid", "exact", "any_valid", "coverage", "conflicts_sum", "conflicts_mean", "tv_uniform", "puzzles",
                "pass@2", "pass@1", "test_pairs")  # fmt: skip
        return {**info, **{k: m[k] for k in keys if k in m}}
    if name in GENERATE:
        g = generate(run, gen)
        report = generation_report(
            g.boards, g.valid, run.data.train.y, run.data.test.y, g.conflicts, run.task.grid_count
        )
        kept = {"kept_best": run.best} if run.best is not None else {}  # fit.keep_best: the evaluation sampled
        return {**info, **report, "unique_share": report["distinct_valid"] / max(1, gen),
                "held_out_seen": report["held_out_generated"], "sample_depth": sample_depth(run.config),
                **temperature_record(run.config), **kept}  # fmt: skip
    # sudoku6: exact accuracy against depth and width (unique solutions: valid == exact), at the
    # run's sample depth (config.sample_depth: 16·N_sup for these puzzles) and up to it
    task, test, cfg = run.data.task, run.data.test, run.config
    x, y, depth = test.x[:puzzles], test.y[:puzzles], sample_depth(cfg)
    r = rollout(run.mod, run.net, cfg, x, samples, max(depth, 2 * cfg.fit.n_sup), seed=seed_for(cfg, "evaluate"))
    by_depth = [float((b == y[None]).all(-1).mean()) for b in r.per_step]
    # the vote, the value head's pick and the any-correct bound by width, at the sample depth (the
    # value head is read at the rollout's end: the sample depth unless 2·N_sup is deeper)
    exact = lambda b: (b == y).all(-1)  # noqa: E731  (B, L_y) -> (B,)
    width = width_curves(task, r.per_step[depth - 1], r.value, exact, WIDTHS, x)
    if len(r.per_step) != depth:
        del width["value_by_width"]
    return {**info, "exact": by_depth[depth - 1], "sample_depth": depth, "train_depth": cfg.fit.n_sup,
            "exact_train_depth": by_depth[cfg.fit.n_sup - 1],
            "exact_by_depth": by_depth, **width, "puzzles": len(x)}  # fmt: skip


def _powers(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n."""
    return sorted({*(2**k for k in range(n.bit_length()) if 2**k <= n), n})


def _ms(values, fmt: str) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = f" ± {fmt.format(statistics.stdev(values))}" if len(values) > 1 else ""
    return fmt.format(mean) + sd


def table(results: dict) -> str:
    rows = [
        "| task | variant | seeds | wall minutes | CPU minutes | batches | params | result (mean ± s.d.) | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, variant), runs in results.items():

        def get(key, runs=runs):
            return [r[key] for r in runs]

        if name == "digits":
            res = (f"recognisable {_ms([100 * v for v in get('recognisable')], '{:.1f}')}%, Fréchet "
                   f"{_ms(get('frechet'), '{:.2f}')} (training digits {runs[0]['frechet_real']:.2f}, noise "
                   f"{runs[0]['frechet_noise']:.1f}), class entropy "
                   f"{_ms(get('class_entropy'), '{:.2f}')}, copies {_ms([100 * v for v in get('copies')], '{:.1f}')}%, "
                   f"distinct {_ms([100 * v for v in get('distinct')], '{:.1f}')}% of {runs[0]['samples']} samples")  # fmt: skip
        elif name in SOLVED:
            res = f"acc. {_ms([100 * v for v in get('valid')], '{:.1f}')}%, cov.@20 {_ms([100 * v for v in get('coverage')], '{:.1f}')}%"
            if name.startswith("arc"):
                res += (
                    f", pass@2 {_ms([100 * v for v in get('pass@2')], '{:.1f}')}% of {runs[0]['test_pairs']} test pairs"
                )
            if name.startswith("coloring"):
                res += f", conflicts {_ms(get('conflicts_sum'), '{:.0f}')} over {runs[0]['puzzles']} graphs"
        elif name in GENERATE:
            res = (f"valid {_ms([100 * v for v in get('valid')], '{:.1f}')}%, distinct valid "
                   f"{_ms(get('distinct_valid'), '{:.0f}')}{'/288' if name == 'gen4' else ''}, copies of training grids "
                   f"{_ms([100 * v for v in get('copies')], '{:.1f}')}% of valid, held-out seen "
                   f"{_ms(get('held_out_seen'), '{:.0f}')}/{runs[0]['held_out']} in {runs[0]['samples']} samples")  # fmt: skip
        else:
            curve = [statistics.fmean(v) for v in zip(*get("exact_by_depth"), strict=True)]
            shown = sorted({*range(1, 2 * runs[0]["train_depth"] + 1), *_powers(len(curve))})  # 1..2·N_sup, 16, 32, ...
            depth = " / ".join(f"{d}: {100 * curve[d - 1]:.1f}" for d in shown)
            width = " / ".join(
                f"{n}: {100 * statistics.fmean(r['vote_by_width'][n] for r in runs):.1f}"
                for n in runs[0]["vote_by_width"]
            )
            res = (f"exact {_ms([100 * v for v in get('exact')], '{:.1f}')}% at depth {runs[0]['sample_depth']}; "
                   f"by depth {depth}; vote by width (at depth {runs[0]['sample_depth']}) {width}")  # fmt: skip
            for key, what in (("value_by_width", "value head's pick"), ("checker_by_width", "the checker's pick"),
                              ("any_by_width", "any sample exact (bound)")):  # fmt: skip
                if key in runs[0]:
                    res += f"; {what} " + " / ".join(
                        f"{n}: {100 * statistics.fmean(r[key][n] for r in runs):.1f}" for n in runs[0][key]
                    )
        rows.append(
            f"| {name} | {variant} | {len(runs)} | {_ms(get('minutes'), '{:.1f}')} | {_ms(get('cpu_minutes'), '{:.1f}')} | {_ms(get('batches'), '{:.0f}')} | {runs[0]['params']:,} | {res} | {PAPER.get(name, '-') if variant == 'gram' else ''} |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"of {', '.join(TASKS)}")
    p.add_argument("--variants", default="gram,deterministic")
    p.add_argument("--seeds", default="0,1,2")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=30.0, help="training minutes per model")
    budget.add_argument("--cpu-minutes", type=float, help="CPU minutes of the training process per model instead")
    budget.add_argument("--steps", type=int, help="training batches per model instead (smoke runs)")
    p.add_argument("--samples", type=int, default=20, help="prior samples per puzzle")
    p.add_argument("--puzzles", type=int, help="at most this many held-out puzzles (default all)")
    p.add_argument(
        "--eval-minutes",
        type=float,
        help="wall minutes between the training runs' held-out evaluations (default 1 for generation, where "
        "fit.keep_best samples from the best of them, else 5; at most a tenth of the time either way)",
    )
    p.add_argument("--gen", type=int, default=5000, help="samples for the generation tasks (gen4, gen6, gen9)")
    p.add_argument("--set", action="append", default=[], help="config override for every run, e.g. net.dim=128")
    p.add_argument("--out", type=Path, default=Path("runs/quality"))
    p.add_argument("--json")
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        p.error(f"unknown tasks {sorted(unknown)}; choose from {list(TASKS)}")
    minutes = None if (args.steps or args.cpu_minutes) else args.minutes
    results = {}
    for name in tasks:
        for variant in args.variants.split(","):
            runs = []
            for seed in (int(s) for s in args.seeds.split(",")):
                folder = train(name, variant, seed, minutes, args.steps, args.out, args.set, args.cpu_minutes,
                               args.eval_minutes)  # fmt: skip
                runs.append(
                    {"seed": seed, "run": str(folder), **evaluate(name, folder, args.samples, args.puzzles, args.gen)}
                )
                print(f"{folder}: {json.dumps(runs[-1])}", file=sys.stderr)
            results[(name, variant)] = runs
    print(table(results))
    write_json(args.json, [{"task": t, "variant": v, "runs": r} for (t, v), r in results.items()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
