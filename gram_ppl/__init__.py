"""gram_ppl: GRAM (Generative Recursive reAsoning Models, arXiv:2605.19376) as a probabilistic program.

The public API for notebooks and scripts is what this module exports; everything else is
private and may change. This package never imports the top-level `models` or `inference`
packages (the CLI does, lazily, inside its commands).
"""

__version__ = "0.1.0"

from gram_ppl.config import ConfigError, TaskConfig  # noqa: E402
from gram_ppl.data import Dataset, DatasetError, build_dataset, load_dataset, save_dataset  # noqa: E402
from gram_ppl.tasks import TASKS, PuzzleError, Split, Task, get_task  # noqa: E402

__all__ = [
    "__version__",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "PuzzleError",
    "Split",
    "TASKS",
    "Task",
    "TaskConfig",
    "build_dataset",
    "get_task",
    "load_dataset",
    "save_dataset",
]
