"""Reading users' puzzle files (docs/formats.md): one puzzle per line, errors by line number."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from gram_ppl.tasks import PuzzleError, Task


def read_puzzles(
    task: Task, source: str | Path, parse: Callable[[str], np.ndarray] | None = None
) -> Iterator[tuple[int, np.ndarray | PuzzleError]]:
    """Yield (line number, x) for each puzzle line of `source` ("-" reads stdin), or
    (line number, PuzzleError) for a line that is malformed or whose givens clash. With
    `parse` (e.g. task.parse_solution) lines are parsed with it and givens are not checked.

    Blank lines and lines starting with '#' are skipped; line numbers count every line from 1.
    Any bytes are accepted: undecodable text is reported as an error of that line.
    """
    with contextlib.ExitStack() as stack:
        stream = sys.stdin.buffer if str(source) == "-" else stack.enter_context(open(source, "rb"))
        yield from _parse_lines(task, _bounded_lines(stream, str(source)), parse)


MAX_LINE = 1 << 20  # bytes: far above any puzzle line (a 30x30 ARC canvas is about 3 KB)


def _bounded_lines(stream, name: str) -> Iterator[bytes]:
    """The lines of a binary stream read one at a time (never the whole stream: `/dev/zero` or a
    huge file costs at most MAX_LINE bytes of memory); a longer line ends the read with an error."""
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            raise PuzzleError(f"{name}: a line longer than {MAX_LINE} bytes; not a puzzle file")
        yield raw.rstrip(b"\n")


def _parse_lines(task: Task, lines: Iterator[bytes], parse) -> Iterator[tuple[int, np.ndarray | PuzzleError]]:
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()  # a leading BOM is not a cell
        except UnicodeDecodeError:
            yield lineno, PuzzleError("not valid UTF-8 text")
            continue
        if not text or text.startswith("#"):
            continue
        try:
            if parse is not None:
                x = parse(text)
            else:
                x = task.parse_puzzle(text)
                task.check_givens(x)
        except PuzzleError as e:
            yield lineno, e
        else:
            yield lineno, x
