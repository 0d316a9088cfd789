"""SVI for GRAM in Pyro: the loss from traces of the model and guide, one training step, sampling.

The loss is built from Pyro's own machinery: the guide is traced, the model is replayed on the
guide's noise (`poutine.trace(poutine.replay(model, guide_trace))`), and the terms are read off
the two traces: −log p(y | h) from the observed sites, and for every noise site a KL between the
guide's and the model's site distributions — closed form where torch has one (Normal/Normal,
Laplace/Laplace, Normal/Laplace), a one-sample Monte Carlo estimate otherwise (studentt),
½‖μ_φ − μ_θ‖² for the mean-only ablation. No global parameter store is used: the networks are plain torch modules
owned by the caller, so two fits in one process never share weights.

KL balancing (DreamerV2, paper §4): α·KL(sg(q) ‖ p) + (1 − α)·KL(q ‖ sg(p)); its value is the
plain KL, α = kl_balance (0.8) of its gradient moves the prior.

Objectives (FitConfig.objective):
- "surrogate" (paper Eq. 14): N_sup supervision steps per batch, one optimiser step each; the
  carry is detached between steps and, inside a step, only the last of the T transitions
  carries gradient. Loss of step n: CE(y, f_dec(h_T)) + β·KL of that step's transitions (the
  earlier ones add their value but no gradient).
- "elbo" (Eq. 13): the whole trajectory in one graph, y observed once at the end, every KL with
  gradient, one optimiser step per batch (memory grows with N_sup · T).

The loss lives in inference/objective_pyro.py, the prior-path and reward terms in
inference/finetune_pyro.py, torch.distributed in inference/parallel_pyro.py; this module holds the
trainer, sampling and the backend interface (inference/backend.py).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools

import numpy as np
import pyro
import torch
from pyro import poutine

from gram_ppl.config import GramConfig, prior_path, sample_depth, temperature_schedule
from gram_ppl.inference.backend import NonFiniteLoss, StepInfo
from gram_ppl.inference.finetune_pyro import _PriorPath, reward_loss
from gram_ppl.inference.objective import candidate_onehot, kl_ceiling, log_count_unknown
from gram_ppl.inference.objective_pyro import (
    EmbedOnce,
    LossTerms,
    SharedCore,
    balanced_kl,
    head_losses,
    trajectory_loss,
)
from gram_ppl.inference.parallel import Parallel
from gram_ppl.inference.parallel_pyro import (
    ShardedNoise,
    _all_reduce_mean,
    _all_reduce_named,
    close_parallel,
    device,
    init_parallel,
)
from gram_ppl.inference.tempering import per_step_temperatures, pyro_temper
from gram_ppl.networks.torch_nets import build_net

__all__ = ["EmbedOnce", "LossTerms", "SharedCore", "Trainer", "balanced_kl", "close_parallel", "device", "head_losses",
           "init_parallel", "log_likelihood", "make_trainer", "prior_steps", "sample", "sampling_net", "setup",
           "trajectory_loss", "weights", "net_from_weights"]  # fmt: skip


class Trainer:
    """Owns the networks, optimiser and EMA of one fit; `train_batch` is one batch of N_sup steps
    (the backend interface: inference/backend.py)."""

    def __init__(self, mod, net, cfg: GramConfig, task=None, par: Parallel | None = None):
        self.mod, self.net, self.cfg, self.priors, self.task = mod, net, cfg, cfg.priors, task
        self.par = par or Parallel()  # torchrun data parallel: this rank trains on its shard of each batch
        self.solution_cache: dict[bytes, np.ndarray] = {}  # exact solutions per input (prior_path_target="nearest")
        self.target_pool = None  # (x, y) of the training split, set by the training loop (prior_path_target="train")
        self._pool_onehot = None  # (vocab, pool, (N, L_y * V) float32): pool_onehot's cache
        decay = [p for n, p in net.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in net.named_parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.fit.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=cfg.fit.lr, betas=(0.9, 0.95))
        self.lr_scale = 1.0  # the learning-rate schedule's factor (set_lr_scale)
        self.ema = copy.deepcopy(net).requires_grad_(False) if cfg.fit.ema else None
        # verifier-reward fine-tuning keeps the prior near a frozen reference (replaced on load_state)
        self.reference = copy.deepcopy(net).requires_grad_(False) if cfg.fit.reward_weight else None
        if cfg.fit.reward_weight and task is None:
            raise ValueError("fit.reward_weight needs the task (its exact checker scores the rollouts)")

    def pool_onehot(self, vocab: int) -> torch.Tensor:
        """The training split's targets (target_pool) as one-hot rows (N, L_y * vocab) float32,
        built once per pool and vocabulary rather than every batch (objective.candidate_onehot;
        10,000 9x9 grids: 29 MB, about 0.1 s a build)."""
        pool, cached = self.target_pool, self._pool_onehot
        if cached is None or cached[0] != vocab or cached[1] is not pool:
            cached = self._pool_onehot = (vocab, pool, torch.as_tensor(candidate_onehot(np.asarray(pool[1]), vocab)))
        return cached[2]  # (N, L_y * V)

    def sampling_net(self):
        return self.ema if self.ema is not None else self.net

    def state(self) -> bytes:
        """Weights, EMA weights, optimiser state and the torch RNG, as torch.save bytes."""
        buf = io.BytesIO()
        torch.save(
            {
                "net": self.net.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "opt": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
                **({"reference": self.reference.state_dict()} if self.reference is not None else {}),
            },
            buf,
        )
        return buf.getvalue()

    def load_state(self, data: bytes) -> None:
        s = _load(data, self.net.z0.device)
        if "net" not in s:
            raise KeyError("not a Pyro trainer state (a NumPyro run? convert it with gram convert)")
        self.net.load_state_dict(s["net"])
        if self.ema is not None:
            self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["opt"])
        torch.set_rng_state(s["torch_rng"])
        if self.reference is not None:  # fine-tuning starts here: the reference is these weights, or the stored one
            self.reference.load_state_dict(s.get("reference", s["net"]))

    def set_weights(self, weights: dict) -> None:
        """Sampling weights (numpy, torch state_dict names) into the networks and the EMA copy;
        the optimiser starts afresh."""
        state = {k: torch.as_tensor(v) for k, v in weights.items()}
        self.net.load_state_dict(state)
        if self.ema is not None:
            self.ema.load_state_dict(state)
        if self.reference is not None:
            self.reference.load_state_dict(state)

    def apply_hyperparameters(self) -> None:
        """After a forced resume with a changed config: the optimiser takes its learning rate and
        weight decay from this trainer's config, not from the restored state."""
        decay, no_decay = self.opt.param_groups
        decay["lr"] = no_decay["lr"] = self.cfg.fit.lr * self.lr_scale
        decay["weight_decay"] = self.cfg.fit.weight_decay

    def set_lr_scale(self, scale: float) -> None:
        """The next batches' learning rate is fit.lr · scale (the schedule: FitConfig.lr_scale)."""
        self.lr_scale = float(scale)
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.fit.lr * self.lr_scale

    def _update(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss is {loss.item()}; stopping before the update (last checkpoint kept)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.par.world > 1:  # every rank steps on the average of the shards' gradients
            _all_reduce_mean([p.grad for p in self.net.parameters() if p.grad is not None])
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.fit.clip)
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                    pe.lerp_(p, 1 - self.cfg.fit.ema)

    def train_batch(self, x, y, num_solutions=None) -> StepInfo:
        """One batch: x (B, L_x), y (B, L_y) integer arrays (numpy or tensors); num_solutions
        (B,) of each input, for the KL ceiling."""
        fit = self.cfg.fit
        x, y = _tensor(x, self.net.z0.device), _tensor(y, self.net.z0.device)  # (B, L_x), (B, L_y)
        cap = None
        if fit.kl_cap_weight:
            caps = kl_ceiling(fit, num_solutions, x.shape[0], log_count_unknown(self.task))  # (B,)
            cap = torch.as_tensor(caps, device=x.device)  # (B,)
        if fit.objective == "elbo":
            segments = [range(fit.n_sup)]
        else:
            segments = [range(n, n + 1) for n in range(fit.n_sup)]
        carry, losses, kls, totals = None, [], [], {}
        pp_weight = prior_path(self.cfg).weight  # resolved once per batch, not per supervision step
        pp = _PriorPath(self, x, y) if pp_weight else None
        noise = ShardedNoise(self.par) if self.par.world > 1 else contextlib.nullcontext()
        for steps in segments:
            # argument validation off: faster, and a NaN then reaches the loss check below
            with pyro.validation_enabled(False), noise:
                truncate = fit.objective == "surrogate"
                terms = trajectory_loss(self.mod, self.net, self.cfg, self.priors, x, y, carry, steps, truncate, cap)
            halt, value, exact = head_losses(self.net, terms.h, terms.logits, y)
            parts = {**terms.parts, "halt": fit.halt_weight * halt, "value": fit.value_weight * value}
            if pp is not None:
                parts["prior_path"] = pp_weight * pp.step(steps)
            loss = sum(parts.values())  # a new term is one more entry of `parts`: logged under its name
            self._update(loss)
            carry = (terms.h.detach(), terms.l.detach())
            losses.append(loss.item())
            kls.extend(terms.kl.tolist())
            for k, v in parts.items():  # summed over the segments, like the loss
                totals[k] = totals.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
        reward = None
        if fit.reward_weight:
            with pyro.validation_enabled(False):
                loss, reward = reward_loss(self, x)
            self._update(fit.reward_weight * loss)
        stats = {"loss": float(np.mean(losses)), "ce": terms.nll.mean().item(), "halt": halt.item(),
                 "value": value.item(), "exact": exact.mean().item(),
                 **{f"terms.{k}": v / len(segments) for k, v in totals.items()}}  # fmt: skip
        if self.par.world > 1:  # the whole batch's numbers, as one process would log them (by name)
            stats, kls = _all_reduce_named(stats, kls)
        return StepInfo.from_stats(stats, kls, reward)

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a budget ran out): ranks stop together."""
        return bool(self.max_over_ranks(float(flag)))

    def max_over_ranks(self, value: float) -> float:
        """The largest of the ranks' values (budget progress: every rank uses one learning rate)."""
        t = torch.tensor([float(value)], dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return float(t.item())


def sample(mod, net, cfg: GramConfig, x, y=None, num_samples: int = 1, depth=None, seed: int = 0, temperature=None):
    """Decoded boards argmax f_dec(h) after `depth` supervision steps (default N_sup) for
    `num_samples` trajectories per puzzle: from the prior p_θ(τ | x), or through the guide
    q_φ(τ | x, y) when y is given. x (B, L_x) -> (num_samples, B, L_y) numpy. With x None the
    input is empty (every token 1: blank cell, empty square, no edge): unconditional samples
    from p_θ(x), (num_samples, 1, L_y). Drawn under torch's RNG forked and seeded with `seed`
    (the caller's stream is untouched). `temperature` scales the prior's σ (inference/tempering.py;
    None: the run's, config.temperature_schedule: a schedule draws step by step, as prior_steps)."""
    depth = depth or sample_depth(cfg)
    device = net.z0.device
    x = torch.ones(1, net.x_len, dtype=torch.long, device=device) if x is None else _tensor(x, device)  # (B, L_x)
    B = x.shape[0]
    taus = temperature_schedule(cfg, depth, temperature)
    if y is None and len(set(taus)) > 1:
        steps = prior_steps(mod, net, cfg, x.cpu().numpy(), num_samples, seed, taus)
        return next(itertools.islice(steps, depth - 1, None))[0].reshape(num_samples, B, -1)
    xs = x.repeat(num_samples, 1)  # (N*B, L_x): the N trajectories of a puzzle run as one batch
    kw = dict(cfg=cfg, priors=cfg.priors, steps=range(depth), truncate=False, observe="last")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if y is None:
            with pyro_temper(taus[0]):
                h, _ = mod.model(xs, None, net=net, **{**kw, "observe": "none"})  # no y is drawn
        else:
            ys, shared = _tensor(y, device).repeat(num_samples, 1), SharedCore(net)  # (N*B, L_y)
            guide_tr = poutine.trace(mod.guide).get_trace(xs, ys, net=shared, **kw)
            h, _ = poutine.replay(mod.model, trace=guide_tr)(xs, ys, net=shared.replay(), **kw)
        return net.decode(h).argmax(-1).view(num_samples, B, -1).cpu().numpy()


def log_likelihood(mod, net, cfg: GramConfig, x, y, num_samples: int = 8, depth=None, seed: int = 0) -> np.ndarray:
    """log p(y | τ_k, x) of the reference solutions y (B, L_y) after `depth` supervision steps of
    K = num_samples prior trajectories τ_k per puzzle x (B, L_x): (K, B) numpy (torch RNG forked,
    seeded with `seed`). `inference.evaluate.iw_bound` turns it into a bound on log p(y | x)."""
    device = net.z0.device
    x, y = _tensor(x, device), _tensor(y, device)
    xs, ys = x.repeat(num_samples, 1), y.repeat(num_samples, 1)  # (K*B, L_x), (K*B, L_y)
    kw = dict(cfg=cfg, priors=cfg.priors, steps=range(depth or cfg.fit.n_sup), truncate=False, observe="none")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        h, _ = mod.model(xs, None, net=net, **kw)
        log_p = torch.distributions.Categorical(logits=net.decode(h)).log_prob(ys).sum(-1)  # (K*B,)
    return log_p.view(num_samples, x.shape[0]).cpu().numpy()


def prior_steps(mod, net, cfg: GramConfig, x, num_samples: int, seed: int = 0, temperature: float | None = None):
    """Prior rollouts of x (B, L_x), one supervision step per iteration: argmax boards, halt
    logits and LPRM values of all N·B trajectories (numpy), for as long as asked. The steps draw
    from their own torch RNG stream, seeded with `seed` (the caller's is untouched). `temperature`:
    one τ, or a sequence of per-step τ (config.temperature_schedule; its last repeats); None is
    the run's constant τ (a run with fit.sample_temperature_end needs the depth: use rollout)."""
    taus = per_step_temperatures(cfg, temperature)
    xs = _tensor(x, net.z0.device).repeat(num_samples, 1)  # (N*B, L_x)
    kw = dict(net=EmbedOnce(net, xs), cfg=cfg, priors=cfg.priors, truncate=False, observe="none")  # no y drawn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = torch.get_rng_state()
    carry, n = None, 0
    while True:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), pyro_temper(taus[min(n, len(taus) - 1)]):
            torch.set_rng_state(rng)
            carry = mod.model(xs, None, carry=carry, steps=range(n, n + 1), **kw)
            rng = torch.get_rng_state()
            h = carry[0]  # (N*B, L, D)
            out = net.decode(h).argmax(-1), net.halt(h), net.value(h)  # (N*B, L_y), (N*B,), (N*B,)
        yield tuple(t.cpu().numpy() for t in out)
        n += 1


