"""Frozen configuration dataclasses, validated on construction, serialised as plain dicts.

One file of about 450 lines by choice: the four schemas (task, network, training, priors) with
every field's meaning beside its validation. The task registry and per-task defaults live in
gram_ppl/task_defaults.py, the paper presets in gram_ppl/presets.py, `--set` in gram_ppl/overrides.py.

Standard library only: importing this module never imports numpy, torch or jax. Change a config
with `dataclasses.replace`; `to_dict` / `from_dict` round-trip through JSON.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import NamedTuple

from gram_ppl.task_defaults import (  # noqa: E402  (re-exported: the names every caller imports from here)
    ARC_TASKS,
    CLUES,
    DEFAULT_COUNTS,
    DIGITS_MODES,
    MIN_EFFORT,
    REPAIR_BY_DEFAULT,
    REPAIRABLE,
    SPLIT_RULES,
    SUDOKU_MODES,
    TARGETS,
    TASK_NAMES,
    TASK_REGISTRY,
    TASK_SIZES,
    UNCHECKED,
    cooling,
    deep_sampling,
    mixer_in_force,
    relation_bias_in_force,
)


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the allowed values."""


def _check_types(cfg) -> None:
    """Every field holds a value of its default's kind, and every number is finite: a bool is not
    an int (`batch_size=true`), a string is not a float (`beta=abc`), NaN and infinity are refused.
    Integers are accepted where floats are expected; tuples may arrive as JSON lists."""
    for f in dataclasses.fields(cfg):
        value, default = getattr(cfg, f.name), f.default
        if default is dataclasses.MISSING or default is None or value is None:
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be finite, got {value!r}")
            continue
        kind = type(default)
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, int | float) and not isinstance(value, bool),
            str: isinstance(value, str),
        }.get(kind, True)
        if not ok:
            raise ConfigError(f"{f.name} must be a {kind.__name__}, got {value!r} ({type(value).__name__})")
        if kind is float:
            if not math.isfinite(value):
                raise ConfigError(f"{f.name} must be finite, got {value!r}")
            object.__setattr__(cfg, f.name, float(value))


