"""User-editable GRAM model files, one per backend (priors at the top of each file).

`get_model(backend)` is the module inference uses by default ("pyro": gram_pyro.py, "numpyro":
gram_numpyro.py, imported on first use so the Pyro path never loads JAX); pass an edited copy
(any module or object with `model`, `guide`, `PRIORS`) to `inference.fit` instead to try a
change. Install the project in editable mode only: `models` is a generic top-level name, never
published.
"""

import importlib

FILES = {"pyro": "models.gram_pyro", "numpyro": "models.gram_numpyro"}


def get_model(backend: str):
    if backend not in FILES:
        raise ValueError(f"backend must be one of {sorted(FILES)}, got {backend!r}")
    return importlib.import_module(FILES[backend])