# ---- the backend interface (inference/backend.py) ----------------------------------------


def setup(threads: int) -> None:
    """Explicit thread count (shared cores fight) and flushed denormals (deep RMSNorm recursion)."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def make_trainer(mod, cfg: GramConfig, task, par: Parallel | None = None) -> Trainer:
    """Fresh networks (torch's RNG seeded with cfg.fit.seed first, so every rank builds the same)
    on the device, and their trainer."""
    torch.manual_seed(cfg.fit.seed)
    net = build_net(cfg, task).to(device())
    if cfg.fit.compile:
        compile_core(net)
    return Trainer(mod, net, cfg, task, par)


def compile_core(net) -> None:
    """torch.compile f_L and f_H in place (`nn.Module.compile`: the state_dict keeps its names, so
    checkpoints are those of an uncompiled run); everything else, Pyro included, stays eager."""
    net.f_L.compile()
    if net.f_H is not net.f_L:
        net.f_H.compile()


def sampling_net(cfg: GramConfig, task, state: bytes):
    """The networks to sample from (EMA weights when enabled) out of a Trainer.state()."""
    s = _load(state, device())
    if "net" not in s:
        raise KeyError("not a Pyro trainer state (a NumPyro run? convert it with gram convert)")
    net = build_net(cfg, task).to(device())
    net.load_state_dict(s["ema"] if cfg.fit.ema else s["net"])
    return net.eval()


def weights(net) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def net_from_weights(cfg: GramConfig, task, w: dict):
    net = build_net(cfg, task).to(device())
    net.load_state_dict({k: torch.as_tensor(v) for k, v in w.items()})
    return net.eval()


def _load(data: bytes, map_location) -> dict:
    """torch.load of plain data only (a pickle of objects is refused, never executed)."""
    s = torch.load(io.BytesIO(data), weights_only=True, map_location=map_location)
    if not isinstance(s, dict):
        raise TypeError("not a trainer state")
    return s


def _tensor(a, device) -> torch.Tensor:
    """An integer array (numpy, list or tensor) as a long tensor on `device`."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(a).astype(np.int64), device=device)