def _choice(name: str, value, allowed, where: str = "") -> None:
    if value not in allowed:
        raise ConfigError(f"{name} {where + ' ' if where else ''}must be one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True)
class TaskConfig:
    """Which puzzles, and how a data set of them is built (see docs/formats.md, docs/data.md).

    Fields left as None take the task- and size-dependent default given by `resolved()`.
    """

    name: str = "nqueens"  # one of TASK_NAMES
    size: int = 8  # board side (nqueens), grid side (sudoku), number of vertices (coloring), canvas side (arc)
    seed: int = 0  # data generation seed: same seed, same bytes
    # N-Queens
    removed: tuple[int, ...] | None = None  # queens removed per puzzle; None: (n-3, n-2, n-1)
    test_fraction: float = 0.15  # share of unique inputs held out (paper: 85:15)
    # hold out distinct inputs (paper) | whole orbits of inputs under the task's symmetries (N-Queens:
    # the 8 board symmetries; Sudoku: digits, lines, bands, stacks, transposition; colouring: vertex
    # relabelling), so no test input is a symmetric image of a training input. None: "orbit" for
    # Sudoku puzzles (with fit.augment's default, symmetry augmentation that cannot leak; measured
    # in docs/recipe.md), "input" (the paper's protocol) for the rest.
    split: str | None = None
    max_sources: int = 1000  # at most this many full solutions serve as sources (n >= 11)
    # Sudoku and colouring: numbers of train and test inputs. ARC: at most this many puzzles of the
    # training and of the evaluation collection, in id order (None: every puzzle that fits the canvas)
    num_train: int | None = None
    num_test: int | None = None
    mode: str | None = (
        None  # sudoku: generate | unique | multi (None: generate for 4x4, else unique); digits: generate | conditional
    )
    clues: int | None = None  # sudoku unique: stop removing at this many (0: minimal); multi: exactly this many
    min_effort: int | None = None  # sudoku unique: least solver effort (branch points) to keep
    max_solutions: int = 32  # sudoku multi: at most this many solutions per puzzle
    edge_prob: float = 0.4  # coloring: Erdős–Rényi edge probability p (not given by the paper)
    # Multi-solution inputs: "all" keeps a training pair for every solution of a training input
    # (at most max_targets, drawn at random), "one" a single pair per input. Test inputs: one.
    targets: str = "all"
    max_targets: int = 64
    # ARC: augmented versions of every puzzle besides the original (each a random dihedral map and a
    # permutation of the colours 1-9, black fixed), each with its own puzzle identifier (HRM/TRM: 1000)
    augmented_copies: int = 8

    def __post_init__(self):
        _check_types(self)
        _choice("name", self.name, TASK_NAMES)
        _choice("size", self.size, TASK_SIZES[self.name], f"for task {self.name!r}")
        if self.mode is not None:
            if self.name not in ("sudoku", "digits"):
                raise ConfigError(f"mode applies to sudoku and digits only, not {self.name!r}")
            _choice("mode", self.mode, SUDOKU_MODES if self.name == "sudoku" else DIGITS_MODES)
        if self.name in ARC_TASKS and self.split not in (None, "input"):
            raise ConfigError(f"{self.name}: split is fixed (the evaluation collection's test pairs are held out)")
        if self.name == "digits" and self.split not in (None, "input"):
            raise ConfigError("digits: split 'orbit' does not apply (images have no symmetry group here)")
        if self.removed is not None:
            object.__setattr__(self, "removed", tuple(self.removed))
            bad = [k for k in self.removed if not 1 <= k <= self.size]
            if bad or not self.removed:
                raise ConfigError(f"removed must be queen counts in 1..{self.size}, got {self.removed}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.edge_prob < 1.0:
            raise ConfigError(f"edge_prob must be in (0, 1), got {self.edge_prob}")
        for name in ("num_train", "num_test", "clues", "min_effort"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
        _choice("targets", self.targets, TARGETS)
        if self.split is not None:
            _choice("split", self.split, SPLIT_RULES)
        generate = self.name == "sudoku" and (self.mode or ("generate" if self.size == 4 else "unique")) == "generate"
        if self.split == "orbit" and generate:
            raise ConfigError("split 'orbit' needs inputs to hold out: Sudoku generation's input is the blank board")
        if self.augmented_copies < 0:
            raise ConfigError(f"augmented_copies must be >= 0, got {self.augmented_copies}")
        if self.max_sources < 1 or self.max_solutions < 2 or self.max_targets < 1:
            raise ConfigError("max_sources and max_targets must be >= 1, max_solutions >= 2")

    @property
    def generates(self) -> bool:
        """Unconditional generation (Sudoku grids, digits): every input is the blank board."""
        return self.resolved().mode == "generate"

    def resolved(self) -> TaskConfig:
        """A copy with every None replaced by its task- and size-dependent default (ARC's puzzle
        counts stay None: every puzzle of the collection that fits the canvas)."""
        s, changes = self.size, {}
        if self.name.startswith("nqueens") and self.removed is None:
            changes["removed"] = (s - 3, s - 2, s - 1)
        changes["split"] = self.split or "input"
        if self.name == "sudoku":
            mode = self.mode or ("generate" if s == 4 else "unique")
            changes["mode"] = mode
            changes["split"] = self.split or ("input" if mode == "generate" else "orbit")
            if self.clues is None and mode in CLUES:
                changes["clues"] = CLUES[mode][s]
            if self.min_effort is None:
                changes["min_effort"] = MIN_EFFORT[s] if mode == "unique" else 0
        if self.name == "digits":
            changes["mode"] = self.mode or "generate"
        if self.name in ("sudoku", "coloring", "coloring_rows", "digits"):
            key = (self.name.removesuffix("_rows"), changes.get("mode"))  # coloring_rows: coloring's graphs
            n_train, n_test = DEFAULT_COUNTS[key].get(s, (5000, 200))
            changes["num_train"] = n_train if self.num_train is None else self.num_train
            changes["num_test"] = n_test if self.num_test is None else self.num_test
        return dataclasses.replace(self, **changes)


NOISE_FAMILIES = ("normal", "studentt", "laplace")
SCALE_MODES = ("network", "learned", "fixed")
MIXERS = ("attention", "mlp")
PRECISIONS = ("float32", "bfloat16")
POSITIONS = ("1d", "2d")
POSTERIOR_INPUTS = ("concat", "add", "pooled")
PRIOR_PATH_TARGETS = ("y", "nearest", "batch", "train", "repair")
VARIANTS = ("gram", "deterministic", "noise_only", "mean_only")
OBJECTIVES = ("surrogate", "elbo")
GUIDE_TRANSITIONS = ("all", "last")
KL_REDUCTIONS = ("sum", "mean")
BACKENDS = ("pyro", "numpyro")


@dataclass(frozen=True)
class PriorConfig:
    """The priors a statistician edits: the PRIORS block of models/priors.py (both backends read it)."""

    family: str = "normal"  # transition noise ε_t: normal | studentt | laplace
    scale_mode: str = "network"  # network: σ_θ(u_t) per token (paper); learned: one scale; fixed: constant
    scale: float = 0.1  # the fixed scale, or the initial scale for learned / network
    min_scale: float = 1e-3  # lower bound on σ
    max_scale: float = 1.0  # upper bound on σ
    df: float = 4.0  # studentt degrees of freedom
    init_scale: float = 1.0  # z_0 = (h_0, l_0) ~ N(0, init_scale² I), drawn once and saved
    # low-rank directions of the noise covariance where the guide acts: ε_t ~ N(μ, diag σ² + W Wᵀ)
    # over the flattened L·D state, W (L·D, rank) learned, shared by every input; 0: diagonal
    # (paper). Normal family only.
    rank: int = 0
    # K > 1: where the guide acts, a mixture of K such Gaussians, Σ_k π_k N(μ + o_k, diag σ² + W_k W_kᵀ),
    # with offsets o_k (L·D), directions W_k (L·D, rank) and weights π = softmax(logits) learned and
    # shared by every input (models/lowrank_pyro.MixtureNoise); needs rank >= 1; 1: one Gaussian
    components: int = 1

    def __post_init__(self):
        _check_types(self)
        _choice("family", self.family, NOISE_FAMILIES)
        if self.rank < 0 or (self.rank and self.family != "normal"):
            raise ConfigError(f"rank must be >= 0, and > 0 only with family='normal'; got {self.rank}, {self.family!r}")
        if self.components < 1 or (self.components > 1 and not self.rank):
            raise ConfigError(
                f"components must be >= 1, and > 1 only with rank >= 1; got {self.components}, {self.rank}"
            )
        _choice("scale_mode", self.scale_mode, SCALE_MODES)
        if not 0 < self.min_scale <= self.scale <= self.max_scale:
            raise ConfigError(
                f"need 0 < min_scale <= scale <= max_scale, got {self.min_scale}, {self.scale}, {self.max_scale}"
            )
        if self.df <= 0 or self.init_scale <= 0:
            raise ConfigError("df and init_scale must be positive")


@dataclass(frozen=True)
class NetConfig:
    """Network sizes and structure (gram_ppl.networks). Paper preset: `NetConfig.paper()`."""

    dim: int = 64  # D, width of h, l and every token
    heads: int = 4  # attention heads (mixer="attention")
    layers: int = 2  # blocks in each of f_L and f_H
    expansion: float = 2.0  # SwiGLU hidden width = expansion * dim
    # token mixing: attention | mlp (TRM's and the paper's Sudoku choice). None: the task's default
    # (task_defaults.mixer_in_force: mlp for hard 9x9 Sudoku, 8-Queens cells, 8- and 10-Queens rows and digits, where it won,
    # docs/recipe.md; attention elsewhere, and wherever relation_bias=true asks for attention logits)
    mixer: str | None = None
    positions: str = "2d"  # learned positions: 1d (index) | 2d (row, column, diagonals; grids only)
    prefix_tokens: int = 0  # zero "puzzle embedding" tokens prepended (paper: 16)
    share_core: bool = False  # f_L and f_H share weights (TRM) or not (HRM; paper's parameter count)
    guidance_hidden: int = 0  # hidden width of the μ/σ SwiGLU heads; 0: dim
    posterior_input: str = "concat"  # how y enters q_φ: concat(u, embed(y)) | add: u + embed(y) (paper)
    # | pooled: concat(u, W·vec(embed(y))), one projection of the whole of y given to every noised token
    posterior_bottleneck: int = 0  # width y passes through on its way into q_φ; 0: dim (no bottleneck)
    # A low-dimensional global channel (docs/recipe.md): noise only on the first noise_tokens prefix
    # (register) tokens, the other positions deterministic; 0: noise on every position (paper).
    # Needs prefix_tokens >= noise_tokens and posterior_input="pooled" (y sits on the output positions).
    noise_tokens: int = 0
    # Relation bias: every attention layer adds a learned scalar per head to the attention logit of
    # each pair of positions, one per relation id of the pair (Task.relations: which constraints
    # link two positions; zero-initialised). None: the task's default (task_defaults.relation_bias_in_force: on for
    # Sudoku and colouring's vertex tokens, where it was measured to win; docs/recipe.md) with
    # attention; off with the MLP mixer, which has no logits to bias (true with it is an error).
    relation_bias: bool | None = None
    # Arithmetic of the recursive core's matrix products (f_L, f_H): float32 | bfloat16, mixed
    # precision (torch autocast, flax Dense dtype): weights, the residual stream, the norms, the
    # noise densities, the decoder and the heads stay float32; a run samples as it trained.
    # Speed depends on the hardware: torch on a CPU with avx512_bf16 trains 1.6x more batches per
    # CPU second (docs/benchmarks.md); XLA on a CPU computes bfloat16 products 1.2x slower than
    # float32 (measured), so the NumPyro path gains only on accelerators with bfloat16 units.
    precision: str = "float32"

    def __post_init__(self):
        _check_types(self)
        _choice("precision", self.precision, PRECISIONS)
        if self.relation_bias is not None and not isinstance(self.relation_bias, bool):
            raise ConfigError(f"relation_bias must be true, false or null, got {self.relation_bias!r}")
        if self.mixer is not None:
            _choice("mixer", self.mixer, MIXERS)
        if self.relation_bias and self.mixer not in ("attention", None):
            raise ConfigError(
                f"relation_bias=true needs mixer='attention': the {self.mixer} mixer has no attention logits "
                "to bias; set net.relation_bias=false, or leave it null (the task's default, off for this mixer)"
            )
        _choice("positions", self.positions, POSITIONS)
        _choice("posterior_input", self.posterior_input, POSTERIOR_INPUTS)
        if self.layers < 1:
            raise ConfigError(f"layers must be >= 1 (blocks in each of f_L and f_H), got {self.layers}")
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ConfigError(f"dim must be a positive multiple of heads, got dim={self.dim}, heads={self.heads}")
        if self.expansion <= 0:
            raise ConfigError(f"expansion must be > 0, got {self.expansion}")
        if self.prefix_tokens < 0 or self.guidance_hidden < 0 or self.posterior_bottleneck < 0:
            raise ConfigError("prefix_tokens, guidance_hidden and posterior_bottleneck must be >= 0")
        if not 0 <= self.noise_tokens <= self.prefix_tokens:
            raise ConfigError(
                f"noise_tokens must be between 0 and prefix_tokens ({self.prefix_tokens}): the noised tokens "
                f"are the prefix (register) tokens; got noise_tokens={self.noise_tokens}"
            )
        if self.noise_tokens and self.posterior_input != "pooled":
            raise ConfigError(
                'noise_tokens > 0 needs posterior_input="pooled": the register tokens carry no y of their own'
            )

    @staticmethod
    def paper() -> NetConfig:
        """The paper's network (§8): D = 512, 8 heads, 2 layers, 16 prefix tokens (~10M params)."""
        return NetConfig(dim=512, heads=8, layers=2, expansion=1.0, prefix_tokens=16, positions="1d")


@dataclass(frozen=True)
class FitConfig:
    """How to train (inference.svi_pyro). Paper preset: `FitConfig.paper(beta)`.

    The defaults are the CPU-scale recipe measured in docs/recipe.md: the guide acts only in
    the first supervision step (so the later steps are prior rollouts that must reach the
    solution its noise chose), β = 1 with the KL summed, a KL ceiling of ln(n_i) + 1 nats per
    puzzle and step at weight 10 (n_i: the input's number of solutions), lr 1e-3 falling
    linearly to 0 over the second half of the training budget, N_sup = 4, T = 1, K = 2; for
    Sudoku, symmetry augmentation under the orbit split. The ceiling needs the number of
    solutions of every training input (every built-in data set stores it); for data without
    counts set `kl_cap_per_example=False` (a constant ceiling of kl_cap nats).
    """

    variant: str = "gram"  # gram | deterministic (TRM-like) | noise_only (μ ≡ 0) | mean_only (σ → 0)
    objective: str = "surrogate"  # surrogate: truncated deep supervision (paper Eq. 14) | elbo: full (Eq. 13)
    K: int = 2  # low-level updates of l per transition
    T: int = 1  # transitions per supervision step
    n_sup: int = 4  # supervision steps N_sup (paper: 16)
    # supervision steps a sample takes unless asked (--depth): None is N_sup, or for generation
    # trained with the prior-path term, whose later steps repair, 16·N_sup with the "repair" target
    # and 4·N_sup with another (8·N_sup un-anchored), or 16·N_sup for Sudoku puzzles with one
    # solution and N-Queens rows with the MLP mixer, whose later steps keep refining, 2·N_sup for
    # N-Queens cells with it (config.sample_depth, task_defaults.DEEP_SAMPLING)
    sample_depth: int | None = None
    # temperature τ of prior samples unless asked (--temperature; scales the prior's σ, training
    # never uses it): None is 1, or 1.5 for generation trained with the un-anchored prior path,
    # which sharpens the prior onto fewer grids (config.sample_temperature); fit.keep_best's
    # evaluations sample at it too
    sample_temperature: float | None = None
    # τ at a sample's last supervision step: a number makes τ move linearly from the start
    # (sample_temperature) at the first step to it at the last, e.g. 3 -> 0: the early steps
    # explore, the late ones settle (config.temperature_schedule; --temperature START:END); None is
    # the start (one τ), or where sample_temperature is None too the task's schedule: 3 -> 0 for
    # hard 9x9 Sudoku with the MLP mixer (config.sample_temperature_end, task_defaults.COOLING)
    sample_temperature_end: float | None = None
    beta: float = 1.0  # weight of the KL
    kl_balance: float = 0.8  # share of the KL gradient that moves the prior (0.5: plain KL)
    kl_reduction: str = "sum"  # sum the KL over positions and channels, or average it
    guide_transitions: str = "all"  # where q_φ replaces the prior: all transitions | last of each step
    guide_steps: int = 1  # q_φ acts only in the first this-many supervision steps (prior after); 0: all (paper)
    # The family of q_φ(ε_t | u_t, y): None = the prior's (priors.family, with its df), so editing
    # the prior family adds no KL floor (a Normal guide under a studentt prior pays ≥ 0.046 nats per
    # dimension at equal scale whatever it learns); "normal" etc. pick one (`gram fit` warns when the
    # floor this leaves at initialisation exceeds the KL ceiling; inference.objective.kl_floor).
    guide_family: str | None = None
    free_bits: float = 0.0  # nats per puzzle below which the KL of a transition is not penalised
    # KL ceiling (inference/objective.py): λ·relu(KL_step − C_i) per puzzle and supervision step, on
    # top of β·KL: a cap on what the posterior may carry about y. λ = kl_cap_weight (0: off); C_i =
    # kl_cap nats, or ln(n_i) + kl_cap with kl_cap_per_example (n_i: solutions of training input i).
    # kl_cap_spread: ln(n_i) shared out over the S supervision steps the guide acts in (guide_steps,
    # or N_sup where it is 0): C_i = ln(n_i) / S + kl_cap, so no one step may carry the whole answer
    # and the prior learns it as S smaller conditional choices, a step at a time.
    kl_cap_weight: float = 10.0
    kl_cap: float = 1.0
    kl_cap_per_example: bool = True
    kl_cap_spread: bool = False
    # Prior-path objective (both backends; inference/svi_pyro.py): at every supervision step,
    # prior_path_samples rollouts from the prior p(τ | x) of the batch's first prior_path_puzzles
    # inputs, trained by −log (1/K) Σ_k p(y | τ_k, x) (the importance-weighted bound with the prior
    # as proposal: a soft best-of-K) at weight prior_path_weight (0: off). It trains the sampler
    # used at test time directly, so nothing can leak through it.
    # prior_path_target "nearest" scores each rollout against the input's exact solution that is
    # most likely under that rollout (the nearest in log-likelihood) instead of the training pair's
    # y: no rollout is pulled away from a valid solution just because the pair holds another.
    # "batch" scores it against the nearest of the batch's targets for the same input: for
    # generation (every input blank, solution sets too large to list) the nearest training grid of
    # the batch, so prior samples learn to be repaired into some valid grid, not a given one.
    # "train" scores it against the nearest target of the whole training split for the same input
    # (generation: every training grid; a rollout already on a training grid is left where it is).
    # "repair" (tasks with Task.repair: Sudoku) is always anchored: at the first supervision step
    # each rollout's board is repaired into a valid one by the task's solver (its most confident
    # consistent cells kept, the rest completed in the decoder's order of preference), and the
    # later steps are trained to reach it: a near valid board, not a far training grid.
    # prior_path_weight None: 1 for Sudoku generation trained by the surrogate objective with a
    # stochastic variant (measured on 4x4 grids: 88-97% valid against 35% without it after 15 CPU
    # minutes, two seeds, docs/recipe.md), 0 (off) elsewhere; prior_path_target None: "repair" for
    # generation of 6x6 and 9x9 Sudoku grids (REPAIR_BY_DEFAULT, since 2026-12-06), "train" for
    # other generation, "y" elsewhere (`prior_path(cfg)` resolves them).
    prior_path_weight: float | None = None
    prior_path_samples: int = 4
    prior_path_puzzles: int = 16
    prior_path_target: str | None = None
    # false: the term's gradient stops at the prior's noise heads μ_θ, σ_θ (only the transitions
    # and the decoder learn to repair what the prior draws; the prior stays what the KL makes it)
    prior_path_noise_grad: bool = True
    # true: each rollout's target is chosen once, at the first supervision step, from the board
    # that step drew (the nearest candidate), and kept; the later steps are trained to repair the
    # drawn board into that target and the first step is not scored. A rollout cannot move to
    # whichever grid is easiest, so the term stops rewarding a prior that draws few boards.
    # None: true for generation, false elsewhere (`prior_path(cfg)`).
    prior_path_anchor: bool | None = None
    # Verifier-reward fine-tuning (inference/svi_pyro.py, Pyro backend), meant for after SVI
    # (`gram fit --resume --force --set fit.reward_weight=1`): once per batch, reward_samples
    # prior rollouts of each of the batch's first reward_puzzles inputs, scored by the task's
    # exact checker (1 if valid, + reward_bonus if valid and not already among that input's
    # earlier samples), trained by leave-one-out REINFORCE on the noise log-densities, minus
    # reward_kl·(log p_θ(τ) − log p_ref(τ)) to keep the prior near the network it started from
    # (the reference, frozen when training resumes, kept in the checkpoint). 0: off.
    reward_weight: float = 0.0
    reward_samples: int = 4
    reward_puzzles: int = 16
    reward_bonus: float = 0.5
    reward_kl: float = 0.01
    batch_size: int = 64
    # A random task symmetry applied to every training batch. None: on where the held-out inputs are
    # whole orbits (task.split "orbit", the default for Sudoku), so no test input's orbit is ever
    # trained on; off under the "input" split, where augmentation would train on test inputs'
    # symmetric images (docs/data.md). True under the "input" split is allowed but leaks.
    augment: bool | None = None
    lr: float = 1e-3  # paper: 1e-4 at batch 768
    # The last lr_decay share of the training budget (batches, minutes or CPU minutes, whichever
    # ends the run) lowers the learning rate linearly to 0 (a warmup-stable-decay schedule without
    # warmup; `lr_scale`); 0: constant. A resumed run with a longer budget rescales its progress
    # (the learning rate rises again). Configs written before the field existed read as 0.
    lr_decay: float = 0.5
    weight_decay: float = 0.1
    clip: float = 1.0  # gradient-norm clipping
    ema: float = 0.0  # EMA decay of the weights used for sampling; 0: off
    # Sample from the weights of the evaluation with the most distinct valid prior boards (checkpoint
    # selection, kept in the checkpoint beside the latest weights, which training resumes from).
    # Unconditional generation only: there the score counts boards drawn from the blank input, which
    # no held-out data enters; on inputs it would select on the test puzzles, and without a checker
    # (digits) every image counts as valid. None: on for Sudoku generation (`keeps_best`); configs
    # written before the field existed read as false.
    keep_best: bool | None = None
    halt_weight: float = 0.1  # ACT halt-head loss weight (its gradient never reaches the core)
    value_weight: float = 0.1  # LPRM value-head loss weight (likewise)
    threads: int = 1  # torch intra-op threads
    # torch.compile the recursive core f_L / f_H (Pyro backend; Pyro's traces see ordinary tensors).
    # The first batches compile (about a minute on a CPU core); NumPyro is always compiled by XLA.
    compile: bool = False
    seed: int = 0

    def __post_init__(self):
        _check_types(self)
        _choice("variant", self.variant, VARIANTS)
        _choice("objective", self.objective, OBJECTIVES)
        _choice("guide_transitions", self.guide_transitions, GUIDE_TRANSITIONS)
        if self.guide_family is not None:
            _choice("guide_family", self.guide_family, NOISE_FAMILIES)
        _choice("kl_reduction", self.kl_reduction, KL_REDUCTIONS)
        if self.prior_path_target is not None:
            _choice("prior_path_target", self.prior_path_target, PRIOR_PATH_TARGETS)
        if self.sample_depth is not None and (
            isinstance(self.sample_depth, bool) or not isinstance(self.sample_depth, int) or self.sample_depth < 1
        ):
            raise ConfigError(f"sample_depth must be an integer >= 1 or null, got {self.sample_depth!r}")
        for name in ("sample_temperature", "sample_temperature_end"):
            tau = getattr(self, name)
            if tau is not None and (
                isinstance(tau, bool) or not (isinstance(tau, int | float) and math.isfinite(tau) and tau >= 0)
            ):
                raise ConfigError(f"{name} must be a finite number >= 0 or null, got {tau!r}")
        for name in ("K", "T", "n_sup", "batch_size", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.guide_steps < 0:
            raise ConfigError(f"guide_steps must be >= 0, got {self.guide_steps}")
        if not isinstance(self.kl_cap_spread, bool):
            raise ConfigError(f"kl_cap_spread must be true or false, got {self.kl_cap_spread!r}")
        if self.beta < 0 or self.lr <= 0 or self.clip <= 0 or self.free_bits < 0:
            raise ConfigError("beta and free_bits must be >= 0; lr and clip > 0")
        if not all(math.isfinite(v) and v >= 0 for v in (self.kl_cap_weight, self.kl_cap)) or not isinstance(
            self.kl_cap_per_example, bool
        ):
            raise ConfigError(
                f"kl_cap_weight and kl_cap must be finite and >= 0, kl_cap_per_example true or false; "
                f"got {self.kl_cap_weight!r}, {self.kl_cap!r}, {self.kl_cap_per_example!r}"
            )
        weight = self.prior_path_weight
        if weight is not None and (
            isinstance(weight, bool) or not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0)
        ):
            raise ConfigError(f"prior_path_weight must be a number >= 0 or null, got {weight!r}")
        if not isinstance(self.prior_path_noise_grad, bool):
            raise ConfigError(f"prior_path_noise_grad must be true or false, got {self.prior_path_noise_grad!r}")
        if self.prior_path_anchor is not None and not isinstance(self.prior_path_anchor, bool):
            raise ConfigError(f"prior_path_anchor must be true, false or null, got {self.prior_path_anchor!r}")
        if self.prior_path_samples < 1 or self.prior_path_puzzles < 1:
            raise ConfigError("prior_path_samples and prior_path_puzzles must be >= 1")
        if self.prior_path_weight and (self.variant == "deterministic" or self.objective != "surrogate"):  # asked for
            raise ConfigError("prior_path_weight needs the surrogate objective and a stochastic variant")
        if self.reward_weight < 0 or self.reward_bonus < 0 or self.reward_kl < 0:
            raise ConfigError("reward_weight, reward_bonus and reward_kl must be >= 0")
        if self.reward_samples < 2 or self.reward_puzzles < 1:
            raise ConfigError("reward_samples must be >= 2 (a leave-one-out baseline) and reward_puzzles >= 1")
        if self.reward_weight and self.variant == "deterministic":
            raise ConfigError("reward_weight needs a stochastic variant (there is no noise to reinforce)")
        if not 0 <= self.kl_balance <= 1 or not 0 <= self.ema < 1:
            raise ConfigError("kl_balance must be in [0, 1] and ema in [0, 1)")
        if not 0 <= self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in [0, 1] (a share of the budget), got {self.lr_decay!r}")

    def lr_scale(self, progress: float) -> float:
        """The learning rate's factor at `progress` (share of the training budget used, 0 to 1):
        1 until the last lr_decay of the budget, then falling linearly to 0 at its end."""
        if not self.lr_decay or progress <= 1 - self.lr_decay:
            return 1.0
        return max(0.0, (1.0 - progress) / self.lr_decay)

    @staticmethod
    def paper(beta: float) -> FitConfig:
        """The paper's training recipe (§4, §8) with the task's β (Table B.2); no KL ceiling."""
        return FitConfig(
            K=4, T=3, n_sup=16, beta=beta, guide_steps=0, batch_size=768, lr=1e-4, weight_decay=1.0, ema=0.9999,
            kl_cap_weight=0.0, lr_decay=0.0,
        )  # fmt: skip


@dataclass(frozen=True)
class GramConfig:
    """Everything a run needs; serialised to config.json in the run folder and rebuilt from it."""

    task: TaskConfig = field(default_factory=TaskConfig)
    net: NetConfig = field(default_factory=NetConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    priors: PriorConfig | None = None  # None: the PRIORS block of the model file
    backend: str = "pyro"

    def __post_init__(self):
        _check_types(self)
        _choice("backend", self.backend, BACKENDS)
        if self.backend == "numpyro" and self.fit.reward_weight:
            raise ConfigError("fit.reward_weight is implemented for the pyro backend only")
        if self.backend == "numpyro" and (self.net.noise_tokens or self.net.posterior_input == "pooled"):
            raise ConfigError("net.noise_tokens and posterior_input='pooled' are implemented for the pyro backend only")
        rule = prior_path(self)  # the rule in force, asked for or by default
        if rule.target == "repair" and self.task.name not in REPAIRABLE:
            raise ConfigError(
                f"fit.prior_path_target='repair' needs a task whose solver repairs a board ({', '.join(REPAIRABLE)}), "
                f"not {self.task.name}"
            )
        if rule.target == "repair" and not rule.anchor:
            raise ConfigError(
                "fit.prior_path_target='repair' is anchored (the board the first step drew is repaired); "
                "to train un-anchored, name another target, e.g. fit.prior_path_target='train'"
            )
        if self.fit.keep_best and (not self.task.generates or self.task.name in UNCHECKED):
            raise ConfigError(
                "fit.keep_best selects on the distinct valid boards of the evaluation's prior draws: for a task "
                "with inputs those are the test puzzles (a leak), and without a checker (digits) every image "
                "counts as valid; it is for unconditional generation with a checker (Sudoku grids)"
            )


def gram_config_from_dict(data: dict) -> GramConfig:
    """Rebuild a GramConfig from `to_dict` output (nested dicts); unknown keys are errors."""
    parts = {"task": TaskConfig, "net": NetConfig, "fit": FitConfig, "priors": PriorConfig}
    kwargs = {k: (from_dict(parts[k], v) if k in parts and v is not None else v) for k, v in data.items()}
    return from_dict(GramConfig, kwargs)


def to_dict(cfg) -> dict:
    """A config dataclass -> plain JSON-serialisable dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def config_differences(a: GramConfig, b: GramConfig, ignore=("fit.seed", "fit.threads")) -> list[str]:
    """The dotted fields (`fit.beta`, `priors.family`) in which two configs differ, except the
    `ignore`d ones (by default the training seed and the thread count: fits of the same model).
    Compared as runs store them (`resolved`): a field left to its default equals its value."""

    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    fa, fb = flat(to_dict(resolved(a))), flat(to_dict(resolved(b)))
    return sorted(k for k in fa.keys() | fb.keys() if k not in ignore and fa.get(k) != fb.get(k))


# Fields added after runs were first written, with the value that reproduces those runs (a
# missing field otherwise takes today's default, which may train differently on --resume).
_BEFORE = {
    "FitConfig": {
        "lr_decay": 0.0,
        "guide_family": "normal",
        "prior_path_weight": 0.0,
        "prior_path_target": "y",
        "prior_path_anchor": False,
        "sample_depth": None,
        "sample_temperature": 1.0,
        "keep_best": False,
    },
    "NetConfig": {"relation_bias": False},
}


def from_dict(cls, data: dict):
    """Rebuild a config dataclass from `to_dict` output; unknown keys are an error; a field
    the dict predates takes its value from before it existed (_BEFORE) or its default."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names) if isinstance(data, dict) else None
    if unknown is None or unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return cls(**{**_BEFORE.get(cls.__name__, {}), **data})


__all__ = [
    "ConfigError",
    "FitConfig",
    "with_priors",
    "resolved",
    "unresolved",
    "RULE_FIELDS",
    "relation_bias",
    "mixer",
    "net_in_force",
    "rules_from",
    "augments",
    "keeps_best",
    "sample_temperature",
    "sample_temperature_end",
    "temperature_schedule",
    "describe_temperature",
    "temperature_record",
    "config_differences",
    "describe_priors",
    "guide_family",
    "GramConfig",
    "NetConfig",
    "PriorConfig",
    "TaskConfig",
    "ARC_TASKS",
    "TASK_NAMES",
    "TASK_REGISTRY",
    "TASK_SIZES",
    "UNCHECKED",
    "REPAIRABLE",
    "SUDOKU_MODES",
    "DIGITS_MODES",
    "from_dict",
    "gram_config_from_dict",
    "to_dict",
]


def describe_priors(p: PriorConfig) -> str:
    """A PRIORS block in words: family (with df), σ's form and range, low-rank directions, z_0."""
    df = f", df {p.df}" if p.family == "studentt" else ""
    rank = f", + W Wᵀ of rank {p.rank}" if p.rank else ""
    if p.components > 1:
        rank = f", a mixture of {p.components} (μ + o_k, diag σ² + W_k W_kᵀ of rank {p.rank})"
    return (f"{p.family}{df}, σ {p.scale_mode} (scale {p.scale}, in [{p.min_scale}, {p.max_scale}]){rank}, "
            f"z_0 ~ N(0, {p.init_scale}²)")  # fmt: skip


def guide_family(fit: FitConfig, priors: PriorConfig) -> str:
    """The family of q_φ: fit.guide_family, or where it is None the prior's (priors.family)."""
    return priors.family if fit.guide_family is None else fit.guide_family


class PriorPathRule(NamedTuple):
    """The prior-path term in force (`prior_path`)."""

    weight: float  # 0: off
    target: str  # one of PRIOR_PATH_TARGETS
    anchor: bool  # the target chosen at the first supervision step and kept


def prior_path(cfg: GramConfig) -> PriorPathRule:
    """The prior-path term in force. fit.prior_path_weight, or where None: 1 for Sudoku
    generation trained by the surrogate objective with a stochastic variant, 0 elsewhere;
    fit.prior_path_target, or where None: for unconditional generation "repair" for the sizes of
    REPAIR_BY_DEFAULT (6x6 and 9x9 Sudoku grids: each prior rollout is trained toward a valid grid
    near what its first step drew; 6x6, two seeds: 43.8 / 48.8% valid at 15 CPU minutes against
    51.0 / 23.6% for "train", latest weights 43.8 / 42.1% against 35.5 / 15.1%, 51.7 / 59.9% at
    30, 96.2 / 97.1% at 30 sampled at 16·N_sup (sample_depth); docs/recipe.md), else "train" (the nearest training grid: 4x4, where "repair" gave 98.3 /
    86.7% against 97.3 / 98.4%), and "y" elsewhere;
    fit.prior_path_anchor, or where None: on for generation and with "repair". Measured on 4x4 grids
    (docs/recipe.md): without the anchor a 600-batch run collapses onto a few grids (38% valid and
    30 grids at 4·N_sup, latest weights) and a 15-CPU-minute run gives 99.7 / 99.8% valid at
    8·N_sup (two seeds); with it the 600-batch run gives 98.5% and 268 grids, the 15-minute runs 88
    / 97% and 285 / 283 grids at 4·N_sup. Sampling the kept weights (fit.keep_best, which scores
    distinct valid boards and so never keeps a collapsed prior) at τ = 1.5 (sample_temperature)
    gives the un-anchored rule 96.4 / 99.98% valid, all 288 grids, in 15 CPU minutes (two seeds);
    the anchored rule's kept weights, chosen by evaluations of 128 draws, 99.8 / 100.0% and all 288
    (docs/recipe.md): the anchor stays the default. Without the term: 35%. Digits collapsed onto one
    image with the term, so they keep it off."""
    fit, generates = cfg.fit, cfg.task.generates
    on = cfg.task.name == "sudoku" and generates and fit.variant != "deterministic" and fit.objective == "surrogate"
    weight = fit.prior_path_weight if fit.prior_path_weight is not None else (1.0 if on else 0.0)
    repairs = cfg.task.size in REPAIR_BY_DEFAULT.get(cfg.task.name, ())
    target = fit.prior_path_target or (("repair" if repairs else "train") if generates else "y")
    anchor = fit.prior_path_anchor if fit.prior_path_anchor is not None else (generates or target == "repair")
    return PriorPathRule(float(weight), target, anchor)


def sample_depth(cfg: GramConfig) -> int:
    """Supervision steps a sample takes when none is asked for: fit.sample_depth, or where None
    N_sup, except for generation trained with the prior-path term, whose later steps learn to
    repair a drawn board: 16·N_sup with the "repair" target, whose later steps are trained toward
    a valid grid near the drawn one and keep repairing (6x6 grids, 30 CPU minutes, two seeds: 51.7
    / 59.9% valid at 4·N_sup, 77.9 / 92.1% at 8·N_sup, 78.2 / 98.1% at 16·N_sup; runs whose kept
    evaluations sample there too: 96.2 / 97.1%, every valid one distinct; on 4x4 grids the
    deep repair narrows the grids drawn, so 4x4 keeps the nearest training grid), 4·N_sup with another
    anchored target (the nearest training grid; 4x4 grids, 15 CPU minutes, two seeds: 88 / 97%
    valid at 4·N_sup, 85 / 93% at 8·N_sup), 8·N_sup without the anchor (97 / 99%
    at 4·N_sup, 99.7 / 99.8% at 8·N_sup; docs/recipe.md), and for Sudoku puzzles with one solution,
    where every further step refines the board: 16·N_sup (hard 9x9, 60 CPU minutes, one sample: 3.5%
    exact at N_sup, 21% at 2·N_sup, 54% at 16·N_sup, 59% at 32·N_sup; 6x6: 99.2 / 99.4% at N_sup,
    99.5 / 99.5% at every depth from 5 to 64, two seeds; docs/recipe.md), 16·N_sup for N-Queens rows
    with the MLP mixer and 2·N_sup for N-Queens cells with it (task_defaults.deep_sampling: the
    measurements are beside DEEP_SAMPLING)."""
    if cfg.fit.sample_depth is not None:
        return cfg.fit.sample_depth
    deep = deep_sampling(cfg.task.name, cfg.task.resolved().mode, mixer(cfg))
    if deep:
        return deep * cfg.fit.n_sup
    rule = prior_path(cfg)
    if not (cfg.task.generates and rule.weight):
        return cfg.fit.n_sup
    if rule.target == "repair":
        return 16 * cfg.fit.n_sup
    return (4 if rule.anchor else 8) * cfg.fit.n_sup


def sample_temperature(cfg: GramConfig, asked: float | None = None) -> float:
    """The temperature τ of prior samples: `asked` where given (a sampler's --temperature), else
    the run's (inference/tempering.py: τ scales the prior's σ): fit.sample_temperature, or where None 1.5 for generation trained with the
    un-anchored prior path, whose prior concentrates on fewer grids than it draws validly (4x4
    grids, 15 CPU minutes, two seeds, weights kept by evaluations at τ = 1, sampled at 8·N_sup:
    99.96 / 99.74% valid and 283 / 282 of the 288 grids at τ = 1, 99.94 / 99.76% and 287 / 285 at
    1.25, 100.0 / 99.82% and all 288 at 1.5; kept by evaluations at τ = 1.5 too: 96.4 / 99.98%,
    all 288; docs/recipe.md), the start of the task's schedule where it has one (task_defaults.COOLING:
    3 for hard 9x9 Sudoku with the MLP mixer, cooling to 0, sample_temperature_end), and 1 elsewhere
    (the model itself)."""
    if asked is not None:
        return asked
    if cfg.fit.sample_temperature is not None:
        return float(cfg.fit.sample_temperature)
    schedule = _cooling(cfg)
    if schedule:
        return schedule[0]
    rule = prior_path(cfg)
    return 1.5 if cfg.task.generates and rule.weight and not rule.anchor else 1.0


def _cooling(cfg: GramConfig) -> tuple[float, float] | None:
    task = cfg.task.resolved()
    return cooling(task.name, task.mode, task.size, mixer(cfg))


def sample_temperature_end(cfg: GramConfig) -> float:
    """τ at a sample's last supervision step: fit.sample_temperature_end, or where None the task's
    schedule (task_defaults.COOLING: hard 9x9 Sudoku with the MLP mixer cools from 3 to 0) when
    fit.sample_temperature is left to its rule too, else the start (sample_temperature): one τ."""
    if cfg.fit.sample_temperature_end is not None:
        return float(cfg.fit.sample_temperature_end)
    schedule = _cooling(cfg) if cfg.fit.sample_temperature is None else None
    return schedule[1] if schedule else sample_temperature(cfg)


def temperature_schedule(cfg: GramConfig, depth: int, asked=None) -> tuple[float, ...]:
    """The τ of each of a sample's `depth` supervision steps. `asked` (a sampler's --temperature)
    is None (the run's: sample_temperature at the first step, moving linearly to
    fit.sample_temperature_end at the last where that is set, else constant), a number (that τ at
    every step) or a pair (start, end): τ_n = start + (end - start)·n/(depth - 1), n = 0..depth-1.
    Every τ is checked where it is applied (inference/tempering.py)."""
    if asked is None:
        start, end = sample_temperature(cfg), sample_temperature_end(cfg)
    elif isinstance(asked, tuple | list):
        if len(asked) != 2:
            raise ValueError(f"a temperature schedule is a pair (start, end), got {asked!r}")
        start, end = asked
    else:
        start, end = asked, None
    if end is None or end == start or depth == 1:
        return (start,) * depth
    return tuple(start + (end - start) * n / (depth - 1) for n in range(depth))


def temperature_record(cfg: GramConfig, asked=None) -> dict:
    """τ as a sampler's JSON records it: {"temperature": start}, plus "temperature_end" for a
    schedule (temperature_schedule's ends)."""
    start, end = temperature_schedule(cfg, 2, asked)
    return {"temperature": start} if end == start else {"temperature": start, "temperature_end": end}


def describe_temperature(cfg: GramConfig, asked=None) -> str:
    """τ as a sampler states it: "1", or "3 -> 0" for a schedule (temperature_record)."""
    ends = [f"{float(t):g}" for t in temperature_record(cfg, asked).values()]
    return " -> ".join(ends)


def keeps_best(cfg: GramConfig) -> bool:
    """Whether the run samples from its best evaluation's weights: fit.keep_best, or where it is
    None, exactly where it is allowed: unconditional generation with a checker (Sudoku grids)."""
    if cfg.fit.keep_best is not None:
        return cfg.fit.keep_best
    return cfg.task.generates and cfg.task.name not in UNCHECKED


def augments(cfg: GramConfig) -> bool:
    """Whether training batches are augmented by the task's symmetries: fit.augment, or where it
    is None, exactly when the test inputs are held out by orbit (TaskConfig.split)."""
    return cfg.task.resolved().split == "orbit" if cfg.fit.augment is None else cfg.fit.augment


# The fields whose None means "the rule for this task" (the functions above), as (part, field).
RULE_FIELDS = (
    ("fit", "prior_path_weight"), ("fit", "prior_path_target"), ("fit", "prior_path_anchor"), ("fit", "sample_depth"),
    ("fit", "sample_temperature"), ("fit", "sample_temperature_end"), ("fit", "keep_best"), ("fit", "augment"),
    ("net", "mixer"), ("net", "relation_bias"),
)  # fmt: skip


def mixer(cfg: GramConfig) -> str:
    """The run's token mixer (task_defaults.mixer_in_force: net.mixer, or where it is None the
    task's default for its resolved mode and size, attention wherever the relation bias is asked for)."""
    task = cfg.task.resolved()
    return mixer_in_force(task.name, task.mode, task.size, cfg.net.mixer, cfg.net.relation_bias)


def relation_bias(cfg: GramConfig) -> bool:
    """Whether the run's core gets the relation bias (task_defaults.relation_bias_in_force: the
    config's field, or where it is None the task's default, and only with attention)."""
    return relation_bias_in_force(cfg.task.name, cfg.net.relation_bias, mixer(cfg))


def net_in_force(cfg: GramConfig) -> NetConfig:
    """cfg.net with its rules written out (the mixer and the relation bias): what both backends'
    build_net build and config.json records."""
    return dataclasses.replace(cfg.net, mixer=mixer(cfg), relation_bias=relation_bias(cfg))


def resolved(cfg: GramConfig) -> GramConfig:
    """`cfg` as a run stores it: the task's size and mode defaults filled in (TaskConfig.resolved)
    and every rule left to None (RULE_FIELDS) written out as the value in force (prior_path,
    sample_depth, sample_temperature, keeps_best, augments, mixer, relation_bias), so that config.json
    says how the run was built, trained and is sampled, and a later change of a default leaves the
    run as it was."""
    rule = prior_path(cfg)
    fit = dataclasses.replace(
        cfg.fit, prior_path_weight=rule.weight, prior_path_target=rule.target, prior_path_anchor=rule.anchor,
        sample_depth=sample_depth(cfg), sample_temperature=sample_temperature(cfg),
        sample_temperature_end=sample_temperature_end(cfg), keep_best=keeps_best(cfg),
        augment=augments(cfg),
    )  # fmt: skip
    return dataclasses.replace(cfg, task=cfg.task.resolved(), net=net_in_force(cfg), fit=fit)


def _with(cfg: GramConfig, part: str, **fields) -> GramConfig:
    return dataclasses.replace(cfg, **{part: dataclasses.replace(getattr(cfg, part), **fields)})


def rules_from(asked: GramConfig, source: GramConfig) -> GramConfig:
    """`asked` with each rule it leaves to None (RULE_FIELDS) taken from `source`."""
    for part, name in RULE_FIELDS:
        if getattr(getattr(asked, part), name) is None:
            asked = _with(asked, part, **{name: getattr(getattr(source, part), name)})
    return asked


def unresolved(cfg: GramConfig) -> GramConfig:
    """A stored (resolved) config with each rule that today's default gives anyway set back to
    None, and those a default no longer gives kept: the base on which a resumed run's overrides
    act, so that e.g. `--set fit.n_sup=8` moves the default sample depth with it, while a rule
    the run was trained under stays. `resolved(unresolved(cfg)) == resolved(cfg)`."""
    target, out = resolved(cfg), cfg
    for part, name in RULE_FIELDS:  # the rules a later one derives from come first (prior path, then depth)
        trial = _with(out, part, **{name: None})
        out = trial if resolved(trial) == target else out
    return out


def with_priors(cfg: GramConfig, priors: PriorConfig) -> GramConfig:
    """`cfg` with `priors` (the model file's PRIORS block, or a stored run's) where cfg.priors is
    None: the one rule by which a fit, a resume and the CLI settle the priors in force."""
    return cfg if cfg.priors is not None else dataclasses.replace(cfg, priors=priors)
