"""User-editable GRAM model files, one per backend, and the PRIORS block both read (priors.py).

`get_model(backend)` is the module inference uses by default ("pyro": gram_pyro.py, "numpyro":
gram_numpyro.py, imported on first use so the Pyro path never loads JAX); pass an edited copy
(any module or object with `model`, `guide`, `PRIORS`) to `gram_ppl.inference.fit` instead to try a
change. Installed as `gram_ppl.models` (the repository folder models/, pyproject's package-dir).
"""

import importlib

FILES = {"pyro": "gram_ppl.models.gram_pyro", "numpyro": "gram_ppl.models.gram_numpyro"}


def get_model(backend: str):
    if backend not in FILES:
        raise ValueError(f"backend must be one of {sorted(FILES)}, got {backend!r}")
    return importlib.import_module(FILES[backend])
