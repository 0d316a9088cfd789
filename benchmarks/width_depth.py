"""Test-time scaling of trained runs: the share of held-out inputs solved against depth (supervision
steps, up to --max-depth) and against width (a majority vote over N prior samples), side by side.

    .venv/bin/python benchmarks/width_depth.py RUN [RUN ...] [--samples 20] [--puzzles 100]
        [--max-depth 8] [--vote-depth D] [--halt] [--temperature τ] [--out curves.png] [--json out.json]

For each run folder: `--samples` prior trajectories of each of the first `--puzzles` held-out
inputs, run to `--max-depth` steps (seed stream "evaluate", gram_ppl/seeds.py). Depth curve: the
share of single samples that are valid after each step (on unique-solution puzzles, valid =
exact). Width curve: the share of inputs whose voted board (the most frequent of the first N
samples after `--vote-depth` steps, default the training depth) is valid, for N = 1, 2, 4, 8, 16,
20. Beside the vote, after `--max-depth` steps: the board the value head picks (LPRM: the highest
v_ψ(h) of the first N samples, the paper's other selector), the checker's pick (the vote among
the first N samples the task's checker accepts: it needs no answer) and, as the bound of every
selector, the share of inputs with a valid board among the first N samples (any@N; the checker's
pick reaches it: wherever some sample is valid it picks a valid one). `--halt`: also the valid
share and mean steps of draws (same seed) stopped by the halt head (σ(q) > 0.5, at most
--max-depth steps). `--temperature τ` samples every run at τ (the prior's σ
scaled), `--temperature START:END` with τ moving linearly over the --max-depth steps (so the
depth curve's step n is step n of that schedule); default each run's own
(config.temperature_schedule). Prints a markdown table;
`--out` draws both curves (`make demo` shows them for its 4x4 Sudoku runs). `--from-quality
FILE ...` adds the runs of `benchmarks/quality.py --json` files (Sudoku puzzles) without sampling
them again: one sample's exact share by depth and the vote by width at the sample depth.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import width_curves, write_json  # noqa: E402

from gram_ppl.cli.common import temperature as temperature_type  # noqa: E402
from gram_ppl.config import describe_temperature, temperature_record  # noqa: E402
from gram_ppl.inference.api import load_run  # noqa: E402
from gram_ppl.inference.sampling import rollout  # noqa: E402
from gram_ppl.seeds import seed_for  # noqa: E402

WIDTHS = (1, 2, 4, 8, 16, 20)
# the selectors scored beside the vote, by width, as the table names them
SELECTORS = {"value_by_width": "value head's pick", "checker_by_width": "the checker's pick",
             "any_by_width": "any sample valid (bound)"}  # fmt: skip


def curves(folder: str, samples: int, puzzles: int, max_depth: int, vote_depth: int | None = None,
           halt: bool = False, temperature: float | None = None) -> dict:  # fmt: skip
    run = load_run(folder)
    cfg, task, test = run.config, run.data.task, run.data.test
    vote_depth = cfg.fit.n_sup if vote_depth is None else vote_depth
    if not 1 <= vote_depth <= max_depth:
        raise SystemExit(f"--vote-depth must be between 1 and --max-depth ({max_depth}), got {vote_depth}")
    x = test.x[:puzzles]
    draw = dict(temperature=temperature, seed=seed_for(cfg, "evaluate"))  # the run's τ unless asked
    r = rollout(run.mod, run.net, cfg, x, samples, max_depth, **draw)
    depth = [float(task.is_valid(x[None], b).mean()) for b in r.per_step]  # (S,) single-sample validity
    at = r.per_step[vote_depth - 1]  # (N, B, L_y) after vote_depth steps
    valid = lambda b: task.is_valid(x, b)  # noqa: E731  (B, L_y) -> (B,)
    end = width_curves(task, r.per_step[-1], r.value, valid, WIDTHS, x)  # r.value: the value head after max_depth
    width = (end if vote_depth == max_depth else width_curves(task, at, r.value, valid, WIDTHS))["vote_by_width"]
    name = f"{Path(folder).name} ({cfg.fit.variant}{'' if temperature is None else f', τ = {describe_temperature(cfg, temperature)}'})"
    halted = {}
    if halt:  # draws of the same seed, each stopped at the first step whose halt head says σ(q) > 0.5
        h = rollout(run.mod, run.net, cfg, x, samples, max_depth, halt=True, **draw)
        halted = {"halted": {"valid": float(task.is_valid(x[None], h.boards).mean()),
                             "mean_steps": float(h.halt_step.mean())}}  # fmt: skip
    return {
        **halted,
        "run": name,
        **temperature_record(cfg, temperature),
        "train_depth": cfg.fit.n_sup,
        "vote_depth": vote_depth,
        "puzzles": len(x),
        "valid_by_depth": depth,
        "vote_by_width": width,
        # after max_depth steps: the value head's pick, the vote among the valid samples (the checker's
        # pick, where the task has a checker) and the bound (some sample valid)
        **{k: end[k] for k in SELECTORS if k in end},
    }


def table(rows: list[dict]) -> str:
    widths = sorted({n for r in rows for n in r["vote_by_width"]})
    depth = max(len(r["valid_by_depth"]) for r in rows)
    votes = {r["vote_depth"] for r in rows}
    at = f" (depth {votes.pop()})" if len(votes) == 1 else ""
    head = ["run", *[f"depth {d + 1}" for d in range(depth)], *[f"vote@{n}{at}" for n in widths]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{v:.1%}" for v in r["valid_by_depth"]] + [f"{r['vote_by_width'][n]:.1%}" for n in widths]
        lines.append("| " + " | ".join([r["run"], *cells]) + " |")
    selectors = [r for r in rows if "any_by_width" in r]
    if selectors:
        head = f"| after {depth} steps | " + " | ".join(f"N = {n}" for n in widths) + " |"
        lines += ["", head, "|---" * (len(widths) + 1) + "|"]
    for r in selectors:  # --from-quality: runs scored before quality.py recorded them have none
        for key, name in SELECTORS.items():
            if key in r:
                cells = [f"{r[key][n]:.1%}" if n in r[key] else "-" for n in widths]
                lines.append(f"| {r['run']}: {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def from_quality(path: str) -> list[dict]:
    """The rows of a `benchmarks/quality.py --json` file's Sudoku-puzzle runs (one sample's exact
    share by depth, the vote by width at the sample depth), to draw without sampling again."""
    rows = []
    for entry in json.loads(Path(path).read_text()):
        for i, r in enumerate(x for x in entry["runs"] if "exact_by_depth" in x):
            label = f"seed {r['seed']}" if "seed" in r else f"{Path(path).name}{f' #{i}' if i else ''}"
            label += f" ({Path(r['run']).parent.name})" if "run" in r else ""  # the --out folder: variants apart
            ints = {k: {int(n): v for n, v in r[k].items()} for k in ("vote_by_width", *SELECTORS) if k in r}
            rows.append({"run": f"{entry['task']} {entry['variant']}, {label}", "train_depth": r["train_depth"],
                         "vote_depth": r["sample_depth"], "puzzles": r["puzzles"],
                         "valid_by_depth": r["exact_by_depth"], **ints})  # fmt: skip
    if not rows:
        raise SystemExit(f"{path}: no Sudoku-puzzle runs (records with exact_by_depth)")
    return rows


def figure(rows: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for r in rows:
        d = np.arange(1, len(r["valid_by_depth"]) + 1)
        a.plot(d, 100 * np.array(r["valid_by_depth"]), marker="o", label=r["run"])
        n = sorted(r["vote_by_width"])
        b.plot(n, [100 * r["vote_by_width"][k] for k in n], marker="o", label=r["run"])
    train = rows[0]["train_depth"]
    a.axvline(train, color="0.6", ls="--", lw=1, label=f"training depth {train}")
    a.set(xlabel="supervision steps (depth)", ylabel="valid, one sample (%)", title="depth", ylim=(0, 101))
    votes = sorted({r["vote_depth"] for r in rows})
    title = f"width (vote after {', '.join(map(str, votes))} steps)"
    b.set(xlabel="samples voted on (width)", ylabel="inputs solved by the vote (%)", title=title, ylim=(0, 101))
    b.set_xscale("log", base=2)
    ticks = sorted({k for r in rows for k in r["vote_by_width"]})
    b.set_xticks(ticks, [str(k) for k in ticks])
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.suptitle(f"prior samples of {rows[0]['puzzles']} held-out inputs", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--from-quality", nargs="+", default=[], metavar="JSON",
                    help="also draw the runs of benchmarks/quality.py --json files (no sampling)")  # fmt: skip
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--puzzles", type=int, default=100)
    ap.add_argument("--max-depth", type=int, default=8)
    ap.add_argument("--vote-depth", type=int, help="steps before the vote (default: the training depth)")
    ap.add_argument("--halt", action="store_true", help="also: valid share and mean steps with ACT halting")
    ap.add_argument(
        "--temperature",
        type=temperature_type,
        help="τ scaling the prior's σ, or START:END over the steps (default: each run's own)",
    )
    ap.add_argument("--out", help="a PNG of both curves")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if not args.runs and not args.from_quality:
        ap.error("give run folders, --from-quality files, or both")
    rows = [curves(r, args.samples, args.puzzles, args.max_depth, args.vote_depth, args.halt, args.temperature)
            for r in args.runs]  # fmt: skip
    rows += [row for path in args.from_quality for row in from_quality(path)]
    print(table(rows))
    for r in (r for r in rows if "halted" in r):
        h = r["halted"]
        print(f"{r['run']}: with halting (at most {args.max_depth} steps) {h['valid']:.1%} valid, "
              f"{h['mean_steps']:.1f} steps on average")  # fmt: skip
    if args.out:
        figure(rows, args.out)
        print(f"curves: {args.out}")
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
