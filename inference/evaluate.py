"""Metrics of sampled solutions against exact ground truth."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from gram_ppl.tasks import Split, Task
from inference.svi_pyro import sample


def sample_metrics(
    task: Task, x: np.ndarray, target: np.ndarray, samples: np.ndarray, num_solutions: np.ndarray
) -> dict[str, float | list[float]]:
    """Paper metrics (§7) of N samples per puzzle against exact ground truth.

    x (B, L_x) puzzles, target (B, L_y) stored targets, samples (N, B, L_y), num_solutions (B,).
    - valid: share of single samples satisfying every constraint and the givens (the paper's
      accuracy); exact: share equal to the stored target (one of possibly many solutions);
    - any_valid: puzzles with at least one valid sample; distinct_valid: distinct valid
      solutions per puzzle; coverage: distinct valid / number of solutions (colourings compared
      up to colour names), and coverage_curve[k-1] the same with the first k samples;
    - conflicts_mean / conflicts_sum: violated constraints of the first sample, per puzzle and
      summed over the puzzles (the paper's colouring "conflict edges");
    - tv_uniform: mean over puzzles with a valid sample of the total-variation distance between
      the valid samples' distribution and the uniform distribution on the puzzle's solutions.
    """
    N, B = samples.shape[:2]
    valid = task.is_valid(x[None], samples)  # (N, B)
    keys = [[task.canonical(samples[i, b]).tobytes() for i in range(N)] for b in range(B)]
    curve = [np.mean([len({k for k, v in zip(keys[b][:n], valid[:n, b], strict=True) if v}) / max(num_solutions[b], 1)
                      for b in range(B)]) for n in range(1, N + 1)]  # fmt: skip
    distinct = np.array([len({k for k, v in zip(keys[b], valid[:, b], strict=True) if v}) for b in range(B)])
    conflicts = task.conflicts(x, samples[0])  # (B,)
    tvs = [
        _tv_to_uniform([k for k, v in zip(keys[b], valid[:, b], strict=True) if v], num_solutions[b]) for b in range(B)
    ]
    tvs = [t for t in tvs if t is not None]
    return {
        "valid": float(valid.mean()),
        "exact": float((samples == target[None]).all(-1).mean()),
        "any_valid": float(valid.any(0).mean()),
        "distinct_valid": float(distinct.mean()),
        "coverage": float(curve[-1]),
        "coverage_curve": [round(float(c), 6) for c in curve],
        "conflicts_mean": float(conflicts.mean()),
        "conflicts_sum": int(conflicts.sum()),
        "tv_uniform": float(np.mean(tvs)) if tvs else float("nan"),
        "tv_puzzles": len(tvs),
    }


def _tv_to_uniform(valid_keys: list[bytes], num_solutions: int) -> float | None:
    """TV between the empirical distribution of valid samples and uniform over the solutions."""
    if not valid_keys or num_solutions < 1:
        return None
    counts = np.array(list(Counter(valid_keys).values()), dtype=float) / len(valid_keys)
    unseen = num_solutions - len(counts)
    return 0.5 * (np.abs(counts - 1 / num_solutions).sum() + unseen / num_solutions)


def validity_report(mod, net, cfg, task: Task, test: Split, puzzles: int = 128) -> dict[str, float]:
    """Validity of one prior sample and one guide sample for each of the first `puzzles`."""
    device = net.z0.device
    x = torch.as_tensor(test.x[:puzzles].astype(np.int64), device=device)
    y = torch.as_tensor(test.y[:puzzles].astype(np.int64), device=device)
    prior = sample(mod, net, cfg, cfg.priors, x)[0].cpu().numpy()  # (B, L_y)
    report = {"prior_valid": float(task.is_valid(test.x[:puzzles], prior).mean())}
    if cfg.fit.variant != "deterministic":
        guided = sample(mod, net, cfg, cfg.priors, x, y)[0].cpu().numpy()
        report["guide_valid"] = float(task.is_valid(test.x[:puzzles], guided).mean())
    return report
