"""What the `gram` commands share: argparse types, task arguments, reading puzzle files,
writing outputs."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from gram_ppl.config import TASK_NAMES
from gram_ppl.fileio import atomic_write
from gram_ppl.puzzle_io import read_puzzles
from gram_ppl.tasks import PuzzleError


def task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASK_NAMES, required=True)
    p.add_argument("--size", type=int, required=True, help="board side, grid side or vertex count")


def int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def finite(strict: bool):
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


finite_positive, finite_nonnegative = finite(strict=True), finite(strict=False)


def temperature(text: str):
    """An argparse type: τ (a finite number >= 0), or START:END, a schedule moving linearly from
    START at a sample's first supervision step to END at its last (config.temperature_schedule)."""
    start, sep, end = text.partition(":")
    if not sep:
        return finite_nonnegative(text)
    try:
        return finite_nonnegative(start), finite_nonnegative(end)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected τ or START:END, finite numbers >= 0, got {text!r}") from None


def solvable_puzzles(task, source: str, skip_invalid: bool, limit: int | None, verb: str, solve: bool = True) -> list:
    """(x, solutions up to `limit`) for each puzzle line of `source`. Malformed, contradictory
    or unsolvable lines are reported by line number; unless skip_invalid, nothing is returned
    and a PuzzleError ("nothing {verb}") ends the command with status 2. With solve=False
    (a task without a solver, digits) lines are only parsed and the solutions are None."""
    name = "<stdin>" if source == "-" else source
    good, errors = [], []
    for lineno, x in read_puzzles(task, source):
        if not solve and not isinstance(x, PuzzleError):
            good.append((x, None))
            continue
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


def write_lines(out: Path, lines: list[str]) -> None:
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
