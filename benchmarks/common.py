"""Helpers shared by the benchmark scripts (imported as `common`, the scripts' own folder)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np


def median_seconds(fn, repeats: int, warmup: bool = False) -> float:
    """Median wall time of `repeats` calls of fn (after one untimed call with warmup)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_json(path: str | None, rows) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def twin_networks(cfg, seed: int = 0):
    """What the backend comparisons run: cfg's data set, a torch network (torch seeded with
    `seed`), the NumPyro copy of cfg and its flax network, and the torch weights converted to
    flax parameters. Imports torch and JAX here, so a script can set XLA_FLAGS first."""
    import dataclasses

    import torch

    from gram_ppl.data import build_dataset
    from gram_ppl.networks import convert, flax_nets
    from gram_ppl.networks.torch_nets import build_net

    data = build_dataset(cfg.task)
    torch.manual_seed(seed)
    tnet = build_net(cfg, data.task)
    params = convert.torch_to_flax({k: v.numpy() for k, v in tnet.state_dict().items()}, cfg.net.share_core)
    ncfg = dataclasses.replace(cfg, backend="numpyro")
    return data, tnet, ncfg, flax_nets.build_net(ncfg, data.task), params


def baseline_args(parser, cpu_minutes: float, samples: int) -> None:
    """The arguments every baseline script takes: a CPU-time (or batch) budget, the training seed,
    how many samples to score, and where to write the JSON row."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--cpu-minutes", type=float, default=cpu_minutes)
    budget.add_argument("--steps", type=int, help="batches instead (smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data set is the default one)")
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--json")
    parser.add_argument("--save-samples", help="a .npy file for the samples' tokens (M, L), to draw them")


def save_samples(path, samples: np.ndarray) -> None:
    """Write a baseline's samples (M, L) of tokens as .npy where --save-samples asks (a folder is made)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(samples))


def budget_left(steps, cpu_minutes, done: int, cpu_start: float) -> bool:
    """Whether a baseline's training loop goes on: fewer than `steps` batches done, or less than
    `cpu_minutes` of this process's CPU time since `cpu_start` (time.process_time())."""
    if steps is not None:
        return done < steps
    return time.process_time() - cpu_start < 60 * cpu_minutes


def one_core() -> None:
    """Torch as the house runs it on shared CPUs: one thread, denormals flushed."""
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def width_curves(task, boards: np.ndarray, value: np.ndarray, correct, widths, x: np.ndarray | None = None) -> dict:
    """By width N (each of `widths` up to the samples drawn), for boards (N_max, B, L_y) of B inputs
    and the value head's v_ψ(h) (N_max, B) at the same step: the share of inputs whose vote over
    the first N samples is correct, whose value-head pick (LPRM) is, and that have a correct sample
    among them at all (any@N: the bound of every selector). With the inputs x (B, L_x) of a task
    with a checker, also the checker's pick (the vote among the samples the checker accepts, which
    needs no answer; it reaches any@N where each input has one solution). `correct(boards)` maps
    (B, L_y) to a (B,) bool array."""
    from gram_ppl.inference.sampling import select

    ok = np.stack([correct(b) for b in boards])  # (N_max, B)
    checked = x is not None and task.checker
    valid = task.is_valid(np.asarray(x)[None], boards) if checked else None  # (N_max, B), checked once
    out = {
        "vote_by_width": {},
        "value_by_width": {},
        "any_by_width": {},
        **({"checker_by_width": {}} if checked else {}),
    }
    for n in (w for w in widths if w <= len(boards)):
        voted = select(task, boards[:n], np.zeros((n, boards.shape[1])), "vote")  # (B, L_y)
        out["vote_by_width"][n] = float(correct(voted).mean())
        out["value_by_width"][n] = float(correct(select(task, boards[:n], value[:n], "lprm")).mean())
        out["any_by_width"][n] = float(ok[:n].any(0).mean())
        if checked:
            out["checker_by_width"][n] = float(
                correct(select(task, boards[:n], value[:n], "checker", valid[:n])).mean()
            )
    return out
