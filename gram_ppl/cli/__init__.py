"""The `gram` command line: a thin argparse layer over importable functions.

Commands (`gram COMMAND --help` for each):

- `gram data build | info | export`: generate, check and print puzzle data sets
- `gram solve`, `gram verify`: the exact solvers and checkers, on puzzle files
- `gram fit`: train GRAM (or a baseline) with SVI into a run folder (`--resume`, `--force`)
- `gram evaluate`, `gram compare`: prior samples on held-out puzzles, scored against exact ground truth
- `gram sample`, `gram generate`: prior samples for your puzzles, unconditional samples from p(x)
- `gram diagnose`: the ArviZ export, PSIS k̂, plots and summary.md of a run
- `gram convert`: a run moved to the other backend

Errors in the user's input or configuration print `gram: error: ...` to stderr and exit with
status 2, never a traceback; Ctrl-C exits with 130 (fit saves a checkpoint first). The commands
live in gram_ppl/cli/puzzles.py and gram_ppl/cli/runs.py, above the library they call.
"""

from __future__ import annotations

import argparse
import sys

from gram_ppl.cli import puzzles, runs
from gram_ppl.cli.common import write_lines
from gram_ppl.config import ConfigError
from gram_ppl.data import DatasetError
from gram_ppl.tasks import PuzzleError

__all__ = ["build_parser", "main", "write_lines"]

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
    p = argparse.ArgumentParser(prog="gram", description="GRAM as a probabilistic program: data, fitting, sampling.")
    sub = p.add_subparsers(dest="command", required=True)
    puzzles.add_commands(sub)
    runs.add_commands(sub)
    return p
