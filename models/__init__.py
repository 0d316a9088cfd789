"""User-editable GRAM model files, one per backend (priors at the top of each file).

`models/gram_pyro.py` (Pyro) and `models/gram_numpyro.py` (NumPyro) arrive with the model
issues; this package holds nothing else. Install the project in editable mode only: `models`
is a generic top-level name and is never published in a wheel.
"""
