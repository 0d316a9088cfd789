"""Reading users' puzzle files (docs/formats.md): one puzzle per line, errors by line number."""

from __future__ import annotations

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
    data = sys.stdin.buffer.read() if str(source) == "-" else Path(source).read_bytes()
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
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
