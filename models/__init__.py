"""User-editable GRAM model files, one per backend (priors at the top of each file).

`MODELS[backend]` is the module inference uses by default; pass an edited copy (any module or
object with `model`, `guide`, `PRIORS`) to `inference.fit` instead to try a change. Install
the project in editable mode only: `models` is a generic top-level name, never published.
"""

from models import gram_pyro

MODELS = {"pyro": gram_pyro}
