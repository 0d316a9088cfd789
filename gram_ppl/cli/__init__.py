"""The `gram` command line: a thin argparse layer over importable functions.

Commands (`gram COMMAND --help` for each):

- `gram data build | info | export`: generate, check and print puzzle data sets
- `gram solve`, `gram verify`: the exact solvers and checkers, on puzzle files
- `gram fit`: train GRAM (or a baseline) with SVI into a run folder (`--resume`, `--force`)
- `gram evaluate`, `gram compare`: prior samples on held-out puzzles, scored against exact ground truth
- `gram sample`, `gram generate`: prior samples for your puzzles, unconditional samples from p(x)
- `gram diagnose`: the ArviZ export, PSIS k̂, plots and summary.md of a run
- `gram convert`: a run moved to the other backend
- `gram refit-prior`: a generation run with its first step's prior refitted to the guide (priors.rank)

Errors in the user's input or configuration print `gram: error: ...` to stderr and exit with
status 2, never a traceback; Ctrl-C exits with 130 (fit saves a checkpoint first). The commands
live in gram_ppl/cli/puzzles.py and gram_ppl/cli/runs.py, above the library they call.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from gram_ppl.cli import puzzles, runs
from gram_ppl.cli.common import write_lines
from gram_ppl.config import ConfigError
from gram_ppl.data import DatasetError
from gram_ppl.tasks import PuzzleError

__all__ = ["build_parser", "exit_process", "main", "write_lines"]

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


def exit_process(code: int, environ=os.environ) -> NoReturn:
    """End the process with `code` once main() has returned (`python -m gram_ppl`, and so every
    torchrun worker). A worker of a multi-process run (WORLD_SIZE > 1) flushes its output and
    leaves with os._exit, skipping interpreter finalisation: there gloo's C++ threads can abort a
    rank with SIGABRT ("terminate called without an active exception") even after the rank left
    the process group (inference.parallel_pyro.close_parallel), and torchrun then fails, with exit
    130, a run that finished and saved (seen in a clean-clone CI run on a loaded machine,
    2026-12-06: tests/test_parallel.py). Every file a command writes is closed before main()
    returns. A single process exits normally."""
    if int(environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed (a broken pipe): nothing left to write
                pass
        os._exit(code)
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gram", description="GRAM as a probabilistic program: data, fitting, sampling.")
    sub = p.add_subparsers(dest="command", required=True)
    puzzles.add_commands(sub)
    runs.add_commands(sub)
    return p
