"""The `gram` command line: a thin argparse layer over importable functions.

Sub-commands: `gram data build|info|export` and `gram solve`. Errors in the user's input or
configuration print `gram: error: ...` to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from gram_ppl.config import (
    BACKENDS,
    OBJECTIVES,
    SPLIT_RULES,
    SUDOKU_MODES,
    TASK_NAMES,
    VARIANTS,
    ConfigError,
    GramConfig,
    TaskConfig,
    apply_overrides,
)
from gram_ppl.data import DatasetError, build_dataset, load_dataset, save_dataset
from gram_ppl.fileio import atomic_write
from gram_ppl.puzzle_io import read_puzzles
from gram_ppl.tasks import PuzzleError, get_task

USER_ERRORS = (ConfigError, DatasetError, PuzzleError, OSError, ValueError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `gram solve ... | head`
        sys.stderr.close()
        return 0
    except USER_ERRORS as e:
        print(f"gram: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C; fit saves a checkpoint first and says so
        print(f"gram: {e}" if str(e) else "gram: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gram", description="GRAM as a probabilistic program: data, solving.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build, inspect and export puzzle data sets").add_subparsers(
        dest="data_command", required=True
    )
    b = data.add_parser("build", help="generate train/test arrays and a manifest")
    _task_args(b)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", type=Path, required=True, help="output folder")
    b.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    b.add_argument("--num-train", type=int)
    b.add_argument("--num-test", type=int)
    b.add_argument("--removed", type=_int_tuple, help="nqueens: queens removed per puzzle, e.g. 5,6,7")
    b.add_argument("--test-fraction", type=float, default=0.15, help="nqueens: held-out share of inputs")
    b.add_argument(
        "--split", choices=SPLIT_RULES, default="input", help="nqueens: hold out inputs or whole symmetry orbits"
    )
    b.add_argument("--mode", choices=SUDOKU_MODES, help="sudoku: generate | unique | multi")
    b.add_argument("--clues", type=int, help="sudoku: clues to stop at (unique; 0 = minimal) or keep (multi)")
    b.add_argument("--min-effort", type=int, help="sudoku unique: least solver effort to keep a puzzle")
    b.add_argument("--max-solutions", type=int, default=32, help="sudoku multi: most solutions per puzzle")
    b.add_argument("--edge-prob", type=float, default=0.4, help="coloring: Erdős–Rényi edge probability")
    b.set_defaults(func=cmd_data_build)

    i = data.add_parser("info", help="verify a data set's checksums and summarise it")
    i.add_argument("folder", type=Path)
    i.set_defaults(func=cmd_data_info)

    e = data.add_parser("export", help="print puzzles of a data set in the text format")
    e.add_argument("folder", type=Path)
    e.add_argument("--split", choices=("train", "test"), default="test")
    e.add_argument("--limit", type=_positive_int, help="at most this many puzzles")
    e.add_argument("--targets", action="store_true", help="print the stored targets instead")
    e.set_defaults(func=cmd_data_export)

    s = sub.add_parser("solve", help="solve puzzles given in the text format (docs/formats.md)")
    _task_args(s)
    s.add_argument("--puzzles", required=True, help="a file with one puzzle per line, or - for stdin")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--all", action="store_true", help="print every solution; a blank line ends each puzzle")
    how.add_argument("--count", action="store_true", help="print the number of solutions of each puzzle")
    s.add_argument("--limit", type=_positive_int, help="enumerate at most K solutions per puzzle")
    s.add_argument("--skip-invalid", action="store_true", help="solve the valid lines, report the rest")
    s.set_defaults(func=cmd_solve)

    f = sub.add_parser("fit", help="train GRAM (or the deterministic baseline) with SVI into a run folder")
    f.add_argument("--task", choices=TASK_NAMES)
    f.add_argument("--size", type=int)
    f.add_argument("--out", type=Path, required=True, help="run folder")
    f.add_argument("--variant", choices=VARIANTS)
    f.add_argument("--objective", choices=OBJECTIVES)
    f.add_argument("--backend", choices=BACKENDS, help="pyro (torch, default) or numpyro (JAX, jit-compiled)")
    f.add_argument("--seed", type=int, help="training seed (the data seed is --set task.seed=S)")
    budget = f.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="train until this many batches in all (default 100)")
    budget.add_argument("--minutes", type=_finite_positive, help="train until this many minutes of training in all")
    budget.add_argument("--cpu-minutes", type=_finite_positive,
                        help="train until this process has used this many CPU minutes in all (load-independent)")  # fmt: skip
    f.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any config field, e.g. fit.beta=0.5 or net.dim=128 (repeatable)")  # fmt: skip
    f.add_argument("--resume", action="store_true", help="continue the run in --out")
    f.add_argument("--force", action="store_true", help="overwrite --out, or resume despite changes")
    f.add_argument("--eval-minutes", type=_finite_positive, default=2.0, help="prior-sample validity every M minutes")
    f.add_argument("--checkpoint-minutes", type=_finite_positive, default=2.0)
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit)

    ev = sub.add_parser("evaluate", help="sample from the prior on a run's held-out puzzles and score them")
    ev.add_argument("run", type=Path)
    ev.add_argument("--num-samples", type=_positive_int, default=20)
    ev.add_argument("--depth", type=_positive_int, help="supervision steps (default: the training N_sup)")
    ev.add_argument("--puzzles", type=_positive_int, help="at most this many held-out puzzles")
    ev.add_argument("--temperature", type=_temperature, default=1.0,
                   help="scale the prior's σ: < 1 precision, > 1 diversity, 0 the prior mean (default 1)")  # fmt: skip
    ev.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    ev.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("sample", help="N prior trajectories per puzzle from a trained run, as JSON lines")
    sp.add_argument("run", type=Path)
    sp.add_argument("--puzzles", required=True, help="a file with one puzzle per line, or - for stdin")
    sp.add_argument("--num-samples", type=_positive_int, default=20)
    sp.add_argument("--depth", type=_positive_int, help="supervision steps (default: the training N_sup)")
    sp.add_argument("--halt", action="store_true", help="stop each trajectory when its halt head says so")
    sp.add_argument("--select", choices=("none", "vote", "lprm"), default="vote")
    sp.add_argument("--temperature", type=_temperature, default=1.0,
                   help="scale the prior's σ: < 1 precision, > 1 diversity, 0 the prior mean (default 1)")  # fmt: skip
    sp.add_argument("--skip-invalid", action="store_true", help="sample the valid lines, report the rest")
    sp.add_argument("--out", type=Path, required=True, help="JSON lines output ('-' for stdout)")
    sp.set_defaults(func=cmd_sample)

    g = sub.add_parser("generate", help="unconditional samples from p(x) of a trained run, one per line")
    g.add_argument("run", type=Path)
    g.add_argument("--num", type=_positive_int, required=True)
    g.add_argument("--depth", type=_positive_int)
    g.add_argument("--temperature", type=_temperature, default=1.0,
                   help="scale the prior's σ: < 1 precision, > 1 diversity, 0 the prior mean (default 1)")  # fmt: skip
    g.add_argument("--out", type=Path, required=True, help="output file ('-' for stdout)")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("compare", help="evaluate several runs on their held-out puzzles, side by side")
    c.add_argument("runs", type=Path, nargs="+")
    c.add_argument("--num-samples", type=_positive_int, default=20)
    c.add_argument("--puzzles", type=_positive_int, help="at most this many held-out puzzles")
    c.add_argument("--temperature", type=_temperature, default=1.0,
                   help="scale the prior's σ: < 1 precision, > 1 diversity, 0 the prior mean (default 1)")  # fmt: skip
    c.set_defaults(func=cmd_compare)

    dg = sub.add_parser("diagnose", help="ArviZ export, PSIS k̂, plots and summary.md for a trained run")
    dg.add_argument("run", type=Path)
    dg.add_argument("--puzzles", help="puzzle file ('-' for stdin); default: the run's first held-out puzzles")
    dg.add_argument("--num-puzzles", type=_positive_int, default=8, help="held-out puzzles when no --puzzles")
    dg.add_argument("--num-samples", type=_positive_int, default=64, help="trajectories per puzzle and source")
    dg.add_argument("--depth", type=_positive_int, help="supervision steps (default: the training N_sup)")
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

    v = sub.add_parser("verify", help="check solutions against puzzles, line by line")
    _task_args(v)
    v.add_argument("--puzzles", required=True, help="puzzle file, one per line")
    v.add_argument("--solutions", required=True, help="solution file, one per line, in the same order")
    v.set_defaults(func=cmd_verify)
    return p


def _task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASK_NAMES, required=True)
    p.add_argument("--size", type=int, required=True, help="board side, grid side or vertex count")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _finite(strict: bool):
    """An argparse type: a finite number > 0 (`strict`) or >= 0."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not (math.isfinite(v) and (v > 0 if strict else v >= 0)):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>' if strict else '>='} 0, got {text!r}")
        return v

    return parse


