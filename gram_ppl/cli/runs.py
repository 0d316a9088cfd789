"""`gram fit|evaluate|sample|generate|compare|diagnose|convert|refit-prior`: the commands over run folders
(gram_ppl.inference, imported inside each command so `gram data ...` never loads torch or JAX)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

from gram_ppl.cli.common import finite_positive, non_negative_int, positive_int, solvable_puzzles, write_lines
from gram_ppl.cli.common import temperature as temperature_type
from gram_ppl.config import (
    BACKENDS,
    OBJECTIVES,
    TASK_NAMES,
    VARIANTS,
    ConfigError,
    GramConfig,
    describe_temperature,
    sample_depth,
    with_priors,
)
from gram_ppl.overrides import apply_overrides
from gram_ppl.presets import PRESETS, preset_config
from gram_ppl.tasks import task_for


def _temperature_arg(p) -> None:
    p.add_argument("--temperature", type=temperature_type,
                   help="scale the prior's σ: < 1 precision, > 1 diversity, 0 the prior mean; START:END moves "
                        "linearly from START at the first supervision step to END at the last (default: the run's, "
                        "fit.sample_temperature[_end]: 1, or 1.5 un-anchored generation)")  # fmt: skip


def add_commands(sub) -> None:
    _fit_command(sub)
    _sampling_commands(sub)
    _report_commands(sub)


def _fit_command(sub) -> None:
    f = sub.add_parser("fit", help="train GRAM (or the deterministic baseline) with SVI into a run folder")
    f.add_argument("--task", choices=TASK_NAMES)
    f.add_argument("--size", type=int)
    f.add_argument("--preset", choices=tuple(PRESETS),
                   help="a paper configuration for accelerators (D=512, N_sup=16, batch 768, the task's β); "
                        "--task/--size/--set apply on top")  # fmt: skip
    f.add_argument("--out", type=Path, required=True, help="run folder")
    f.add_argument("--variant", choices=VARIANTS)
    f.add_argument("--objective", choices=OBJECTIVES)
    f.add_argument("--backend", choices=BACKENDS, help="pyro (torch, default) or numpyro (JAX, jit-compiled)")
    f.add_argument("--seed", type=int, help="training seed (the data seed is --set task.seed=S)")
    budget = f.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help="train until this many batches in all (default 100)")
    budget.add_argument("--minutes", type=finite_positive, help="train until this many minutes of training in all")
    budget.add_argument("--cpu-minutes", type=finite_positive,
                        help="train until this process has used this many CPU minutes in all (load-independent)")  # fmt: skip
    f.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any config field, e.g. fit.beta=0.5 or net.dim=128 (repeatable)")  # fmt: skip
    f.add_argument("--resume", action="store_true", help="continue the run in --out")
    f.add_argument("--force", action="store_true", help="overwrite --out, or resume despite changes")
    f.add_argument(
        "--eval-every",
        type=positive_int,
        default=200,
        metavar="N",
        help="held-out validity and bound every N batches (comparable across machines); fit.keep_best "
        "samples from the best of these evaluations",
    )
    f.add_argument(
        "--eval-minutes",
        type=finite_positive,
        help="every M minutes instead of every N batches, "
        "but at most a tenth of the time (an evaluation that took d seconds waits 10·d)",
    )
    f.add_argument("--checkpoint-minutes", type=finite_positive, default=2.0)
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit)


def _sampling_commands(sub) -> None:
    ev = sub.add_parser("evaluate", help="sample from the prior on a run's held-out puzzles and score them")
    ev.add_argument("run", type=Path)
    ev.add_argument(
        "--num-samples", type=positive_int, default=20,
        help="prior samples per held-out puzzle (default 20); for unconditional generation the number of boards",
    )  # fmt: skip
    ev.add_argument(
        "--depth", type=positive_int, help="supervision steps (default: the run's sample depth, config.sample_depth)"
    )
    ev.add_argument(
        "--puzzles", type=positive_int,
        help="at most this many held-out puzzles (default: all; for generation one, the blank input)",
    )  # fmt: skip
    ev.add_argument(
        "--first", type=non_negative_int, default=0,
        help="skip this many held-out puzzles first (default 0): choose τ or depth on --first N, report from 0",
    )  # fmt: skip
    _temperature_arg(ev)
    ev.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    ev.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("sample", help="N prior trajectories per puzzle from a trained run, as JSON lines")
    sp.add_argument("run", type=Path)
    sp.add_argument("--puzzles", required=True, help="a file with one puzzle per line, or - for stdin")
    sp.add_argument("--num-samples", type=positive_int, default=20)
    sp.add_argument(
        "--depth", type=positive_int, help="supervision steps (default: the run's sample depth, config.sample_depth)"
    )
    sp.add_argument("--halt", action="store_true", help="stop each trajectory when its halt head says so")
    sp.add_argument(
        "--select", choices=("none", "vote", "lprm", "checker"), default="vote",
        help="how 'selected' is picked: the most frequent sample (vote), the value head's highest (lprm), or "
             "the vote among the samples the task's checker accepts (checker; needs no answer)",
    )  # fmt: skip
    _temperature_arg(sp)
    sp.add_argument("--skip-invalid", action="store_true", help="sample the valid lines, report the rest")
    sp.add_argument("--out", type=Path, required=True, help="JSON lines output ('-' for stdout)")
    sp.set_defaults(func=cmd_sample)

    g = sub.add_parser("generate", help="unconditional samples from p(x) of a trained run, one per line")
    g.add_argument("run", type=Path)
    g.add_argument("--num", type=positive_int, required=True)
    g.add_argument("--depth", type=positive_int, help="supervision steps (default: the run's sample depth: N_sup, "
                   "for generation trained with the prior-path term 16·N_sup with the 'repair' target (6x6, 9x9 "
                   "grids) and 4·N_sup with another, 16·N_sup for Sudoku puzzles with one solution and N-Queens rows with the "
                   "MLP mixer, 2·N_sup for N-Queens cells with it, "
                   "config.sample_depth)")  # fmt: skip
    _temperature_arg(g)
    g.add_argument("--out", type=Path, required=True, help="output file ('-' for stdout)")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("compare", help="evaluate several runs on their held-out puzzles, side by side")
    c.add_argument("runs", type=Path, nargs="*", help="runs, one arm each")
    c.add_argument("--arm", action="append", default=[], metavar="NAME=RUN[,RUN...]",
                   help="an arm of several fits of one model (other seeds): metrics as mean ± s.e. over them, "
                        "elpd standard errors with the seed spread")  # fmt: skip
    c.add_argument("--num-samples", type=positive_int, default=20)
    c.add_argument("--puzzles", type=positive_int, help="at most this many held-out puzzles")
    _temperature_arg(c)
    c.add_argument("--elpd", type=positive_int, metavar="K",
                   help="also compare held-out log p(y | x), importance-weighted over K prior trajectories per "
                        "puzzle, with standard errors of the differences (as az.compare reports them)")  # fmt: skip
    c.set_defaults(func=cmd_compare)


def _report_commands(sub) -> None:
    dg = sub.add_parser("diagnose", help="ArviZ export, PSIS k̂, plots and summary.md for a trained run")
    dg.add_argument("run", type=Path)
    dg.add_argument(
        "fits", type=Path, nargs="*", help="further fits of the same model (other seeds): R-hat across fits"
    )
    dg.add_argument("--mixed-configs", action="store_true",
                    help="allow R-hat across fits whose configs differ in more than the seed")  # fmt: skip
    dg.add_argument("--puzzles", help="puzzle file ('-' for stdin); default: the run's first held-out puzzles")
    dg.add_argument("--num-puzzles", type=positive_int, default=8, help="held-out puzzles when no --puzzles")
    dg.add_argument("--num-samples", type=positive_int, default=64, help="trajectories per puzzle and source")
    dg.add_argument("--puzzle", type=int, metavar="I",
                    help="the puzzle (index among the diagnosed) whose trajectories the figures show; default: "
                         "one with several solutions that the prior draws reach")  # fmt: skip
    dg.add_argument(
        "--depth", type=positive_int, help="supervision steps (default: the run's sample depth, config.sample_depth)"
    )
    dg.add_argument("--latents", action="store_true", help="also export the full states h (large)")
    dg.add_argument("--baseline", type=Path, help="a second run drawn on the same coverage/depth axes")
    dg.add_argument("--skip-invalid", action="store_true", help="diagnose the valid lines, report the rest")
    dg.add_argument("--force", action="store_true", help="replace an existing report")
    dg.add_argument("--out", type=Path, required=True, help="report folder")
    dg.set_defaults(func=cmd_diagnose)

    cv = sub.add_parser("convert", help="copy a run to the other backend (weights converted torch <-> flax)")
    cv.add_argument("run", type=Path)
    cv.add_argument("--to", choices=BACKENDS, required=True)
    cv.add_argument("--out", type=Path, required=True, help="the new run folder")
    cv.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    cv.set_defaults(func=cmd_convert)

    rp = sub.add_parser("refit-prior", help="a generation run whose first-step prior gets the guide's top directions")
    rp.add_argument("run", type=Path, help="a Pyro generation run with a diagonal prior (priors.rank = 0)")
    rp.add_argument("--rank", type=int, required=True, help="directions W of the low-rank prior (priors.rank)")
    rp.add_argument("--components", type=int, default=1,
                    help="K > 1: a mixture of K such Gaussians fitted by EM (priors.components)")  # fmt: skip
    rp.add_argument("--seed", type=int, default=0, help="the mixture's EM start")
    rp.add_argument("--out", type=Path, required=True, help="the new run folder")
    rp.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    rp.set_defaults(func=cmd_refit_prior)


def fit_config(args) -> GramConfig:
    """The GramConfig a `gram fit` command line asks for (on top of a resumed run's config)."""
    sets = list(args.set)
    for flag, key in (("task", "task.name"), ("size", "task.size"), ("variant", "fit.variant"),
                      ("objective", "fit.objective"), ("seed", "fit.seed")):  # fmt: skip
        if getattr(args, flag) is not None:
            sets.insert(0, f"{key}={json.dumps(getattr(args, flag))}")
    from gram_ppl.models.priors import PRIORS  # the one PRIORS block (no torch, no jax)

    if args.resume and args.preset is not None:
        raise ConfigError("--preset starts a new run; a resumed run keeps its own config")
    if args.resume:
        from gram_ppl.config import unresolved
        from gram_ppl.inference.api import load_config

        # the stored rules that today's defaults give anyway go back to None, so an override moves
        # what derives from it (e.g. the sample depth from fit.n_sup); the others stay as trained
        cfg = apply_overrides(unresolved(load_config(args.out)), sets, PRIORS)
    elif args.preset is not None:
        cfg = apply_overrides(preset_config(args.preset), sets, PRIORS)
    elif args.task is None or args.size is None:
        raise ConfigError("--task and --size are required for a new run (or --preset NAME)")
    else:
        cfg = apply_overrides(GramConfig(), sets, PRIORS)
    cfg = with_priors(cfg, PRIORS)
    return dataclasses.replace(cfg, backend=args.backend) if args.backend else cfg


def cmd_fit(args) -> int:
    from gram_ppl.inference.api import NonFiniteLoss, fit, from_env

    cfg = fit_config(args)
    main = from_env().main  # under torchrun, rank 0 alone reports (every rank trains)
    try:  # fit states the run folder and the priors in force when it starts (inference.run.start_line)
        result = fit(
            cfg, args.out, steps=args.steps, minutes=args.minutes, cpu_minutes=args.cpu_minutes,
            resume=args.resume, force=args.force,
            progress=not args.quiet, eval_every=args.eval_every,
            eval_every_s=None if args.eval_minutes is None else 60 * args.eval_minutes,
            checkpoint_every_s=60 * args.checkpoint_minutes, log=_log_line,
        )  # fmt: skip
    except NonFiniteLoss as e:
        print(f"gram: training stopped: {e}", file=sys.stderr)
        return 1
    if not main:
        return 0
    last = next(r["eval"] for r in reversed(result.history) if "eval" in r)
    print(f"{args.out}: {result.history[-1]['step']} batches; " + ", ".join(f"{k} {v:.3f}" for k, v in last.items()))
    return 0


@contextlib.contextmanager
def _status(text: str):
    """One line on stderr when work starts and its duration when it ends (sampling has no
    natural unit of progress smaller than the whole batch of trajectories)."""
    print(f"{text} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    yield
    print(f"  done in {time.monotonic() - start:.1f} s", file=sys.stderr)


def mode_mismatch(task_cfg, puzzles: list) -> str | None:
    """A warning when Sudoku puzzles do not fit the mode the run was trained in: blank grids
    (generation inputs) for a completion run, or puzzles with clues for a generation run."""
    if task_cfg.name != "sudoku" or not puzzles:
        return None
    task_cfg = task_cfg.resolved()  # mode None: generate for 4x4, unique otherwise (runs from before it was stored)
    blank = sum(bool((p == 1).all()) for p in puzzles)  # token 1: an empty cell
    if task_cfg.mode != "generate" and blank:
        return (f"{blank} of {len(puzzles)} puzzles are blank grids, but the run was trained on completion puzzles "
                f"(task.mode {task_cfg.mode}): expect near 0% valid; generation needs a run trained with "
                "task.mode=generate (then gram generate)")  # fmt: skip
    if task_cfg.mode == "generate" and blank < len(puzzles):
        return (f"{len(puzzles) - blank} of {len(puzzles)} puzzles have clues, but the run was trained to generate "
                "from blank grids (task.mode generate): its samples ignore what a completion run would learn")  # fmt: skip
    return None


def _log_line(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def _warn_model_file(run) -> None:
    from gram_ppl.inference.api import model_file_note

    note = model_file_note(run)
    if note:
        print(f"gram: warning: {note}", file=sys.stderr)


def _generates(run) -> bool:
    """Whether a run folder holds an unconditional generation run (False where its config cannot
    be read: the evaluation itself then names the problem)."""
    from gram_ppl.inference.api import load_config

    try:
        return load_config(run).task.generates
    except ValueError:  # RunError: an unreadable config.json
        return False


def cmd_evaluate(args) -> int:
    from gram_ppl.inference.api import evaluate_run

    _warn_model_file(args.run)
    what = f"{args.puzzles or 'all'} held-out puzzles{f' from #{args.first}' if args.first else ''} x {args.num_samples} prior samples"
    if args.puzzles is None and _generates(args.run):
        what = f"{args.num_samples} boards generated from the blank input"
    with _status(f"evaluate: {what}"):
        metrics = evaluate_run(args.run, args.num_samples, args.depth, args.puzzles, args.temperature, first=args.first)
    print(json.dumps(metrics, indent=1))
    if args.out is not None:
        write_lines(args.out, [json.dumps(metrics, indent=1)])
    return 0


def cmd_sample(args) -> int:
    from gram_ppl.inference.api import load_run, sample_puzzles

    _warn_model_file(args.run)
    run = load_run(args.run)
    puzzles = [
        x for x, _ in solvable_puzzles(run.task, args.puzzles, args.skip_invalid, 1, "sampled", run.task.checker)
    ]
    note = mode_mismatch(run.config.task, puzzles)
    if note:
        print(f"gram: warning: {note}", file=sys.stderr)
    with _status(f"sample: {len(puzzles)} puzzles x {args.num_samples} prior samples"):
        rows = sample_puzzles(run, puzzles, args.num_samples, args.depth, args.halt, args.select, args.temperature)
    write_lines(args.out, [json.dumps(row) for row in rows])
    print(describe_samples(rows, args.num_samples, args.select), file=sys.stderr)
    return 0


def describe_samples(rows: list[dict], num_samples: int, select: str) -> str:
    """`gram sample`'s summary of its records: the valid share of all samples and, where a pick was
    made and the task has a checker, the share of puzzles whose pick is valid and the share where
    some sample is (the bound of any pick; on puzzles with one solution, valid is exact)."""
    flags = [v for row in rows for v in row["valid"]]
    share = sum(flags) / len(flags) if flags else float("nan")
    line = f"{len(rows)} puzzles, {num_samples} samples each: {share:.1%} valid"
    picks = [row["selected_valid"] for row in rows if row["selected_valid"] is not None]
    if rows and len(picks) == len(rows):
        some = sum(any(row["valid"]) for row in rows) / len(rows)
        line += f"; the {select} pick valid on {sum(picks) / len(rows):.1%} of puzzles, some sample on {some:.1%}"
    return line


def cmd_generate(args) -> int:
    from gram_ppl.inference.api import describe_generation, generate, generation_report, load_run

    _warn_model_file(args.run)
    run = load_run(args.run)
    with _status(f"generate: {args.num} samples"):
        g = generate(run, args.num, args.depth, args.temperature)
    write_lines(args.out, [run.task.format_solution(b) for b in g.boards])
    if not run.task.checker:  # images: the judge's scores, not validity
        from gram_ppl.tasks.digits import describe, judge_run_samples

        print(f"{args.num} samples: {describe(judge_run_samples(run.data, g.boards))}", file=sys.stderr)
        return 0
    if run.config.task.generates:
        report = generation_report(
            g.boards, g.valid, run.data.train.y, run.data.test.y, g.conflicts, run.task.grid_count
        )
        depth = args.depth or sample_depth(run.config)
        tau = describe_temperature(run.config, args.temperature)
        print(f"depth {depth}, temperature {tau}: {describe_generation(report)}", file=sys.stderr)
        return 0
    print(f"{args.num} samples: {g.share_valid:.1%} valid, {g.distinct_valid} distinct valid", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from gram_ppl.inference.api import compare

    arms = [str(r) for r in args.runs]  # one arm each (a run may be listed twice)
    if args.arm:
        arms = {r: r for r in arms}
        for spec in args.arm:
            name, sep, runs = spec.partition("=")
            if not sep or not name or not runs.strip(",") or name in arms:
                raise ConfigError(f"--arm {spec!r}: expected NAME=RUN[,RUN...] with a name not used before")
            arms[name] = [r for r in runs.split(",") if r]
    elif not arms:
        raise ConfigError("compare needs runs: RUN ... or --arm NAME=RUN,RUN")
    print(compare(arms, args.num_samples, puzzles=args.puzzles, elpd=args.elpd,
                  temperature=args.temperature))  # fmt: skip
    return 0


def cmd_diagnose(args) -> int:
    import numpy as np

    from gram_ppl.inference.api import check_fits, check_report_folder, diagnose, load_config

    check_report_folder(args.out, args.force)  # before any work
    check_fits(args.run, args.fits, args.mixed_configs)
    cfg = load_config(args.run)
    x = sols = None
    if args.puzzles is not None:
        task = task_for(cfg.task)
        if not task.checker:  # the guide needs a reference y for each input, which a digits label lacks
            raise ConfigError(f"{task.name}: --puzzles needs solutions to observe; diagnose the run's held-out "
                              "images instead (leave out --puzzles, --num-puzzles N)")  # fmt: skip
        pairs = solvable_puzzles(task, args.puzzles, args.skip_invalid, None, "diagnosed")
        x, sols = np.stack([p for p, _ in pairs]) if pairs else np.zeros((0, task.x_len)), [s for _, s in pairs]
    with _status(f"diagnose: {args.num_samples} guide and prior trajectories per puzzle, ArviZ export, plots"):
        report = diagnose(
            args.run, args.out, x, sols, num_puzzles=args.num_puzzles, num_samples=args.num_samples,
            depth=args.depth, latents=args.latents, baseline=args.baseline, force=args.force, fits=args.fits,
            mixed=args.mixed_configs, puzzle=args.puzzle,
        )  # fmt: skip
    print(f"{args.out}/summary.md: {report['headline']} (figures of puzzle {report['puzzle']})", file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    from gram_ppl.inference.api import convert_run

    out = convert_run(args.run, args.out, args.to, force=args.force)
    print(f"{out}: {args.to} run converted from {args.run}", file=sys.stderr)
    return 0


def cmd_refit_prior(args) -> int:
    from gram_ppl.inference.api import refit_prior

    out = refit_prior(args.run, args.out, args.rank, force=args.force, components=args.components, seed=args.seed)
    what = f"a mixture of {args.components} with W_k" if args.components > 1 else "W"
    print(
        f"{out}: {args.run} with {what} of rank {args.rank} fitted to the guide's aggregate posterior", file=sys.stderr
    )
    return 0
