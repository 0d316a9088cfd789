"""Metrics of sampled solutions against exact ground truth."""

from __future__ import annotations

from collections import Counter

import numpy as np

from gram_ppl.seeds import part, seed_for
from gram_ppl.tasks import Split, Task


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


def validity_report(task: Task, test: Split, puzzles: int, draw, guided: bool, log_lik=None) -> dict[str, float]:
    """Validity of one prior sample and (when `guided`) one guide sample for each of the first
    `puzzles` held out; `draw(x, y)` returns one board per puzzle (B, L_y) as numpy, from the
    prior when y is None and through the guide otherwise (each backend's trainer supplies it).
    With `log_lik(x, y)` ((K, B) log p(y | τ_k, x) of K prior trajectories), also the held-out
    importance-weighted bound `heldout_log_p` (`iw_bound`)."""
    x, y = test.x[:puzzles], test.y[:puzzles]
    report = {"prior_valid": float(task.is_valid(x, draw(x, None)).mean())}
    if guided:
        report["guide_valid"] = float(task.is_valid(x, draw(x, y)).mean())
    if log_lik is not None:
        report["heldout_log_p"] = float(iw_bound(log_lik(x, y)).mean())
    return report


def held_out_validity(backend, trainer, task: Task, test: Split, puzzles: int, seed: int) -> dict[str, float]:
    """`validity_report` for a trainer of either backend (the module `backend`: its `sample` and
    `log_likelihood`), from its sampling networks: one prior draw (stream `seed`), one guide draw
    and 8 prior trajectories for the bound (its sub-streams); the training RNG is untouched."""
    net, mod, cfg = trainer.sampling_net(), trainer.mod, trainer.cfg

    def draw(x, y):
        return backend.sample(mod, net, cfg, x, y, seed=seed if y is None else part(seed, "guide"))[0]  # (B, L_y)

    def log_lik(x, y):
        return backend.log_likelihood(mod, net, cfg, x, y, num_samples=8, seed=part(seed, "likelihood"))  # (8, B)

    return validity_report(task, test, puzzles, draw, cfg.fit.variant != "deterministic", log_lik)


def iw_bound(log_lik: np.ndarray) -> np.ndarray:
    """log (1/K) Σ_k p(y | τ_k, x) per puzzle from (K, B) log-likelihoods of K prior trajectories:
    the importance-weighted estimate of log p(y | x) with the prior as proposal, a lower bound
    in expectation that tightens as K grows (nats per puzzle; y one reference solution, so for
    an input with n equally likely solutions the best possible value is about −ln n)."""
    log_lik = np.asarray(log_lik, dtype=np.float64)
    m = log_lik.max(0)
    return m + np.log(np.exp(log_lik - m).mean(0))


def heldout_elpd(run, num_samples: int, puzzles: int | None = None, seed: int | None = None) -> np.ndarray:
    """Per held-out puzzle (B,), the importance-weighted estimate of log p(y | x) from
    `num_samples` prior trajectories (`iw_bound`; y the stored reference solution). Runs on the
    same task and data seed score the same puzzles, so their differences pair up."""
    from gram_ppl.inference.backend import get_backend
    from gram_ppl.inference.loading import LoadedRun, load_run

    run = run if isinstance(run, LoadedRun) else load_run(run)
    test, cfg = run.data.test, run.config
    x, y = test.x[:puzzles], test.y[:puzzles]
    from gram_ppl.inference.sampling import chunk_seeds

    seed = seed_for(cfg, "elpd") if seed is None else seed
    backend = get_backend(cfg.backend)
    chunks = chunk_seeds(cfg, run.task, num_samples, len(x), seed)  # (K, B) log-likelihoods are small; h is not
    log_lik = [backend.log_likelihood(run.mod, run.net, cfg, x, y, n, seed=s) for n, s in chunks]
    return iw_bound(np.concatenate(log_lik))