_finite_positive, _temperature = _finite(strict=True), _finite(strict=False)


def cmd_data_build(args) -> int:
    cfg = TaskConfig(
        name=args.task, size=args.size, seed=args.seed, removed=args.removed, test_fraction=args.test_fraction, split=args.split,
        num_train=args.num_train, num_test=args.num_test, mode=args.mode, clues=args.clues,
        min_effort=args.min_effort, max_solutions=args.max_solutions, edge_prob=args.edge_prob,
    )  # fmt: skip
    out = save_dataset(build_dataset(cfg), args.out, overwrite=args.force)
    return cmd_data_info(argparse.Namespace(folder=out))


def cmd_data_info(args) -> int:
    ds = load_dataset(args.folder)
    cfg, task = ds.config, ds.task
    print(f"{args.folder}: {cfg.name} size {cfg.size}, seed {cfg.seed}, checksums verified")
    print(f"  tokens: x {task.x_len} (vocab {task.x_vocab}), y {task.y_len} (vocab {task.y_vocab})")
    for name, split in (("train", ds.train), ("test", ds.test)):
        valid = task.is_valid(split.x, split.y).mean() if len(split) else float("nan")
        n = split.num_solutions
        spread = f"{n.min()}..{n.max()}, mean {n.mean():.2f}" if len(split) else "-"
        print(f"  {name}: {len(split)} items, targets valid {valid:.1%}, solutions per input {spread}")
    return 0


