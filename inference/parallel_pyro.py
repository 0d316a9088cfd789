"""torch.distributed for the Pyro trainer under torchrun (inference/parallel.py has the rank layout and
the checks): joining and leaving the process group, the shared noise of a sharded batch, and the
all-reduces of gradients and statistics."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger

from gram_ppl import sites
from gram_ppl.inference.objective_pyro import _base
from gram_ppl.inference.parallel import Parallel, from_env


class ShardedNoise(Messenger):
    """Under torchrun: each unobserved noise site draws the whole batch's noise from the shared
    torch RNG and keeps this rank's rows, so shard r gets exactly the noise a single process
    would draw for those puzzles (and every rank's RNG stays in step)."""

    def __init__(self, par: Parallel):
        super().__init__()
        self.par = par

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or not sites.is_noise(msg):
            return
        base = _base(msg["fn"])
        if isinstance(base, dist.Delta):
            return
        b, P = base.batch_shape[0], self.par.world
        full = type(base)(**{k: torch.cat([getattr(base, k)] * P) for k in base.arg_constraints})  # (P·b, ...)
        msg["value"] = full.rsample()[self.par.rank * b : (self.par.rank + 1) * b]  # (b, ...): this rank's rows


def _all_reduce_named(stats: dict[str, float], kls: list[float]) -> tuple[dict[str, float], list[float]]:
    """Named statistics and the KL list averaged over the ranks (one all-reduce, in name order)."""
    names = sorted(stats)
    flat = torch.tensor([stats[k] for k in names] + list(kls), dtype=torch.float64)
    flat = _all_reduce_mean([flat])[0].tolist()
    return dict(zip(names, flat[: len(names)], strict=True)), flat[len(names) :]


def _all_reduce_mean(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """In place: each tensor becomes its mean over the ranks (one flat all-reduce)."""
    if not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return tensors


def device() -> torch.device:
    """The CUDA device of this rank (LOCAL_RANK under torchrun, else the first) when torch sees
    one, else the CPU (no flag needed)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", from_env().local_rank)


def init_parallel(par: Parallel) -> None:
    """Join torchrun's process group: NCCL on GPUs, gloo on CPUs (a no-op for one process)."""
    if par.world == 1 or torch.distributed.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(par.local_rank)
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def close_parallel(par: Parallel) -> None:
    """Leave the process group after a run that ended normally on every rank: a barrier (rank 0
    may still be evaluating or writing its last checkpoint), then destroy_process_group().

    Without it the group is torn down during interpreter finalisation, where gloo's worker
    threads can still hold work objects: a rank then dies with SIGABRT ("terminate called without
    an active exception", pytorch/pytorch#190489), torchrun sends SIGTERM to the others (exit
    130), and the run fails at its very end, more often on a loaded machine. Not called after an
    error: a barrier with a rank gone would wait for the collective timeout (torchrun stops the
    others instead)."""
    if par.world == 1 or not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
