"""Backend-neutral pieces of the training objective (numpy only).

The KL ceiling (`FitConfig.kl_cap_weight`, `kl_cap`, `kl_cap_per_example`): each supervision
step's KL(q ‖ p) per puzzle pays λ·relu(KL − C_i) on top of β·KL. Free bits are a floor on what
the posterior must carry; this is a ceiling on what it may carry. Choosing one of the n_i
solutions of training input i needs ln(n_i) nats, so with `kl_cap_per_example` the ceiling is
C_i = ln(n_i) + kl_cap (kl_cap is then the slack; a count stored as -1, too large for int64 or
not known, takes the task's `log_count_unknown`: ln of the 9x9 grid count, or no ceiling where
the count is not known); otherwise C_i = kl_cap for every puzzle. With
`kl_cap_spread`, ln(n_i) is shared out over the S steps the guide acts in: C_i = ln(n_i)/S + kl_cap
per step, so the answer is carried a part per step rather than all at the first.
Without it the guide writes the answer cell by cell into the noise (14–19 nats per 8-Queens
puzzle where ln(n) averages 0.32), the decoder learns to read that, and samples from the prior,
which cannot know the answer, decode into inconsistent boards (docs/recipe.md).

The KL floor (`kl_floor`): a guide outside the prior's family (`FitConfig.guide_family`) cannot
match the prior, so every guided dimension pays at least a fixed KL whatever the guide learns
(Normal guide, studentt df 4 prior: 0.046 nats per dimension at equal scale, 0.026 at the best
scale); summed over a step's noise dimensions this can exceed the ceiling by far.

`Recording` is the shared core's bookkeeping for both backends (§3: the model, replayed on the
guide's noise, reuses the guide's deterministic updates instead of running f_L / f_H again).
"""

from __future__ import annotations

import collections
import math

import numpy as np

from gram_ppl.config import prior_path


class Recording:
    """Results of calls in the order they were made, or, from `replay()`, the same results handed
    back in that order. `call(kind, fn, *args)` computes fn(*args) and records it; on a replay it
    returns the next recorded result instead, and refuses a call of another kind than the one
    recorded there. Calls beyond the recording are computed and not recorded (the deterministic
    variant has no guide to record)."""

    def __init__(self, replaying: collections.deque | None = None):
        self._log, self._replaying = [], replaying

    def replay(self) -> Recording:
        return Recording(collections.deque(self._log))

    def call(self, kind: str, fn, *args):
        if self._replaying:
            recorded, out = self._replaying.popleft()
            if recorded != kind:
                raise RuntimeError(f"the model called {kind} where the guide called {recorded}")
            return out
        out = fn(*args)
        if self._replaying is None:
            self._log.append((kind, out))
        return out


def log_count_unknown(task) -> float:
    """The task's ln n for counts stored as -1 (Task.log_count_unknown); inf without a task."""
    return math.inf if task is None else task.log_count_unknown


def kl_ceiling(fit, num_solutions, batch: int, log_unknown: float = math.inf) -> np.ndarray:
    """C_i in nats for each of the `batch` puzzles (float32, (B,)); `num_solutions` (B,) the exact
    number of solutions of each training input (needed with `kl_cap_per_example`, else ignored),
    -1 where it does not fit in int64: then ln n_i is `log_unknown` (Task.log_count_unknown: the
    9x9 grid count; inf, no ceiling, where the count is not known)."""
    if not fit.kl_cap_per_example:
        return np.full(batch, fit.kl_cap, np.float32)
    if num_solutions is None:
        raise ValueError("kl_cap_per_example needs the number of solutions of every training input")
    n = np.asarray(num_solutions, np.float64).reshape(-1)
    if n.shape != (batch,) or not ((n >= 1) | (n == -1)).all():
        raise ValueError(f"num_solutions must be {batch} counts >= 1 (or -1: unknown), got shape {n.shape}")
    # kl_cap_spread: ln(n_i) shared out over the S steps the guide acts in
    share = (fit.guide_steps or fit.n_sup) if fit.kl_cap_spread else 1
    log_n = np.where(n >= 1, np.log(np.maximum(n, 1)), log_unknown)  # -1: a count too large to store
    return (log_n / share + fit.kl_cap).astype(np.float32)


def _log_density(family: str, x: np.ndarray, scale: float, df: float) -> np.ndarray:
    """log density at x of the zero-centred family with this scale (numpy; the PRIORS families)."""
    z = x / scale
    if family == "normal":
        return -0.5 * z**2 - math.log(scale * math.sqrt(2 * math.pi))
    if family == "laplace":
        return -np.abs(z) - math.log(2 * scale)
    norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi) - math.log(scale)
    return norm - (df + 1) / 2 * np.log1p(z**2 / df)


