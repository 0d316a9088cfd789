"""Fitting, sampling and evaluating GRAM models (SVI with deep supervision, multi-trajectory
inference), installed as `gram_ppl.inference` (the repository folder inference/). Reaches a model
only through `gram_ppl.models` or a module passed in, so a notebook can fit an edited copy of a
model file.
"""
