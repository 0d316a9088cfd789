"""The one interface both backends implement, and `get_backend(name)` to pick one (lazily, so
the NumPyro path never imports torch or Pyro and the Pyro path never imports JAX).

A backend is a module (inference/svi_pyro.py, inference/svi_numpyro.py) that provides:

- `setup(threads)`: its runtime's thread count and numerics, before training or sampling.
- `make_trainer(mod, cfg, task, par=None) -> Trainer`: fresh networks (seeded by cfg.fit.seed) and
  optimiser; `par` (inference/parallel.py) the torchrun rank layout (Pyro only; `init_parallel(par)`
  joins the process group first, `close_parallel(par)` leaves it after a run that ended normally).
- `sampling_net(cfg, task, state: bytes)`: the networks to sample from (the EMA copy when
  enabled), read from a trainer's serialised `state()` without building an optimiser.
- `weights(net) -> dict[str, np.ndarray]` and `net_from_weights(cfg, task, weights)`: a sampling
  network's weights as numpy arrays named as the torch state_dict names them
  (gram_ppl/networks/convert.py), the common currency of `gram convert`.
- `prior_steps(mod, net, cfg, x, num_samples, seed, temperature)`: prior rollouts of x (B, L_x)
  numpy, one supervision step per iteration, yielding numpy (boards (N·B, L_y), halt logits
  (N·B,), LPRM values (N·B,)); `temperature` one τ or a sequence of per-step τ
  (inference/tempering.py: per_step_temperatures).
- `log_likelihood(mod, net, cfg, x, y, num_samples=8, depth=None, seed=0)`: (K, B) numpy
  log p(y | τ_k, x) of K prior trajectories per puzzle (inference/evaluate.py: iw_bound), after
  `depth` steps, by default the model's own N_sup (so held-out bounds compare across runs).
- `sample(mod, net, cfg, x, y=None, num_samples=1, depth=None, seed=0, temperature=None)`:
  decoded boards (num_samples, B, L_y) numpy, from the prior, or through the guide when y is given,
  after `depth` steps, by default the run's sample depth (config.sample_depth).

A Trainer has `cfg`, `mod`, `train_batch(x, y, num_solutions) -> StepInfo` (numpy in),
`state() -> bytes` / `load_state(bytes)` (weights, optimiser, EMA, RNG, in the backend's own
serialisation: torch.save for Pyro, flax msgpack for NumPyro), `set_weights(weights)`
(sampling weights in, fresh optimiser), `sampling_net()` (the training loop scores it with
`inference.evaluate.held_out_validity`, through the module's `sample` and `log_likelihood`),
`apply_hyperparameters()` (after a forced resume) and `set_lr_scale(scale)` with its `lr_scale`
(the learning-rate schedule, FitConfig.lr_decay). Both raise the exceptions below.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

BACKENDS = {"pyro": "gram_ppl.inference.svi_pyro", "numpyro": "gram_ppl.inference.svi_numpyro"}


class NonFiniteLoss(FloatingPointError):
    """A NaN or infinite loss: training stops before the bad update is applied."""


class StepInfo(NamedTuple):
    """What one batch reports, built by name (`from_stats`); the history records every field."""

    loss: float  # mean loss over the N_sup optimiser steps of the batch
    ce: float  # cross-entropy (nats per puzzle) at the end of the last supervision step
    kl: list[float]  # KL of every supervision step (nats per puzzle)
    halt: float  # ACT halt-head loss
    value: float  # LPRM value-head loss
    exact: float  # share of puzzles decoded exactly right after the last step (through the guide)
    reward: float | None = None  # mean verifier reward of the fine-tuning rollouts (fit.reward_weight > 0)
    # the loss's named, weighted terms (nll, kl = β·KL, kl_cap, halt, value, prior_path...), mean over
    # the optimiser steps of the batch: a new term added to a trainer's `parts` appears here by its name
    terms: dict[str, float] = {}

    @classmethod
    def from_stats(cls, stats: dict[str, float], kl: list[float], reward: float | None = None) -> StepInfo:
        """From named statistics: loss, ce, halt, value, exact and `terms.NAME` entries."""
        terms = {k.removeprefix("terms."): v for k, v in stats.items() if k.startswith("terms.")}
        fields = {k: stats[k] for k in ("loss", "ce", "halt", "value", "exact")}
        return cls(**fields, kl=list(kl), reward=reward, terms=terms)


def get_backend(name: str):
    """The backend module for "pyro" or "numpyro", imported on first use."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    return importlib.import_module(BACKENDS[name])
