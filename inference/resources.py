"""Resource checks before work starts: an estimate of the memory a fit or a sampling call needs,
refused with the estimate in the message when it exceeds what this machine has (a config such as
fit.K=1000000000 or net.dim=1000000, or --num-samples 100000, would otherwise end in the
out-of-memory killer). The estimates are rough upper bounds of the dominant terms (float32)."""

from __future__ import annotations

import os

from gram_ppl.config import net_in_force, prior_path
from gram_ppl.inference.runfolder import RunError

SHARE = 0.8  # refuse above this share of the physical memory
CHUNK_SHARE = 0.2  # sampling runs in chunks of trajectories that each need at most this share
MAX_DEPTH = 4096  # supervision steps a sampling call may run (the paper extrapolates to 256)


def machine_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _per_row_activation(cfg, task) -> float:
    """Floats one row (puzzle) keeps per block application: the mixer and SwiGLU intermediates."""
    net = net_in_force(cfg)  # the mixer the task's rule gives
    L = task.seq_len + net.prefix_tokens
    hidden = net.expansion * net.dim
    mixer = net.heads * L if net.mixer == "attention" else 3 * L
    return L * (8 * net.dim + 3 * hidden + mixer)


def parameter_count(cfg, task) -> float:
    net = cfg.net
    D, hidden = net.dim, net.expansion * net.dim
    block = 4 * D * D + 3 * hidden * D
    cores = 1 if net.share_core else 2
    embeddings = D * (task.x_vocab + task.y_vocab + task.num_ids)  # num_ids: ARC's puzzle embedding
    return cores * net.layers * block + 8 * D * max(net.guidance_hidden, D) + embeddings


def fit_bytes(cfg, task) -> float:
    fit = cfg.fit
    params = 4 * parameter_count(cfg, task) * (5 + (1 if fit.ema else 0))  # weights, grads, Adam, EMA
    calls = (fit.K + 1) * cfg.net.layers * (fit.T if fit.objective == "surrogate" else fit.T * fit.n_sup)
    rows = fit.batch_size + (fit.prior_path_samples * fit.prior_path_puzzles if prior_path(cfg).weight else 0)
    return params + 4 * rows * calls * _per_row_activation(cfg, task)


def sample_bytes(cfg, task, rows: int) -> float:
    params = 4 * parameter_count(cfg, task)
    return params + 4 * rows * (_per_row_activation(cfg, task) + 4 * task.seq_len * cfg.net.dim)


def trajectory_bytes(cfg, task, rows: int, depth: int) -> float:
    """What `collect` (diagnostics) holds: every step's h of every trajectory, in torch and again
    as numpy, besides one sampling pass."""
    L = task.seq_len + cfg.net.prefix_tokens
    return sample_bytes(cfg, task, rows) + 2 * 4 * rows * (depth + 1) * L * cfg.net.dim


def sample_chunks(cfg, task, num_samples: int, puzzles: int) -> list[int]:
    """Split `num_samples` trajectories per puzzle (for `puzzles` puzzles at once) into chunks
    whose sampling pass each needs at most CHUNK_SHARE of the machine's memory: the sample
    counts per chunk (one chunk, [num_samples], whenever it fits)."""
    params = 4 * parameter_count(cfg, task)
    per_sample = sample_bytes(cfg, task, puzzles) - params  # one trajectory for each puzzle
    n = max(1, int((CHUNK_SHARE * machine_bytes() - params) // max(per_sample, 1.0)))
    return [min(n, num_samples - i) for i in range(0, num_samples, n)]


def check_depth(depth: int) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise RunError(f"depth must be an integer from 1 to {MAX_DEPTH} supervision steps, got {depth!r}")


def check_trajectories(cfg, task, rows: int, depth: int) -> None:
    check_memory(trajectory_bytes(cfg, task, rows, depth),
           f"keeping every step of {rows:,} trajectories (depth {depth}, dim {cfg.net.dim}; fewer --num-samples)")  # fmt: skip


def check_threads(threads: int) -> None:
    cores = os.cpu_count() or 1
    if threads > cores:
        raise RunError(f"fit.threads={threads} exceeds this machine's {cores} cores (threads would fight over them)")


def check_memory(need: float, what: str) -> None:
    """Refuse `what` with its estimate when it needs more than SHARE of the machine's memory."""
    have = machine_bytes()
    if need > SHARE * have:
        raise RunError(f"{what} needs an estimated {need / 2**30:,.1f} GiB; this machine has {have / 2**30:,.1f} GiB")


def check_fit(cfg, task) -> None:
    f, n = cfg.fit, cfg.net
    check_threads(f.threads)
    check_memory(
        fit_bytes(cfg, task), f"training with batch {f.batch_size}, K {f.K}, T {f.T}, dim {n.dim}, layers {n.layers}"
    )