def elpd_table(scores: dict[str, np.ndarray], num_samples: int) -> str:
    """A markdown table in az.compare's shape: runs ranked by summed held-out log p(y | x), the
    difference to the best with its standard error sqrt(B · var(pointwise differences))."""
    sizes = {len(v) for v in scores.values()}
    if len(sizes) != 1:
        raise ValueError("the runs were scored on different numbers of puzzles (another task or data set?)")
    ranked = sorted(scores, key=lambda k: -scores[k].sum())
    best = scores[ranked[0]]
    B = len(best)
    lines = [
        f"held-out log p(y | x), importance-weighted over {num_samples} prior trajectories, {B} puzzles",
        "",
        "| rank | run | elpd | se | elpd_diff | dse |",
        "|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(ranked):
        v = scores[name]
        diff = best - v
        dse = float(np.sqrt(B * diff.var(ddof=1))) if B > 1 else float("nan")
        se = float(np.sqrt(B * v.var(ddof=1))) if B > 1 else float("nan")
        lines.append(f"| {i} | {name} | {v.sum():.1f} | {se:.1f} | {diff.sum():.1f} | {dse:.1f} |")
    return "\n".join(lines)


def comparison_table(rows: list[tuple[str, str, dict]], num_samples: int) -> str:
    """A markdown table of (run, variant, `evaluate_run` metrics) rows, as `gram compare` prints it."""
    n = num_samples
    lines = [
        f"held-out puzzles: {rows[0][2]['puzzles']}, {n} prior samples each",
        "",
        f"| run | variant | valid (1 sample) | puzzles solved@{n} | distinct valid@{n} | coverage@{n} |",
        "|---|---|---|---|---|---|",
    ]
    for run, variant, m in rows:
        lines.append(f"| {run} | {variant} | {m['valid']:.1%} | {m['any_valid']:.1%} | {m['distinct_valid']:.2f} "
                     f"| {m['coverage']:.1%} |")  # fmt: skip
    return "\n".join(lines)


def evaluate_run(
    folder, num_samples: int = 20, depth: int | None = None, puzzles: int | None = None, temperature: float = 1.0
) -> dict:
    """Prior samples for the held-out puzzles of a run (a folder or a LoadedRun), scored against exact ground truth
    (inference.evaluate.sample_metrics), plus single-sample validity after each step and the
    metrics split by the inputs' numbers of solutions (1, 2-3, 4+). `temperature` scales the
    prior's σ (inference/tempering.py). A task without a checker (digits) is scored by
    gram_ppl.tasks.digits.image_metrics over all num_samples x puzzles images instead."""
    from gram_ppl.inference.loading import LoadedRun, load_run
    from gram_ppl.inference.sampling import rollout

    cfg, net, data, mod = folder if isinstance(folder, LoadedRun) else load_run(folder)
    test, task = data.test, data.task
    x, depth = test.x[:puzzles], depth or cfg.fit.n_sup
    r = rollout(mod, net, cfg, x, num_samples, depth, temperature=temperature, seed=seed_for(cfg, "evaluate"))
    head = {"puzzles": len(x), "num_samples": num_samples, "depth": depth, "temperature": temperature}
    if not task.checker:  # images (digits): a classifier on held-out real digits judges the samples
        from gram_ppl.tasks.digits import judge_run_samples

        return {**head, **judge_run_samples(data, r.boards, task.sample_labels(x, r.boards.shape[:2]))}
    n_sol = test.num_solutions[:puzzles]
    metrics = sample_metrics(task, x, test.y[:puzzles], r.boards, n_sol)
    by_depth = [round(float(task.is_valid(x[None], b).mean()), 6) for b in r.per_step]
    by_count = {}
    for name, lo, hi in (("1", 1, 1), ("2-3", 2, 3), ("4+", 4, None)):
        sel = (n_sol >= lo) & ((n_sol <= hi) if hi is not None else True)
        if sel.any() and len(np.unique(n_sol)) > 1:
            m = sample_metrics(task, x[sel], test.y[:puzzles][sel], r.boards[:, sel], n_sol[sel])
            by_count[name] = {"puzzles": int(sel.sum()), "valid": m["valid"], "coverage": m["coverage"]}
    votes = task.vote_report(x, r.boards, r.value)  # ARC: pass@2 over each test pair's augmented versions
    return {**head, **metrics, **votes, "valid_by_depth": by_depth, "by_num_solutions": by_count}
