"""`gram data build|info|export|overlap`, `gram solve`, `gram verify`: puzzle data and exact solvers
(the library floor only: no model, no inference)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from gram_ppl.cli.common import int_tuple, positive_int, solvable_puzzles, task_args
from gram_ppl.config import DIGITS_MODES, SPLIT_RULES, SUDOKU_MODES, TaskConfig, from_dict
from gram_ppl.data import DatasetError, build_dataset, fingerprint_changes, load_dataset, read_fingerprint, save_dataset
from gram_ppl.puzzle_io import read_puzzles
from gram_ppl.tasks import PuzzleError, get_task


def add_commands(sub) -> None:
    _data_commands(sub)
    _solver_commands(sub)


def _data_commands(sub) -> None:
    data = sub.add_parser("data", help="build, inspect and export puzzle data sets").add_subparsers(
        dest="data_command", required=True
    )
    b = data.add_parser("build", help="generate train/test arrays and a manifest")
    task_args(b)
    b.add_argument("--seed", type=int, default=0, help="data seed (TaskConfig.seed)")
    b.add_argument("--out", type=Path, required=True, help="output folder")
    b.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    b.add_argument("--num-train", type=int)
    b.add_argument("--num-test", type=int)
    b.add_argument("--removed", type=int_tuple, help="nqueens: queens removed per puzzle, e.g. 5,6,7")
    b.add_argument("--test-fraction", type=float, help="nqueens: held-out share of inputs")
    b.add_argument(
        "--split",
        choices=SPLIT_RULES,
        help="hold out inputs, or whole orbits of inputs under the task's symmetries (default input)",
    )
    b.add_argument("--mode", choices=sorted(set(SUDOKU_MODES + DIGITS_MODES)),
                   help="sudoku: generate | unique | multi; digits: generate | conditional")  # fmt: skip
    b.add_argument("--clues", type=int, help="sudoku: clues to stop at (unique; 0 = minimal) or keep (multi)")
    b.add_argument("--min-effort", type=int, help="sudoku unique: least solver effort to keep a puzzle")
    b.add_argument("--max-solutions", type=int, help="sudoku multi: most solutions per puzzle")
    b.add_argument("--edge-prob", type=float, help="coloring: Erdős–Rényi edge probability")
    b.add_argument("--augmented-copies", type=int, help="arc: augmented versions of each puzzle (HRM/TRM: 1000)")
    b.set_defaults(func=cmd_data_build)

    i = data.add_parser("info", help="verify a data set's checksums and summarise it")
    i.add_argument("folder", type=Path)
    i.set_defaults(func=cmd_data_info)

    e = data.add_parser("export", help="print puzzles of a data set in the text format")
    e.add_argument("folder", type=Path)
    e.add_argument("--split", choices=("train", "test"), default="test")
    e.add_argument("--limit", type=positive_int, help="at most this many puzzles")
    e.add_argument("--targets", action="store_true", help="print the stored targets instead")
    e.set_defaults(func=cmd_data_export)

    o = data.add_parser("overlap", help="which outside puzzles are (images of) a data set's or run's inputs")
    o.add_argument("source", type=Path, help="a data set folder (gram data build) or a run folder")
    o.add_argument("--puzzles", required=True, help="a file with one puzzle per line, or - for stdin")
    o.set_defaults(func=cmd_data_overlap)


def _solver_commands(sub) -> None:
    s = sub.add_parser("solve", help="solve puzzles given in the text format (docs/formats.md)")
    task_args(s)
    s.add_argument("--puzzles", required=True, help="a file with one puzzle per line, or - for stdin")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--all", action="store_true", help="print every solution; a blank line ends each puzzle")
    how.add_argument("--count", action="store_true", help="print the number of solutions of each puzzle")
    s.add_argument("--limit", type=positive_int, help="enumerate at most K solutions per puzzle")
    s.add_argument("--skip-invalid", action="store_true", help="solve the valid lines, report the rest")
    s.set_defaults(func=cmd_solve)

    v = sub.add_parser("verify", help="check solutions against puzzles, line by line")
    task_args(v)
    v.add_argument("--puzzles", required=True, help="puzzle file, one per line")
    v.add_argument("--solutions", required=True, help="solution file, one per line, in the same order")
    v.set_defaults(func=cmd_verify)


def cmd_data_build(args) -> int:
    """A data set from the flags given; the others keep TaskConfig's defaults (one source)."""
    given = {f: getattr(args, f) for f in BUILD_FIELDS if getattr(args, f) is not None}
    cfg = TaskConfig(name=args.task, size=args.size, seed=args.seed, **given)
    out = save_dataset(build_dataset(cfg), args.out, overwrite=args.force)
    return cmd_data_info(argparse.Namespace(folder=out))