def cmd_data_export(args) -> int:
    ds = load_dataset(args.folder)
    split, task = getattr(ds, args.split), ds.task
    rows = split.y if args.targets else split.x
    fmt = task.format_solution if args.targets else task.format_puzzle
    for row in rows[: args.limit]:
        print(fmt(row))
    return 0


def cmd_solve(args) -> int:
    task = get_task(args.task, args.size)
    limit = args.limit if (args.all or args.count) else 1
    results = [sols for _, sols in _solvable_puzzles(task, args.puzzles, args.skip_invalid, limit, "solved")]
    out = []
    for sols in results:
        if args.count:
            out.append(str(len(sols)))
        else:
            out.extend(task.format_solution(y) for y in sols)
            if args.all:
                out.append("")
    sys.stdout.write("".join(line + "\n" for line in out))
    sys.stdout.flush()
    return 0


def cmd_verify(args) -> int:
    """Print `line: valid` or `line: N conflicts` per pair; exit 1 if any solution is invalid."""
    task = get_task(args.task, args.size)
    puzzles = list(read_puzzles(task, args.puzzles))
    solutions = list(read_puzzles(task, args.solutions, parse=task.parse_solution))
    if len(puzzles) != len(solutions):
        raise ValueError(f"{len(puzzles)} puzzles but {len(solutions)} solutions")
    bad = 0
    for (lineno, x), (_, y) in zip(puzzles, solutions, strict=True):
        problem = next((str(v) for v in (x, y) if isinstance(v, PuzzleError)), None)
        if problem is None:
            n = int(task.conflicts(x, y))
            problem = f"{n} conflicts" if n else None
        bad += problem is not None
        print(f"{lineno}: {problem or 'valid'}")
    print(f"{len(puzzles) - bad} of {len(puzzles)} valid", file=sys.stderr)
    return 1 if bad else 0


