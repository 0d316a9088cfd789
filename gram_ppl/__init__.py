"""gram_ppl: GRAM (Generative Recursive reAsoning Models, arXiv:2605.19376) as a probabilistic program.

The public API for notebooks and scripts is what this module exports; everything else is
private and may change. The repository's models/ and inference/ folders install as
`gram_ppl.models` and `gram_ppl.inference`; this module's floor never imports them (the CLI
does, lazily, inside its commands).
"""

from gram_ppl._version import __version__
from gram_ppl.config import ConfigError, TaskConfig
from gram_ppl.data import Dataset, DatasetError, build_dataset, load_dataset, save_dataset
from gram_ppl.tasks import TASKS, PuzzleError, Split, Task, get_task

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
