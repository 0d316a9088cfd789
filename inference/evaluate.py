"""Metrics of sampled solutions against exact ground truth."""

from __future__ import annotations

import numpy as np
import torch

from gram_ppl.tasks import Split, Task
from inference.svi_pyro import sample


def sample_metrics(task: Task, x: np.ndarray, samples: np.ndarray, num_solutions: np.ndarray) -> dict[str, float]:
    """x (B, L_x), samples (N, B, L_y), num_solutions (B,) -> validity of single samples, the
    share of puzzles with at least one valid sample, distinct valid solutions per puzzle, and
    coverage (distinct valid / number of solutions; colouring compares canonical forms)."""
    valid = task.is_valid(x[None], samples)  # (N, B)
    distinct = np.array([len({task.canonical(s).tobytes() for s in samples[v, b]}) for b, v in enumerate(valid.T)])
    return {
        "valid": float(valid.mean()),
        "any_valid": float(valid.any(0).mean()),
        "distinct_valid": float(distinct.mean()),
        "coverage": float(np.mean(distinct / np.maximum(num_solutions, 1))),
    }


def validity_report(mod, net, cfg, task: Task, test: Split, puzzles: int = 128) -> dict[str, float]:
    """Validity of one prior sample and one guide sample for each of the first `puzzles`."""
    x = torch.as_tensor(test.x[:puzzles].astype(np.int64))
    y = torch.as_tensor(test.y[:puzzles].astype(np.int64))
    prior = sample(mod, net, cfg, cfg.priors, x)[0].numpy()  # (B, L_y)
    report = {"prior_valid": float(task.is_valid(test.x[:puzzles], prior).mean())}
    if cfg.fit.variant != "deterministic":
        guided = sample(mod, net, cfg, cfg.priors, x, y)[0].numpy()
        report["guide_valid"] = float(task.is_valid(test.x[:puzzles], guided).mean())
    return report
