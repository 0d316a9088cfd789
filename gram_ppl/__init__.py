"""gram_ppl: GRAM (Generative Recursive reAsoning Models, arXiv:2605.19376) as a probabilistic program.

The public API for notebooks and scripts is what this module exports; everything else is
private and may change:

- data: `TaskConfig`, `build_dataset`, `save_dataset`, `load_dataset`, `get_task`, `Task`, ...
- configs: `GramConfig`, `NetConfig`, `FitConfig`, `PriorConfig` (frozen; `dataclasses.replace`)
- models: `fit(cfg, folder, steps=...)`, `load_run(folder)`, `sample(run, x, num_samples)`,
  `evaluate(run)`, `compare(runs, elpd=K)`, `to_inference_data(run)` (ArviZ), `explain_loo(idata)`
  (what az.loo / az.compare mean on it), `diagnose(run, out)` (a report folder).

The model and inference names resolve on first use (PEP 562), so `import gram_ppl` and the
data side load neither torch nor JAX; the repository's models/ and inference/ folders install
as `gram_ppl.models` and `gram_ppl.inference`, and this module's floor never imports them at
import time.
"""

import importlib

from gram_ppl._version import __version__
from gram_ppl.config import ConfigError, FitConfig, GramConfig, NetConfig, PriorConfig, TaskConfig
from gram_ppl.data import Dataset, DatasetError, build_dataset, load_dataset, save_dataset
from gram_ppl.tasks import TASKS, PuzzleError, Split, Task, get_task

_LAZY = {
    "fit": "gram_ppl.inference.api",
    "load_run": "gram_ppl.inference.api",
    "sample": "gram_ppl.inference.api",
    "evaluate": "gram_ppl.inference.api",
    "compare": "gram_ppl.inference.api",
    "to_inference_data": "gram_ppl.inference.api",
    "diagnose": "gram_ppl.inference.diagnose",
    "refit_prior": "gram_ppl.inference.api",
    "explain_loo": "gram_ppl.diagnostics",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gram_ppl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "__version__",
    "ConfigError",
    "FitConfig",
    "GramConfig",
    "NetConfig",
    "PriorConfig",
    *_LAZY,
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
