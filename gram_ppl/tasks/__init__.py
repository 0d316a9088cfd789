"""Puzzle tasks with exact ground truth: N-Queens, Sudoku and graph 3-colouring (numpy only), and
binarised digits (scikit-learn's images, no checker: gram_ppl.tasks.digits).

`get_task(name, size)` returns a `Task`; see `gram_ppl.tasks.base.Task` for what each provides.
"""

from gram_ppl.tasks.base import PuzzleError, Split, Task
from gram_ppl.tasks.coloring import Coloring
from gram_ppl.tasks.digits import Digits
from gram_ppl.tasks.nqueens import NQueens, NQueensRows
from gram_ppl.tasks.sudoku import Sudoku

TASKS: dict[str, type[Task]] = {"nqueens": NQueens, "nqueens_rows": NQueensRows, "sudoku": Sudoku, "coloring": Coloring,
                             "digits": Digits}  # fmt: skip


def get_task(name: str, size: int) -> Task:
    """The task `name` at `size`; ValueError listing the allowed names or sizes otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](size)


__all__ = [
    "TASKS",
    "Coloring",
    "Digits",
    "NQueens",
    "NQueensRows",
    "PuzzleError",
    "Split",
    "Sudoku",
    "Task",
    "get_task",
]