def kl_floor(guide: str, prior: str, df: float = 4.0) -> tuple[float, float]:
    """KL(q ‖ p) in nats per dimension between a zero-centred guide of family `guide` and a prior
    of family `prior` (studentt with `df`): (at equal scale, as at initialisation; at the guide's
    best scale, the least any guide of that family can pay). (0, 0) for equal families."""
    if guide == prior:
        return 0.0, 0.0
    x = np.linspace(-60.0, 60.0, 240_001)  # the prior's scale is 1 (the KL is scale-free)
    dx = x[1] - x[0]
    log_p = _log_density(prior, x, 1.0, df)

    def kl(log_r: float) -> float:
        log_q = _log_density(guide, x, math.exp(log_r), df)
        return float((np.exp(log_q) * (log_q - log_p)).sum() * dx)

    best = min(kl(r) for r in np.linspace(-1.5, 1.5, 121))
    return kl(0.0), best


def guided_dims(fit, noised_positions: int, dim: int) -> int:
    """Noise dimensions the guide draws per supervision step: positions × channels × guided
    transitions (all T with guide_transitions "all", else the last)."""
    return noised_positions * dim * (fit.T if fit.guide_transitions == "all" else 1)


PRIOR_PATH_MAX_SOLUTIONS = 64  # prior_path_target="nearest": at most this many exact solutions per input


def cached_solutions(task, cache: dict):
    """task.solutions of one input row (at most PRIOR_PATH_MAX_SOLUTIONS), cached per input in
    `cache` (a trainer's, both backends); None without a task."""
    if task is None:
        return None

    def solutions(row: np.ndarray) -> np.ndarray:
        key = row.tobytes()
        if key not in cache:
            cache[key] = task.solutions(row, limit=PRIOR_PATH_MAX_SOLUTIONS)  # (m, L_y)
        return cache[key]

    return solutions


def prior_path_targets(cfg, x: np.ndarray, y: np.ndarray, solutions=None, pool=None) -> tuple[np.ndarray, np.ndarray]:
    """What each of the batch's first P = min(prior_path_puzzles, B) inputs is scored against by
    the prior-path term (the target rule in force, config.prior_path), for both backends: the
    candidate targets (M, L_y) and mask (P, M) bool, those that count for each input. "y": the
    pair's own y; "batch": every target of the batch for the same input; "nearest":
    `solutions(x_row)` -> (m, L_y), the input's exact solutions; "train": every target of `pool`
    = (x, y) of the training split for the same input (generation: every training grid), and the
    pair's own y (an augmented input may not be in the pool); "repair": the pair's y, replaced at
    the first step by each rollout's repaired board (`repair_targets`). The term takes the best candidate
    under each rollout (the nearest in log-likelihood; each backend picks it without a gradient
    through `candidate_onehot`, then scores it: the value and gradient of the max)."""
    x, y, target = np.asarray(x), np.asarray(y), prior_path(cfg).target
    P = min(cfg.fit.prior_path_puzzles, len(x))
    own = np.eye(P, dtype=bool)  # (P, P): each input's own pair
    if target == "batch":
        return y, (x[:P, None] == x[None]).all(-1)  # (B, L_y), (P, B): True at least at its own pair
    if target == "nearest":
        if solutions is None:
            raise ValueError('fit.prior_path_target="nearest" needs the task (its exact solutions)')
        sols = [np.asarray(solutions(row)) for row in x[:P]]  # (m_p, L_y) each
        owner = np.repeat(np.arange(P), [len(s) for s in sols])  # (M,)
        return np.concatenate(sols), owner[None] == np.arange(P)[:, None]  # (M, L_y), (P, M)
    if target == "train":
        if pool is None:
            raise ValueError('fit.prior_path_target="train" needs the training split (the trainer\'s target_pool)')
        px, py = (np.asarray(a) for a in pool)  # (N, L_x), (N, L_y)
        same = (px[None] == x[:P, None]).all(-1) if (px != px[:1]).any() else np.ones((P, len(px)), bool)  # (P, N)
        return np.concatenate([y[:P], py]), np.concatenate([own, same], 1)  # (P + N, L_y), (P, P + N)
    return y[:P], own  # (P, L_y): the pair's y


def repair_targets(task, x: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """The "repair" rule's targets (R, L_y) int64 for both backends: each rollout's board, drawn by
    its first supervision step's log-probabilities logp (R, L_y, V), repaired into a valid one by
    the task's solver for its input x (R, L_x) (Task.repair)."""
    if task is None:
        raise ValueError('fit.prior_path_target="repair" needs the task (its solver repairs the boards)')
    boards = [task.repair(xi, lp) for xi, lp in zip(np.asarray(x), np.asarray(logp), strict=True)]  # (L_y,) each
    return np.stack(boards).astype(np.int64)


def candidate_onehot(targets: np.ndarray, vocab: int) -> np.ndarray:
    """The candidates (M, L_y) as one-hot rows (M, L_y * vocab) float32: a rollout's
    log-likelihood of every candidate is one matrix product with its log-probabilities."""
    M, L = targets.shape
    out = np.zeros((M, L * vocab), np.float32)
    out[np.arange(M)[:, None], np.arange(L) * vocab + targets] = 1.0
    return out
