"""GRAM as a Pyro probabilistic program: the file a statistician edits.

Generative story (Baek et al., arXiv:2605.19376, §2-3), for a puzzle x and its solution y:

    e_x = f_enc(x)                                         input embedding, computed once
    z_0 = (h_0, l_0)                                       drawn once from N(0, I), saved (constant)
    for each supervision step n = 1..N_sup, transition t = 1..T:
        l <- f_L(l, h + e_x)   K times                     deterministic low-level refinement
        u_t = f_H(h, l)                                    deterministic high-level update
        ε_t ~ p_θ(ε_t | u_t) = family(μ_θ(u_t), σ_θ(u_t))  the only randomness: noise on h
        h <- u_t + ε_t
        (end of step n) y ~ Categorical(f_dec(h))          observed y: deep supervision
    guide q_φ(ε_t | u_t, y) = family(μ_φ(u_t, y), σ_φ(u_t, y)), sharing f_enc, f_L, f_H, z_0
                                                           (the prior's family: FitConfig.guide_family)

Unconditional generation p(x) (§4.3) is the same model with x an all-blank board: the
Sudoku "generate" data sets are built that way.

Glossary: K low-level updates per transition; T transitions per supervision step; N_sup
supervision steps (`FitConfig.n_sup`); h the high-level state (the only one decoded), l the
low-level state; u_t the deterministic update before noise; β the KL weight (`FitConfig.beta`).
Sites: `eps_{n}_{t}` (B, L, D) per transition ((B, P, D) with noise on P register tokens only), `y_{n}` (B, L_y) at the end of each step;
each carries its role and step in its `infer` tag (gram_ppl/sites.py), which inference reads.

Where this departs from the paper or decides what it leaves open (gram-paper-notes §13):
- How y enters q_φ: concat(u_t, embed(y)) by default (`NetConfig.posterior_input`; the paper's
  additive reading is "add"), with an optional narrow bottleneck (`posterior_bottleneck`).
- The guide may act in every transition or only in the last of each supervision step, the prior
  elsewhere (`FitConfig.guide_transitions`): with "all" and T > 1, y can reach the decoder
  through transitions whose KL the truncated surrogate never sees (our calibration runs). It may
  also act only in the first `FitConfig.guide_steps` supervision steps, so the later steps are
  prior rollouts that must reach the solution the early noise chose.
- Default recipe (docs/recipe.md, where every choice is measured): the guide acts only in
  supervision step 1 (`guide_steps=1`), β = 1 with the KL summed, and a ceiling on what the guide
  may carry: each step's KL per puzzle above ln(n_i) + 1 nats (n_i the input's number of
  solutions) pays 10 per nat (`FitConfig.kl_cap_*`, inference/objective.py). Without the ceiling
  the guide writes the answer cell by cell into the noise and prior samples are far less valid
  than guide samples; with the guide in every step (the paper's reading) y leaks the same way.
- The core mixes tokens by attention or, as TRM and the paper do for Sudoku, by an MLP across
  positions (`NetConfig.mixer`; by default the MLP for hard 9x9 Sudoku, 8-Queens cells, 10-Queens
  rows and digit generation, where it won, attention elsewhere: `task_defaults.mixer_in_force`).
- The core's attention may carry a relation bias (`NetConfig.relation_bias`; by default on for
  Sudoku and colouring's vertex tokens, `task_defaults.relation_bias_in_force`): a learned scalar per head for each
  relation between two positions (same row / column / box..., `Task.relations`), added to the
  attention logits, so the core is told which cells constrain each other
  (gram_ppl/networks/torch_nets.Attention). Where the constraints depend on the input
  (colouring's vertex tokens: which vertices are adjacent), e_x carries the input's own relation
  ids (`Task.input_relations`).
- A low-dimensional global channel (`NetConfig.noise_tokens = P`, `posterior_input="pooled"`):
  the noise falls on P prefix (register) tokens only and q_φ reads all of y through one
  projection, so what the guide can say about y is P·D numbers, not one per cell.
- The prior may couple all positions and channels through r learned directions W
  (`PriorConfig.rank`, normal family, off by default): ε_t ~ N(μ_θ, diag σ_θ² + W Wᵀ), i.e.
  ε = μ + W z + σ ξ with one z ~ N(0, I_r) per transition, in the transitions where the guide
  acts (the prior's other transitions stay diagonal). For generation from an empty input the first step's prior
  is one fixed density, and the guide's information sits along a few correlated directions that
  a diagonal σ cannot widen (benchmarks/prior_hole.py, docs/recipe.md). The KL is in closed form
  (models/lowrank_pyro.py). With `PriorConfig.components = K` that prior is a mixture of K such
  Gaussians, Σ_k π_k N(μ_θ + o_k, diag σ_θ² + W_k W_kᵀ): after training the guide's aggregate
  posterior for digits is one cluster per training digit, which one Gaussian smears; its KL has no
  closed form and takes the objective's one-sample Monte Carlo estimate.
- σ: a sigmoid on log σ between min_scale and max_scale, starting at `scale` (zero-initialised
  heads); the KL is summed over positions and channels by default (`FitConfig.kl_reduction`).
- The guide is in the prior's family (studentt with the prior's df), so changing the prior adds
  no KL floor (`FitConfig.guide_family` picks another; a Normal guide under a studentt prior
  pays ≥ 0.046 nats per dimension). The KL is in closed form for normal–normal, laplace–laplace
  and normal–laplace; studentt has none, and the loss uses a one-sample Monte Carlo estimate
  (inference/objective_pyro.py).
- Variants are config fields, never copies of this file: `deterministic` (no noise sites,
  TRM-like), `noise_only` (μ ≡ 0 in prior and guide), `mean_only` (ε = μ, a Delta: the KL
  becomes ½‖μ_φ − μ_θ‖²).
- Nothing here is inference plumbing: when SVI replays the model on the guide's noise it hands
  the model the guide's deterministic updates back (inference/svi_pyro.py, SharedCore: the core
  is shared, §3), so training runs f_L / f_H once, not twice.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from gram_ppl import sites
from gram_ppl.config import PriorConfig, guide_family
from gram_ppl.models.lowrank_pyro import LowRankNoise, MixtureNoise

# ---- PRIORS: the block in models/priors.py (both backends read it; edit it there) ----------
from gram_ppl.models.priors import PRIORS  # noqa: E402


def noise_dist(priors: PriorConfig, loc, scale, *shared, variant: str = "gram", family: str | None = None):
    """The density of one transition's noise over the (L, D) state of each puzzle, in `family`
    (default the prior's, priors.family; studentt with priors.df). With `shared`, the prior's
    parameters shared by every input (GramNet.prior): a factor W (its low-rank directions,
    priors.rank) gives N(loc, diag scale² + W Wᵀ) over the flattened L·D entries; W_k, offsets o_k
    and logits (priors.components) give Σ_k π_k N(loc + o_k, diag scale² + W_k W_kᵀ)."""
    family = family or priors.family
    if variant == "mean_only":
        return dist.Delta(loc).to_event(2)
    if len(shared) == 3:
        return MixtureNoise(loc, scale, *shared)
    if shared:
        return LowRankNoise(loc, scale, *shared)
    if family == "studentt":
        return dist.StudentT(torch.as_tensor(priors.df, dtype=loc.dtype), loc, scale).to_event(2)
    return {"normal": dist.Normal, "laplace": dist.Laplace}[family](loc, scale).to_event(2)


def model(x, y=None, *, net, cfg, priors=PRIORS, carry=None, steps=None, truncate=True, observe="every"):
    """p_θ(τ, y | x) over supervision steps `steps` (default: all N_sup), from `carry` (default z_0);
    returns (h, l). y is observed at the end of every step (deep supervision), with observe="last"
    once, with observe="none" never (prior rollouts: no y is drawn).
    """
    variant, T = cfg.fit.variant, cfg.fit.T
    steps = range(cfg.fit.n_sup) if steps is None else steps
    e_x = net.embed(x)  # e (B, L, D), relation ids
    h, l = carry if carry is not None else net.initial_state(x.shape[0])  # (B, L, D) each
    with pyro.plate("puzzles", x.shape[0]):
        for n in steps:
            for t in pyro.markov(range(T)):
                with torch.set_grad_enabled(torch.is_grad_enabled() and not (truncate and t < T - 1)):
                    u, l = net.transition(h, l, e_x)  # (B, L, D) each
                    if variant == "deterministic":
                        h = u
                    else:
                        # W (priors.rank) or a mixture (priors.components) only where the guide acts, whose aggregate it matches
                        prior = noise_dist(
                            priors, *net.prior(u)[: None if _guided(cfg.fit, n, t) else 2], variant=variant
                        )
                        eps = pyro.sample(f"eps_{n}_{t}", prior, infer=sites.noise(n, t))
                        h = net.add_noise(u, eps)  # (B, L, D): u + ε
            if observe == "every" or (observe == "last" and n == steps[-1]):
                logits = net.decode(h)  # (B, L_y, V_y)
                pyro.sample(f"y_{n}", dist.Categorical(logits=logits).to_event(1), obs=y, infer=sites.observation(n))
    return h, l


def guide(x, y, *, net, cfg, priors=PRIORS, carry=None, steps=None, truncate=True, observe="every"):
    """q_φ(τ | x, y): the model's transitions with ε_t ~ q_φ(ε_t | u_t, y) (prior where off)."""
    variant, T = cfg.fit.variant, cfg.fit.T
    steps = range(cfg.fit.n_sup) if steps is None else steps
    if variant == "deterministic":
        return
    e_x = net.embed(x)  # e (B, L, D), relation ids
    h, l = carry if carry is not None else net.initial_state(x.shape[0])  # (B, L, D) each
    with pyro.plate("puzzles", x.shape[0]):
        for n in steps:
            for t in pyro.markov(range(T)):
                with torch.set_grad_enabled(torch.is_grad_enabled() and not (truncate and t < T - 1)):
                    u, l = net.transition(h, l, e_x)  # (B, L, D) each
                    if _guided(cfg.fit, n, t):  # q_φ in the prior's family unless fit.guide_family says
                        q = noise_dist(
                            priors, *net.posterior(u, y), variant=variant, family=guide_family(cfg.fit, priors)
                        )
                    else:
                        q = noise_dist(priors, *net.prior(u)[:2], variant=variant)  # the model's prior there
                    eps = pyro.sample(f"eps_{n}_{t}", q, infer=sites.noise(n, t))
                    h = net.add_noise(u, eps)  # (B, L, D): u + ε


def _guided(fit, n, t):
    """Whether q_φ (rather than the prior) draws the noise of transition t of step n."""
    step_ok = fit.guide_steps == 0 or n < fit.guide_steps
    return step_ok and (fit.guide_transitions == "all" or t == fit.T - 1)
