"""SVI for GRAM in Pyro: the loss from traces of the model and guide, one training step, sampling.

The loss is built from Pyro's own machinery: the guide is traced, the model is replayed on the
guide's noise (`poutine.trace(poutine.replay(model, guide_trace))`), and the terms are read off
the two traces: −log p(y | h) from the observed sites, and for every noise site a KL between the
guide's and the model's site distributions — closed form where torch has one (Normal/Normal,
Normal/Laplace), a one-sample Monte Carlo estimate otherwise (the studentt prior),
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
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from gram_ppl import sites
from gram_ppl.config import GramConfig, PriorConfig
from gram_ppl.inference.backend import NonFiniteLoss, StepInfo
from gram_ppl.inference.objective import Recording, kl_ceiling
from gram_ppl.inference.parallel import Parallel, from_env
from gram_ppl.inference.tempering import pyro_temper
from gram_ppl.networks.torch_nets import build_net
from gram_ppl.seeds import part


class LossTerms(NamedTuple):
    loss: torch.Tensor  # scalar that is minimised: the sum of `parts`
    nll: torch.Tensor  # (B,) −log p(y | h) summed over the observed sites
    kl: torch.Tensor  # (S,) KL of each supervision step, averaged over puzzles (nats)
    h: torch.Tensor  # (B, L, D) final high-level state (attached)
    l: torch.Tensor  # (B, L, D) final low-level state (attached)
    logits: torch.Tensor  # (B, L_y, V_y) decoder logits of the last observed step
    parts: dict[str, torch.Tensor]  # the loss's named, weighted terms: nll, kl (β·KL), kl_cap


class EmbedOnce:
    """The networks with e_x = embed(x) computed once for a rollout of the same inputs `x`
    (B, L_x) (each supervision step calls the model again); everything else is the network's."""

    def __init__(self, net, x: torch.Tensor):
        self._net, self._x = net, x
        with torch.no_grad():
            self._e = net.embed(x)  # (B, L, D)

    def __getattr__(self, name):
        return getattr(self._net, name)

    def embed(self, x):
        return self._e if x is self._x else self._net.embed(x)


class SharedCore:
    """The networks as the guide sees them, recording its deterministic updates (the input
    embedding and every transition, in call order); `replay()` gives the networks as the model,
    replayed on the guide's noise, sees them: the same updates handed back in the same order
    (the core is shared, §3, so training runs f_L / f_H once, not twice). Calls beyond the
    recording are computed (the deterministic variant has no guide). Everything else is the
    wrapped network's, so the model file never knows."""

    def __init__(self, net, recording: Recording | None = None):
        self._net, self._rec = net, recording or Recording()

    def __getattr__(self, name):
        return getattr(self._net, name)

    def replay(self) -> SharedCore:
        return SharedCore(self._net, self._rec.replay())

    def embed(self, x):
        return self._rec.call("embed", self._net.embed, x)

    def transition(self, h, l, e_x):
        return self._rec.call("transition", self._net.transition, h, l, e_x)


def trajectory_loss(
    mod, net, cfg: GramConfig, priors: PriorConfig, x, y, carry, steps, truncate, cap=None
) -> LossTerms:
    """Trace the guide, replay the model on its noise, and assemble the loss terms; `cap` (B,)
    the KL ceiling C_i of each puzzle in nats (inference/objective.py), used when kl_cap_weight > 0."""
    fit = cfg.fit
    observe = "every" if fit.objective == "surrogate" else "last"
    kw = dict(cfg=cfg, priors=priors, carry=carry, steps=steps, truncate=truncate, observe=observe)
    shared = SharedCore(net)
    guide_tr = poutine.trace(mod.guide).get_trace(x, y, net=shared, **kw)
    model_tr = poutine.trace(poutine.replay(mod.model, trace=guide_tr)).get_trace(x, y, net=shared.replay(), **kw)
    nll = x.new_zeros(x.shape[0], dtype=torch.float32)
    kl = {n: x.new_zeros(x.shape[0], dtype=torch.float32) for n in steps}
    penalty = x.new_zeros((), dtype=torch.float32)
    for name, site in model_tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            nll = nll - site["fn"].log_prob(site["value"])  # (B,)
            logits = site["fn"].base_dist.logits
            continue
        q = guide_tr.nodes[name]
        k = balanced_kl(q["fn"], site["fn"], q["value"], fit.kl_balance)  # (B,)
        if fit.kl_reduction == "mean":
            k = k / q["value"][0].numel()
        if sites.step_of(site) in kl:  # transition noise: credited to its supervision step (its tag)
            kl[sites.step_of(site)] += k
        penalised = torch.clamp(k, min=fit.free_bits) if fit.free_bits else k  # free bits, per transition
        penalty = penalty + penalised.mean()
    if fit.kl_cap_weight:  # the KL ceiling: λ·relu(KL of the step − C_i) per puzzle
        if cap is None:
            raise ValueError("fit.kl_cap_weight > 0: pass cap, the ceiling of each puzzle (inference.objective)")
        over = sum(torch.relu(k - cap) for k in kl.values())  # (B,)
        penalty_cap = fit.kl_cap_weight * over.mean()
    else:
        penalty_cap = 0.0
    h, l = model_tr.nodes["_RETURN"]["value"]
    parts = {"nll": nll.mean(), "kl": fit.beta * penalty, "kl_cap": torch.as_tensor(penalty_cap)}
    kl_steps = torch.stack([v.mean() for v in kl.values()]).detach()  # (S,)
    return LossTerms(sum(parts.values()), nll, kl_steps, h, l, logits, parts)


