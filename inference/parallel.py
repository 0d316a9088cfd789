"""Data-parallel training across processes started by torchrun (torch.distributed), Pyro backend.

    torchrun --standalone --nproc-per-node P -m gram_ppl fit ...              # one machine, P ranks
    torchrun --nnodes N --nproc-per-node P --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 --rdzv-id RUN -m gram_ppl fit ...          # N machines

Nothing else changes: the same command line, config and run-folder format. Every rank builds
the same networks (torch seeded with fit.seed) and draws the same data order (numpy seeded with
fit.seed); each batch of fit.batch_size puzzles is split into P contiguous shards, rank r
trains on shard r, and the gradients are averaged with an all-reduce before each optimiser step,
so every rank takes the same step. The noise ε_t of each puzzle is the draw a single process
would make for it (each rank draws the whole batch's noise from the shared RNG and keeps its
shard), so P ranks reproduce a one-process run on the full batch up to float32 rounding
(tests/test_parallel.py). Rank 0 alone takes the run folder's writer lock, writes checkpoints
and history, evaluates and prints; resuming (`--resume`) reads the checkpoint on every rank.
The gloo backend on CPUs, NCCL on GPUs (rank r on cuda:LOCAL_RANK).

This module is backend-neutral (no torch import): the rank layout and the checks. The
collectives live in inference/svi_pyro.py.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from gram_ppl.config import ConfigError, GramConfig, prior_path


class Parallel(NamedTuple):
    """Where this process sits: rank of world, and its device index on this machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, *arrays):
        """This rank's contiguous share of a batch: rows [r·B/P, (r+1)·B/P) of each array."""
        b = len(arrays[0]) // self.world
        return tuple(a[self.rank * b : (self.rank + 1) * b] for a in arrays)


def from_env(environ=os.environ) -> Parallel:
    """The layout torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK); one process without them."""
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {e}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"inconsistent torchrun layout: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return Parallel(rank, world, local)


def check(cfg: GramConfig, par: Parallel) -> None:
    """What data-parallel training supports, as clear errors before anything starts."""
    if par.world == 1:
        return
    if cfg.backend != "pyro":
        raise ConfigError(
            f"torchrun data parallel trains the pyro backend; got backend {cfg.backend!r} "
            "(NumPyro runs on JAX's devices in one process)"
        )
    if cfg.fit.batch_size % par.world:
        raise ConfigError(f"batch_size {cfg.fit.batch_size} must be divisible by the {par.world} ranks")
    if prior_path(cfg).weight or cfg.fit.reward_weight:
        raise ConfigError("the prior-path term (on by default for Sudoku generation) and fit.reward_weight are "
                          "single-process only (not under torchrun): --set fit.prior_path_weight=0 / fit.reward_weight=0")  # fmt: skip