def fit_config(args) -> GramConfig:
    """The GramConfig a `gram fit` command line asks for (on top of a resumed run's config)."""
    sets = list(args.set)
    for flag, key in (("task", "task.name"), ("size", "task.size"), ("variant", "fit.variant"),
                      ("objective", "fit.objective"), ("seed", "fit.seed")):  # fmt: skip
        if getattr(args, flag) is not None:
            sets.insert(0, f"{key}={json.dumps(getattr(args, flag))}")
    from gram_ppl.models.priors import PRIORS  # the one PRIORS block (no torch, no jax)

    if args.resume:
        from gram_ppl.inference.run import load_config

        cfg = apply_overrides(load_config(args.out), sets, PRIORS)
    elif args.task is None or args.size is None:
        raise ConfigError("--task and --size are required for a new run")
    else:
        cfg = apply_overrides(GramConfig(), sets, PRIORS)
    cfg = dataclasses.replace(cfg, priors=cfg.priors or PRIORS)
    return dataclasses.replace(cfg, backend=args.backend) if args.backend else cfg


def cmd_fit(args) -> int:
    from gram_ppl.inference.run import fit
    from gram_ppl.inference.svi_pyro import NonFiniteLoss

    cfg = fit_config(args)
    p = cfg.priors  # the priors in force, always stated (they shape every sample)
    print(f"priors: {p.family}, σ {p.scale_mode} (scale {p.scale}, in [{p.min_scale}, {p.max_scale}])"
          + (f", df {p.df}" if p.family == "studentt" else "") + f", z_0 ~ N(0, {p.init_scale}²)",
          file=sys.stderr)  # fmt: skip
    try:
        result = fit(
            cfg, args.out, steps=args.steps, minutes=args.minutes, cpu_minutes=args.cpu_minutes,
            resume=args.resume, force=args.force,
            progress=not args.quiet, eval_every_s=60 * args.eval_minutes,
            checkpoint_every_s=60 * args.checkpoint_minutes, log=_log_line,
        )  # fmt: skip
    except NonFiniteLoss as e:
        print(f"gram: training stopped: {e}", file=sys.stderr)
        return 1
    last = next(r["eval"] for r in reversed(result.history) if "eval" in r)
    print(f"{args.out}: {result.history[-1]['step']} batches; " + ", ".join(f"{k} {v:.3f}" for k, v in last.items()))
    return 0


