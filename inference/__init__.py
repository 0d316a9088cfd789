"""Fitting, sampling and evaluating GRAM models (SVI with deep supervision, multi-trajectory
inference). Reaches a model only through the `models` package or a callable passed in, so a
notebook can fit an edited copy of a model file. Filled by the model and inference issues.
"""