def balanced_kl(q, p, value, alpha: float) -> torch.Tensor:
    """α·KL(sg(q) ‖ p) + (1 − α)·KL(q ‖ sg(p)) per puzzle (B,), summed over the event."""
    qd, pd = _detached(q), _detached(p)
    if isinstance(_base(q), dist.Delta):  # mean-only ablation: ½‖μ_q − μ_p‖²

        def kl(a, b):
            return 0.5 * (_base(a).v - _base(b).v).pow(2).sum((-2, -1))
    else:
        try:
            torch.distributions.kl_divergence(qd, p)
            kl = torch.distributions.kl_divergence
        except NotImplementedError:  # no closed form: one-sample Monte Carlo at the guide's draw
            v = value.detach()

            def kl(a, b):
                return a.log_prob(v if a is qd else value) - b.log_prob(v if a is qd else value)

    return alpha * kl(qd, p) + (1 - alpha) * kl(q, pd)


def _base(d):
    return d.base_dist if isinstance(d, torch.distributions.Independent) else d


def _detached(d):
    """The same distribution with its parameters cut from the graph."""
    if isinstance(d, torch.distributions.Independent):
        return dist.Independent(_detached(d.base_dist), d.reinterpreted_batch_ndims)
    return type(d)(**{k: getattr(d, k).detach() for k in d.arg_constraints})


def head_losses(net, h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor):
    """ACT halt (BCE against exact match) and LPRM value (squared error against token accuracy)
    losses; the heads read a detached h, so no gradient reaches the core. Also returns exact."""
    pred = logits.detach().argmax(-1)  # (B, L_y)
    exact = (pred == y).all(-1).float()  # (B,)
    acc = (pred == y).float().mean(-1)  # (B,)
    halt = F.binary_cross_entropy_with_logits(net.halt(h), exact)
    value = F.mse_loss(net.value(h), acc)
    return halt, value, exact


class Trainer:
    """Owns the networks, optimiser and EMA of one fit; `train_batch` is one batch of N_sup steps
    (the backend interface: inference/backend.py)."""

    def __init__(self, mod, net, cfg: GramConfig, task=None, par: Parallel | None = None):
        self.mod, self.net, self.cfg, self.priors, self.task = mod, net, cfg, cfg.priors, task
        self.par = par or Parallel()  # torchrun data parallel: this rank trains on its shard of each batch
        self.solution_cache: dict[bytes, np.ndarray] = {}  # exact solutions per input (prior_path_target="nearest")
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

    def validity(self, task, test, puzzles: int, seed: int) -> dict[str, float]:
        """Validity of one prior and one guide sample for each of the first `puzzles` held out
        (the training RNG untouched: forked)."""
        from gram_ppl.inference.evaluate import validity_report

        net = self.sampling_net()

        def draw(x, y):
            return sample(self.mod, net, self.cfg, x, y, seed=seed if y is None else part(seed, "guide"))[0]  # (B, L_y)

        def log_lik(x, y):
            return log_likelihood(self.mod, net, self.cfg, x, y, num_samples=8, seed=part(seed, "likelihood"))  # (8, B)

        return validity_report(task, test, puzzles, draw, self.cfg.fit.variant != "deterministic", log_lik)

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
            cap = torch.as_tensor(kl_ceiling(fit, num_solutions, x.shape[0]), device=x.device)  # (B,)
        if fit.objective == "elbo":
            segments = [range(fit.n_sup)]
        else:
            segments = [range(n, n + 1) for n in range(fit.n_sup)]
        carry, losses, kls, totals = None, [], [], {}
        pp = _PriorPath(self, x, y) if fit.prior_path_weight else None
        noise = ShardedNoise(self.par) if self.par.world > 1 else contextlib.nullcontext()
        for steps in segments:
            # argument validation off: faster, and a NaN then reaches the loss check below
            with pyro.validation_enabled(False), noise:
                truncate = fit.objective == "surrogate"
                terms = trajectory_loss(self.mod, self.net, self.cfg, self.priors, x, y, carry, steps, truncate, cap)
            halt, value, exact = head_losses(self.net, terms.h, terms.logits, y)
            parts = {**terms.parts, "halt": fit.halt_weight * halt, "value": fit.value_weight * value}
            if pp is not None:
                parts["prior_path"] = fit.prior_path_weight * pp.step(steps)
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