def _log_line(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def _warn_model_file(run) -> None:
    from gram_ppl.inference.runfolder import model_file_note

    note = model_file_note(run)
    if note:
        print(f"gram: warning: {note}", file=sys.stderr)


def cmd_evaluate(args) -> int:
    from gram_ppl.inference.run import evaluate_run

    _warn_model_file(args.run)
    metrics = evaluate_run(
        args.run, num_samples=args.num_samples, depth=args.depth, puzzles=args.puzzles, temperature=args.temperature
    )
    print(json.dumps(metrics, indent=1))
    if args.out is not None:
        _write_lines(args.out, [json.dumps(metrics, indent=1)])
    return 0


def _solvable_puzzles(task, source: str, skip_invalid: bool, limit: int | None, verb: str) -> list:
    """(x, solutions up to `limit`) for each puzzle line of `source`. Malformed, contradictory
    or unsolvable lines are reported by line number; unless skip_invalid, nothing is returned
    and a PuzzleError ("nothing {verb}") ends the command with status 2."""
    name = "<stdin>" if source == "-" else source
    good, errors = [], []
    for lineno, x in read_puzzles(task, source):
        sols = None if isinstance(x, PuzzleError) else task.solutions(x, limit=limit)
        if sols is None:
            errors.append(f"{name}:{lineno}: {x}")
        elif len(sols) == 0:
            errors.append(f"{name}:{lineno}: {task.unsolvable_reason}")
        else:
            good.append((x, sols))
    if not good and not errors:
        raise PuzzleError(f"{name}: no puzzles (blank lines and # comments only); nothing {verb}")
    for msg in errors:
        print(("skipped " if skip_invalid else "") + msg, file=sys.stderr)
    if errors and not skip_invalid:
        raise PuzzleError(f"{len(errors)} invalid puzzle line(s); nothing {verb} (--skip-invalid to go on)")
    return good


def _write_lines(out: Path, lines: list[str]) -> None:
    """`-` is stdout; a symlink, device or pipe is written through (never replaced); a regular
    file is replaced atomically (a unique temporary file, fsynced, renamed over it)."""
    text = "".join(line + "\n" for line in lines)
    if str(out) == "-":
        sys.stdout.write(text)
        return
    if out.is_symlink() or (out.exists() and not out.is_file()):
        with open(out, "w") as f:  # follows the link / writes to the device; errors surface as OSError
            f.write(text)
        return
    atomic_write(out, text)


def cmd_sample(args) -> int:
    from gram_ppl.inference.run import load_run
    from gram_ppl.inference.sampling import sample_puzzles

    _warn_model_file(args.run)
    run = load_run(args.run)
    puzzles = [x for x, _ in _solvable_puzzles(run.task, args.puzzles, args.skip_invalid, 1, "sampled")]
    rows = sample_puzzles(run, puzzles, args.num_samples, args.depth, args.halt, args.select, args.temperature)
    _write_lines(args.out, [json.dumps(row) for row in rows])
    flags = [v for row in rows for v in row["valid"]]
    share = sum(flags) / len(flags) if flags else float("nan")
    print(f"{len(rows)} puzzles, {args.num_samples} samples each: {share:.1%} valid", file=sys.stderr)
    return 0


def cmd_generate(args) -> int:
    from gram_ppl.inference.run import load_run
    from gram_ppl.inference.sampling import generate

    _warn_model_file(args.run)
    run = load_run(args.run)
    lines, valid, distinct = generate(run, args.num, args.depth, args.temperature)
    _write_lines(args.out, lines)
    print(f"{args.num} samples: {valid:.1%} valid, {distinct} distinct valid", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from gram_ppl.inference.run import evaluate_run, load_config

    rows = []
    for run in args.runs:
        cfg = load_config(run)
        m = evaluate_run(run, num_samples=args.num_samples, puzzles=args.puzzles, temperature=args.temperature)
        rows.append((str(run), cfg.fit.variant, m))
    n = args.num_samples
    print(f"held-out puzzles: {rows[0][2]['puzzles']}, {n} prior samples each\n")
    print(f"| run | variant | valid (1 sample) | puzzles solved@{n} | distinct valid@{n} | coverage@{n} |")
    print("|---|---|---|---|---|---|")
    for run, variant, m in rows:
        print(
            f"| {run} | {variant} | {m['valid']:.1%} | {m['any_valid']:.1%} | {m['distinct_valid']:.2f} | {m['coverage']:.1%} |"
        )
    return 0


def cmd_diagnose(args) -> int:
    import numpy as np

    from gram_ppl.inference.diagnose import diagnose
    from gram_ppl.inference.run import load_config

    cfg = load_config(args.run)
    x = sols = None
    if args.puzzles is not None:
        task = get_task(cfg.task.name, cfg.task.size)
        pairs = _solvable_puzzles(task, args.puzzles, args.skip_invalid, None, "diagnosed")
        x, sols = np.stack([p for p, _ in pairs]) if pairs else np.zeros((0, task.x_len)), [s for _, s in pairs]
    report = diagnose(
        args.run, args.out, x, sols, num_puzzles=args.num_puzzles, num_samples=args.num_samples,
        depth=args.depth, latents=args.latents, baseline=args.baseline, force=args.force,
    )  # fmt: skip
    m = report["metrics"]
    print(f"{args.out}/summary.md: prior samples {m['valid']:.1%} valid, coverage {m['coverage']:.1%}", file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    from gram_ppl.inference.run import convert_run

    out = convert_run(args.run, args.out, args.to, force=args.force)
    print(f"{out}: {args.to} run converted from {args.run}", file=sys.stderr)
    return 0
