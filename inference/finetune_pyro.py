"""The optional Pyro training terms beyond SVI (FitConfig): the prior-path objective (K prior rollouts
of a few training inputs, trained by a soft best-of-K) and verifier-reward fine-tuning
(leave-one-out REINFORCE on the noise log-densities, scored by the task's exact checker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyro
import torch
from pyro import poutine

from gram_ppl import sites
from gram_ppl.config import prior_path
from gram_ppl.inference.objective import cached_solutions, candidate_onehot, prior_path_targets, repair_targets

if TYPE_CHECKING:
    from gram_ppl.inference.svi_pyro import Trainer


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


class _ConstantPrior:
    """The networks with the prior's noise heads seen as constants (fit.prior_path_noise_grad
    false): the prior-path term then trains the transitions and the decoder to repair what the
    prior draws, never the prior's μ_θ, σ_θ themselves."""

    def __init__(self, net):
        self._net = net

    def __getattr__(self, name):
        return getattr(self._net, name)

    def prior(self, u):
        return tuple(t.detach() for t in self._net.prior(u))  # loc, scale: (B, L, D) each


class _PriorPath:
    """The prior-path term: K prior rollouts of P training inputs, advanced one supervision step
    at a time beside the guided batch (their own detached carry), each step scored by
    −log (1/K) Σ_k p(y | τ_k, x) through the model's own observed site."""

    def __init__(self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor):
        fit = trainer.cfg.fit
        P, K = min(fit.prior_path_puzzles, x.shape[0]), fit.prior_path_samples
        self.trainer, self.K, self.P = trainer, K, P
        self.x, self.y = x[:P].repeat(K, 1), y[:P].repeat(K, 1)  # (K*P, L_x), (K*P, L_y): k-major
        self.carry = None
        solutions = cached_solutions(trainer.task, trainer.solution_cache)
        targets, mask = prior_path_targets(
            trainer.cfg, x.cpu().numpy(), y.cpu().numpy(), solutions, trainer.target_pool
        )
        self.targets = torch.as_tensor(targets.astype(np.int64), device=x.device)  # (M, L_y) the candidates
        self.mask = torch.as_tensor(mask, device=x.device)  # (P, M): those that count for each input
        self.onehot = None  # blocks of (M, L_y * V), built at the first step (V: the decoder's vocabulary)
        self.rule = prior_path(trainer.cfg)  # weight, target rule, anchor: read once per batch
        self.anchored = self.rule.anchor  # the target chosen at the first step and kept
        self.anchor = None  # (K, P) the candidates chosen there

    def _log_p(self, site) -> torch.Tensor:
        """log p(target | τ_k, x) per rollout, (K, P): the most likely under that rollout (the
        nearest in log-likelihood) of the input's candidates (objective.prior_path_targets: the
        pair's y, the batch's targets of the same input, the input's exact solutions or the
        training split's targets), picked without a gradient, then scored with one."""
        logits = site["fn"].base_dist.logits  # (K*P, L_y, V)
        logp = logits.log_softmax(-1)  # (K*P, L_y, V)
        best = self.anchor
        if best is None and self.rule.target == "repair":  # each drawn board repaired, kept for the later steps
            boards = repair_targets(self.trainer.task, self.x.cpu().numpy(), logp.detach().cpu().numpy())
            self.targets = torch.as_tensor(boards, device=logp.device)  # (K*P, L_y)
            self.anchor = torch.arange(self.K * self.P, device=logp.device).view(self.K, self.P)
            return None
        if best is None:
            if self.onehot is None:
                self.onehot = [b.to(logp.device) for b in self._onehot(logits.shape[-1])]  # blocks (M_i, L_y * V)
            with torch.no_grad():
                flat = logp.flatten(1)  # (K*P, L_y * V)
                scores = torch.cat([flat @ b.T for b in self.onehot], -1).view(self.K, self.P, -1)  # (K, P, M)
                best = scores.masked_fill(~self.mask, float("-inf")).argmax(-1)  # (K, P)
            if self.anchored:  # kept for the later steps; the first is not scored
                self.anchor = best
                return None
        chosen = self.targets[best].view(self.K * self.P, -1, 1)  # (K*P, L_y, 1)
        return logp.gather(-1, chosen).sum((-2, -1)).view(self.K, self.P)  # (K, P)

    def _onehot(self, vocab: int) -> list[torch.Tensor]:
        """The candidates as one-hot rows, in blocks that stack to (M, L_y * V); under the "train"
        rule the P pairs' own targets, then the training split's rows from the trainer's cache
        (Trainer.pool_onehot: built once, not every batch)."""
        if self.rule.target != "train":
            return [torch.as_tensor(candidate_onehot(self.targets.cpu().numpy(), vocab))]  # (M, L_y * V)
        own = torch.as_tensor(candidate_onehot(self.targets[: self.P].cpu().numpy(), vocab))  # (P, L_y * V)
        return [own, self.trainer.pool_onehot(vocab)]  # (P, L_y * V), (N, L_y * V)

    def step(self, steps: range) -> torch.Tensor:
        t = self.trainer
        net = t.net if t.cfg.fit.prior_path_noise_grad else _ConstantPrior(t.net)
        kw = dict(net=net, cfg=t.cfg, priors=t.priors, carry=self.carry, steps=steps, truncate=True)
        with pyro.validation_enabled(False):
            tr = poutine.trace(t.mod.model).get_trace(self.x, self.y, observe="last", **kw)
        y_site = next(s for s in tr.nodes.values() if s.get("is_observed") and sites.step_of(s) == steps[-1])
        log_p = self._log_p(y_site)  # (K, P) log p(y | τ_k, x); None: the anchoring step
        h, l = tr.nodes["_RETURN"]["value"]
        self.carry = (h.detach(), l.detach())
        if log_p is None:
            return torch.zeros((), device=h.device)
        return -(torch.logsumexp(log_p, 0) - np.log(self.K)).mean()