def reward_loss(trainer: Trainer, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Verifier-reward fine-tuning (FitConfig.reward_*): K prior rollouts of P inputs over all
    N_sup steps, scored by the task's exact checker; the leave-one-out REINFORCE loss on log p_θ(τ)
    (the noise log-densities along the drawn trajectory, the drawn noise held fixed), the reward
    lowered by reward_kl·(log p_θ(τ) − log p_ref(τ)). Returns the loss and the mean checker reward."""
    fit, net, mod = trainer.cfg.fit, trainer.net, trainer.mod
    P, K = min(fit.reward_puzzles, x.shape[0]), fit.reward_samples
    xs = x[:P].repeat(K, 1)  # (K*P, L_x), k-major
    kw = dict(cfg=trainer.cfg, priors=trainer.priors, steps=range(fit.n_sup), truncate=False, observe="last")
    with torch.no_grad():  # draw τ, decode, score
        drawn = poutine.trace(mod.model).get_trace(xs, None, net=net, **kw)
        boards = net.decode(drawn.nodes["_RETURN"]["value"][0]).argmax(-1).view(K, P, -1).cpu().numpy()
        log_ref = _noise_log_density(poutine.trace(poutine.replay(mod.model, trace=drawn)).get_trace(
            xs, None, net=trainer.reference, **kw))  # fmt: skip
    log_p = _noise_log_density(poutine.trace(poutine.replay(mod.model, trace=drawn)).get_trace(xs, None, net=net, **kw))
    score = torch.as_tensor(
        checker_reward(trainer.task, x[:P].cpu().numpy(), boards, fit.reward_bonus), device=x.device
    )
    total = score - fit.reward_kl * (log_p.detach() - log_ref).view(K, P)  # (K, P)
    baseline = (total.sum(0, keepdim=True) - total) / (K - 1)  # leave-one-out: the other K-1 samples' mean
    return -((total - baseline) * log_p.view(K, P)).mean(), float(score.mean())


def checker_reward(task, x: np.ndarray, boards: np.ndarray, bonus: float) -> np.ndarray:
    """(K, P) rewards of boards (K, P, L_y) for puzzles x (P, L_x): 1 if valid, plus `bonus` if
    valid and not among the same input's earlier samples (colourings compared up to colour names)."""
    valid = task.is_valid(x[None], boards)  # (K, P)
    reward = valid.astype(np.float32)
    for p in range(boards.shape[1]):
        seen = set()
        for k in range(boards.shape[0]):
            key = task.canonical(boards[k, p]).tobytes()
            if valid[k, p] and key not in seen:
                reward[k, p] += bonus
            seen.add(key)
    return reward


def _noise_log_density(tr) -> torch.Tensor:
    """Σ over the noise sites of a trace of log p(ε_t | u_t), per row (B,)."""
    noise = [s for s in tr.nodes.values() if s["type"] == "sample" and sites.is_noise(s)]
    return sum(s["fn"].log_prob(s["value"]) for s in noise)


class _PriorPath:
    """The prior-path term: K prior rollouts of P training inputs, advanced one supervision step
    at a time beside the guided batch (their own detached carry), each step scored by
    −log (1/K) Σ_k p(y | τ_k, x) through the model's own observed site."""

    MAX_SOLUTIONS = 64  # prior_path_target="nearest": at most this many exact solutions per input

    def __init__(self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor):
        fit = trainer.cfg.fit
        P, K = min(fit.prior_path_puzzles, x.shape[0]), fit.prior_path_samples
        self.trainer, self.K, self.P = trainer, K, P
        self.x, self.y = x[:P].repeat(K, 1), y[:P].repeat(K, 1)  # (K*P, L_x), (K*P, L_y): k-major
        self.carry = None
        self.targets = self._solutions(x[:P]) if fit.prior_path_target == "nearest" else None  # (P, M, L_y)

    def _solutions(self, x: torch.Tensor) -> torch.Tensor:
        """Every exact solution of each input (at most MAX_SOLUTIONS, cached per input), padded to
        a common count by repeating the first."""
        t = self.trainer
        if t.task is None:
            raise ValueError('fit.prior_path_target="nearest" needs the task (its exact solutions)')
        sols = []
        for row in x.cpu().numpy():
            key = row.tobytes()
            if key not in t.solution_cache:
                t.solution_cache[key] = t.task.solutions(row, limit=self.MAX_SOLUTIONS)  # (m, L_y)
            sols.append(t.solution_cache[key])
        M = max(len(s) for s in sols)
        padded = np.stack([np.concatenate([s, np.repeat(s[:1], M - len(s), 0)]) for s in sols])  # (P, M, L_y)
        return torch.as_tensor(padded.astype(np.int64), device=x.device)

    def _log_p(self, site) -> torch.Tensor:
        """log p(target | τ_k, x) per rollout, (K, P): the pair's y, or the most likely of the
        input's exact solutions under that rollout (the nearest in log-likelihood)."""
        if self.targets is None:
            return site["fn"].log_prob(self.y).view(self.K, self.P)
        logits = site["fn"].base_dist.logits  # (K*P, L_y, V)
        logp = logits.log_softmax(-1).view(self.K, self.P, *logits.shape[1:])  # (K, P, L_y, V)
        onehot = F.one_hot(self.targets, logits.shape[-1]).to(logp.dtype)  # (P, M, L_y, V)
        per_solution = torch.einsum("kplv,pmlv->kpm", logp, onehot)  # (K, P, M)
        return per_solution.max(-1).values  # (K, P): the best of the M solutions

    def step(self, steps: range) -> torch.Tensor:
        t = self.trainer
        kw = dict(net=t.net, cfg=t.cfg, priors=t.priors, carry=self.carry, steps=steps, truncate=True)
        with pyro.validation_enabled(False):
            tr = poutine.trace(t.mod.model).get_trace(self.x, self.y, observe="last", **kw)
        y_site = next(s for s in tr.nodes.values() if s.get("is_observed") and sites.step_of(s) == steps[-1])
        log_p = self._log_p(y_site)  # (K, P) log p(y | τ_k, x)
        h, l = tr.nodes["_RETURN"]["value"]
        self.carry = (h.detach(), l.detach())
        return -(torch.logsumexp(log_p, 0) - np.log(self.K)).mean()


def sample(mod, net, cfg: GramConfig, x, y=None, num_samples: int = 1, depth=None, seed: int = 0, temperature=1.0):
    """Decoded boards argmax f_dec(h) after `depth` supervision steps (default N_sup) for
    `num_samples` trajectories per puzzle: from the prior p_θ(τ | x), or through the guide
    q_φ(τ | x, y) when y is given. x (B, L_x) -> (num_samples, B, L_y) numpy. With x None the
    input is empty (every token 1: blank cell, empty square, no edge): unconditional samples
    from p_θ(x), (num_samples, 1, L_y). Drawn under torch's RNG forked and seeded with `seed`
    (the caller's stream is untouched). `temperature` scales the prior's σ (inference/tempering.py)."""
    depth = depth or cfg.fit.n_sup
    device = net.z0.device
    x = torch.ones(1, net.x_len, dtype=torch.long, device=device) if x is None else _tensor(x, device)  # (B, L_x)
    B = x.shape[0]
    xs = x.repeat(num_samples, 1)  # (N*B, L_x): the N trajectories of a puzzle run as one batch
    kw = dict(cfg=cfg, priors=cfg.priors, steps=range(depth), truncate=False, observe="last")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if y is None:
            with pyro_temper(temperature):
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


def prior_steps(mod, net, cfg: GramConfig, x, num_samples: int, seed: int = 0, temperature: float = 1.0):
    """Prior rollouts of x (B, L_x), one supervision step per iteration: argmax boards, halt
    logits and LPRM values of all N·B trajectories (numpy), for as long as asked. The steps draw
    from their own torch RNG stream, seeded with `seed` (the caller's is untouched)."""
    xs = _tensor(x, net.z0.device).repeat(num_samples, 1)  # (N*B, L_x)
    kw = dict(net=EmbedOnce(net, xs), cfg=cfg, priors=cfg.priors, truncate=False, observe="none")  # no y drawn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = torch.get_rng_state()
    carry, n = None, 0
    while True:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), pyro_temper(temperature):
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