BUILD_FIELDS = ("removed", "test_fraction", "split", "num_train", "num_test", "mode", "clues", "min_effort",
                "max_solutions", "edge_prob", "augmented_copies")  # fmt: skip


def cmd_data_info(args) -> int:
    ds = load_dataset(args.folder)
    cfg, task = ds.config, ds.task
    mode = f", mode {cfg.mode}" if cfg.name == "sudoku" else ""
    print(f"{args.folder}: {cfg.name} size {cfg.size}{mode}, seed {cfg.seed}, checksums verified")
    print(f"  tokens: x {task.x_len} (vocab {task.x_vocab}), y {task.y_len} (vocab {task.y_vocab})")
    if task.id_tokens:
        print(f"  puzzles: {len(task.puzzles)} x {task.versions} versions = {task.num_ids - 1} identifiers")
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


def cmd_data_overlap(args) -> int:
    """How many puzzles of a file are inputs of a data set's train and test splits, and how many
    are images of one under the task's symmetries (Task.input_orbit_keys: the orbit split's key),
    so that a score on outside puzzles can say it tests unseen orbits. A run folder's data set is
    rebuilt from its data.json (the fingerprint a run keeps), and refused if it is not the one the
    run trained on."""
    record = args.source / "data.json"
    if record.is_file():  # a run folder
        kept = read_fingerprint(record)
        if not isinstance(kept.get("config"), dict):
            raise DatasetError(f"{record}: cannot be read (no task config)")
        ds = build_dataset(from_dict(TaskConfig, kept["config"]))
        changed = fingerprint_changes(kept, ds)
        if changed:
            raise DatasetError(f"{args.source}: the data set built now is not the one the run trained on ({record}): "
                               + "; ".join(changed[:4]))  # fmt: skip
    elif (args.source / "config.json").is_file():
        raise PuzzleError(f"{args.source}: a run from before data.json does not say which data set it trained on; "
                          "build it with gram data build and give that folder")  # fmt: skip
    else:
        ds = load_dataset(args.source)
    task = ds.task
    puzzles = [x for x, _ in solvable_puzzles(task, args.puzzles, False, 1, "checked", False)]
    keys = task.input_orbit_keys(np.stack(puzzles))
    print(f"{'<stdin>' if args.puzzles == '-' else args.puzzles}: {len(puzzles)} puzzles")
    for name in ("train", "test"):
        split = getattr(ds, name)
        inputs = {row.tobytes() for row in split.x}
        same = sum(x.tobytes() in inputs for x in puzzles)
        line = f"  {name} ({len(split)} items): {same} identical"
        if keys is None:
            line += f"; {ds.config.name} has no orbit key, so images are not checked"
        else:
            orbits = set(task.input_orbit_keys(split.x)) if len(split) else set()
            line += f", {sum(k in orbits for k in keys)} share an orbit key with one"
        print(line)
    return 0


def cmd_solve(args) -> int:
    task = get_task(args.task, args.size)
    limit = args.limit if (args.all or args.count) else 1
    results = [sols for _, sols in solvable_puzzles(task, args.puzzles, args.skip_invalid, limit, "solved")]
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
    if not puzzles:
        raise PuzzleError(f"{args.puzzles}: no puzzles (blank lines and # comments only); nothing verified")
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
