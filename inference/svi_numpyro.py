"""SVI for GRAM in NumPyro: the loss from traces, a jit-compiled training step, prior sampling.

The same objective as inference/svi_pyro.py (read its docstring): in one `lax.scan` over the
supervision steps, each step's guide (`guide_step` of the model file) is traced and the model's
step replayed on the guide's noise (`handlers.replay`) and on its transitions (`_SharedCore`, so
f_L / f_H run once per step, not once for the guide and again for the model), −log p(y | h) read off the observed
sites and a balanced KL off every noise site (closed form for Normal/Normal, Laplace/Laplace and Normal/Laplace,
as torch has them; one-sample Monte Carlo for studentt; ½‖Δμ‖² for mean_only). Parameters are one flax tree ("gram$params", shared by model
and guide, substituted in); optax AdamW with the torch defaults (β = (0.9, 0.95), decay on
matrices only, never on z_0) after global-norm clipping.

Compilation: one jitted update per supervision step index n (the guide's placement depends on
it), so N_sup programs in all, compiled on the first batch and reused for every later batch
(fixed batch shapes: the ragged tail of an epoch is dropped, as in the Pyro loop) and by every
later trainer of the same model and config in the process (a resumed run, a notebook refit). Sampling
compiles once per (number of rows, depth).
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers

from gram_ppl.config import GramConfig, PriorConfig, prior_path, sample_depth, temperature_schedule
from gram_ppl.inference.backend import NonFiniteLoss, StepInfo
from gram_ppl.inference.objective import (
    cached_solutions,
    kl_ceiling,
    log_count_unknown,
    prior_path_targets,
    repair_targets,
)
from gram_ppl.inference.tempering import check_temperature, numpyro_temper, per_step_temperatures
from gram_ppl.networks import flax_nets

PARAMS = "gram$params"


from gram_ppl.inference.objective_numpyro import (  # noqa: E402,F401
    PriorPath,
    Terms,
    balanced_kl,
    head_losses,
    prior_path_term,
    trajectory_loss,
)


def optimizer(cfg: GramConfig):
    fit = cfg.fit

    def decay(params):  # matrices decay, vectors and z_0 do not (torch: ndim >= 2, z_0 a buffer)
        mask = jax.tree_util.tree_map(lambda a: a.ndim >= 2, params)
        return {**mask, "z0": False}

    return optax.chain(
        optax.clip_by_global_norm(fit.clip),
        optax.adamw(fit.lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=fit.weight_decay, mask=decay),
    )


_PROGRAMS: dict = {}  # (id(mod), net, cfg, priors, steps, first) -> jitted update, shared by all trainers
TRACES = [0]  # update programs traced (compiled) in this process


def update_program(mod, net, cfg: GramConfig, priors: PriorConfig, segment: range, first: bool):
    """The jitted training update for the supervision steps `segment`: compiled once per
    process for a given model, networks and config, so resumed runs and later fits reuse it."""
    key = (id(mod), net, cfg, priors, segment, first)  # the program holds mod, so its id stays unique
    if key not in _PROGRAMS:
        _PROGRAMS[key] = jax.jit(_make_update(mod, net, cfg, priors, segment, first))
    return _PROGRAMS[key]


def _make_update(mod, net, cfg, priors, segment, first):
    fit, truncate, tx = cfg.fit, cfg.fit.objective == "surrogate", optimizer(cfg)

    def loss_fn(params, key, x, y, carry, cap, pp, pp_carry):
        if pp is not None:  # its own key: without the term the stream is what it always was
            key, k_pp = jax.random.split(key)
        terms = trajectory_loss(params, key, mod, net, cfg, priors, x, y, carry, segment, truncate, cap)
        halt, value, exact = head_losses(net, params, terms.h, terms.logits, y)
        parts = {**terms.parts, "halt": fit.halt_weight * halt, "value": fit.value_weight * value}
        if pp is not None:
            term, pp_carry = prior_path_term(params, k_pp, mod, net, cfg, priors, pp, pp_carry, segment)
            parts["prior_path"] = prior_path(cfg).weight * term
        return sum(parts.values()), (terms._replace(parts=parts), halt, value, exact, pp_carry)

    def update(params, opt_state, ema, key, x, y, carry, cap, lr_scale, pp=None, pp_carry=None):
        TRACES[0] += 1  # runs only while tracing
        carry = None if first else carry
        pp_carry = None if first else pp_carry
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key, x, y, carry, cap, pp, pp_carry)
        updates, opt_state = tx.update(grads, opt_state, params)
        # the schedule scales the whole AdamW step, decoupled decay included (torch: lr · decay)
        updates = jax.tree_util.tree_map(lambda u: lr_scale * u, updates)
        new = optax.apply_updates(params, updates)
        if ema is not None:
            ema = jax.tree_util.tree_map(lambda e, p: e + (1 - fit.ema) * (p - e), ema, new)
        return new, opt_state, ema, loss, jnp.isfinite(loss), aux

    return update


def data_parallel(batch_size: int):
    """(batch sharding, replicated sharding) over every JAX device when there are several, else
    None: the batch axis split over a 1-D mesh ("batch"), parameters and optimiser state
    replicated, and XLA's partitioner turns the jitted step into per-device work with an
    all-reduce of the gradients. JAX's random bits do not depend on the sharding, so the step is
    the one-device step up to float rounding (tests/test_parallel.py, with 2 forced host devices).
    Several processes (machines): `jax.distributed.initialize()` first (docs/scaling.md)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.devices()
    if len(devices) == 1:
        return None
    if batch_size % len(devices):
        raise ValueError(f"batch_size {batch_size} must be divisible by the {len(devices)} JAX devices")
    mesh = Mesh(np.asarray(devices), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())


class Trainer:
    """Parameters, optimiser state and EMA of one NumPyro fit; `train_batch` runs N_sup steps
    (the backend interface: inference/backend.py)."""

    def __init__(self, mod, net, cfg: GramConfig, params=None, task=None):
        self.mod, self.net, self.cfg, self.priors, self.task = mod, net, cfg, cfg.priors, task
        self.solution_cache: dict[bytes, np.ndarray] = {}  # exact solutions per input (prior_path_target="nearest")
        self.target_pool = None  # (x, y) of the training split, set by the training loop (prior_path_target="train")
        self.params = params if params is not None else flax_nets.init_params(net, cfg.fit.seed)
        self.tx = optimizer(cfg)
        self.opt_state = self.tx.init(self.params)
        self.ema = self.params if cfg.fit.ema else None
        self.key = jax.random.key(cfg.fit.seed)
        self.lr_scale = 1.0  # the learning-rate schedule's factor (set_lr_scale)
        self.shardings = data_parallel(cfg.fit.batch_size)  # None on one device
        self._replicate()

    def _replicate(self) -> None:
        """With several devices: parameters, optimiser state and EMA replicated on all of them."""
        if self.shardings is not None:
            rep = self.shardings[1]
            self.params, self.opt_state, self.ema = jax.device_put((self.params, self.opt_state, self.ema), rep)

    def sampling_net(self) -> Bound:
        return Bound(self.net, self.ema if self.ema is not None else self.params)

    def compiles_first(self) -> bool:
        """Whether the next batch compiles the training programs (none yet for this model and config)."""
        fit = self.cfg.fit
        segment = range(fit.n_sup) if fit.objective == "elbo" else range(1)
        return (id(self.mod), self.net, self.cfg, self.priors, segment, True) not in _PROGRAMS

    def _tree(self) -> dict:
        return {"params": self.params, "opt": self.opt_state, "ema": self.ema, "key": jax.random.key_data(self.key)}

    def state(self) -> bytes:
        """Parameters, optimiser state, EMA and key as flax msgpack bytes (no torch)."""
        from flax import serialization

        return serialization.to_bytes(self._tree())

    def load_state(self, data: bytes) -> None:
        from flax import serialization

        state = serialization.from_bytes(self._tree(), data)
        self.params, self.opt_state, self.ema = state["params"], state["opt"], state["ema"]
        self.key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        self._replicate()

    def set_weights(self, weights: dict) -> None:
        """Sampling weights (numpy, torch state_dict names: networks/convert.py) as the
        parameters and the EMA copy; the optimiser starts afresh."""
        from gram_ppl.networks.convert import torch_to_flax

        self.params = jax.tree_util.tree_map(jnp.asarray, torch_to_flax(weights, self.cfg.net.share_core))
        self.opt_state = self.tx.init(self.params)
        self.ema = self.params if self.ema is not None else None
        self._replicate()

    def apply_hyperparameters(self) -> None:
        """After a forced resume: nothing to do, the optax transform is built from this trainer's
        config (learning rate and weight decay are not part of the restored optimiser state)."""

    def set_lr_scale(self, scale: float) -> None:
        """The next batches' learning rate is fit.lr · scale (the schedule: FitConfig.lr_scale);
        a traced argument of the update, so changing it compiles nothing."""
        self.lr_scale = float(scale)

    def train_batch(self, x, y, num_solutions=None) -> StepInfo:
        """One batch: x (B, L_x), y (B, L_y); num_solutions (B,) of each input, for the KL ceiling."""
        fit = self.cfg.fit
        x, y = jnp.asarray(np.asarray(x), jnp.int32), jnp.asarray(np.asarray(y), jnp.int32)
        caps = kl_ceiling(fit, num_solutions, x.shape[0], log_count_unknown(self.task)) if fit.kl_cap_weight else None
        cap = jnp.asarray(np.zeros(x.shape[0]) if caps is None else caps)  # (B,)
        if self.shardings is not None:  # the batch split over the devices; XLA partitions the step (GSPMD)
            x, y, cap = jax.device_put((x, y, cap), self.shardings[0])
        segments = [range(fit.n_sup)] if fit.objective == "elbo" else [range(n, n + 1) for n in range(fit.n_sup)]
        rule = prior_path(self.cfg)  # weight, target rule, anchor: read once per batch
        pp = self._prior_path(x, y) if rule.weight else None
        carry, pp_carry, losses, kls, totals = None, None, [], [], {}
        for i, seg in enumerate(segments):
            self.key, sub = jax.random.split(self.key)
            update = update_program(self.mod, self.net, self.cfg, self.priors, seg, first=i == 0)
            empty = (jnp.zeros(()), jnp.zeros(()))  # the first step's carries: unused (z_0)
            dummy, pp_dummy = (c if c is not None else empty for c in (carry, pp_carry))
            params, opt_state, ema, loss, ok, (terms, halt, value, exact, pp_carry) = update(
                self.params, self.opt_state, self.ema, sub, x, y, dummy, cap, jnp.float32(self.lr_scale), pp, pp_dummy
            )
            if not bool(ok):
                raise NonFiniteLoss(f"loss is {float(loss)}; stopping before the update (last checkpoint kept)")
            self.params, self.opt_state, self.ema = params, opt_state, ema
            carry = (jax.lax.stop_gradient(terms.h), jax.lax.stop_gradient(terms.l))
            if i == 0 and pp is not None and rule.target == "repair":
                pp, pp_carry = repaired(self.task, pp, pp_carry)
            losses.append(float(loss))
            kls.extend(np.asarray(terms.kl).tolist())
            for k, v in terms.parts.items():  # summed over the segments, like the loss
                totals[k] = totals.get(k, 0.0) + float(v)
        stats = {"loss": float(np.mean(losses)), "ce": float(terms.nll.mean()), "halt": float(halt),
                 "value": float(value), "exact": float(exact.mean()),
                 **{f"terms.{k}": v / len(segments) for k, v in totals.items()}}  # fmt: skip
        return StepInfo.from_stats(stats, kls)

    def _prior_path(self, x, y) -> PriorPath:
        """The prior-path term's inputs for this batch (objective.prior_path_targets)."""
        fit, xn, yn = self.cfg.fit, np.asarray(x), np.asarray(y)
        solutions = cached_solutions(self.task, self.solution_cache)
        targets, mask = prior_path_targets(self.cfg, xn, yn, solutions, self.target_pool)  # (M, L_y), (P, M)
        xs = np.tile(xn[: mask.shape[0]], (fit.prior_path_samples, 1))  # (K*P, L_x): k-major
        return PriorPath(jnp.asarray(xs, jnp.int32), jnp.asarray(targets, jnp.int32), jnp.asarray(mask))


def repaired(task, pp: PriorPath, carry) -> tuple[PriorPath, tuple]:
    """The "repair" target after the first supervision step: each rollout's drawn board (from the
    first step's log-probabilities, carry[3]) repaired by the task's solver becomes that rollout's
    target for the later steps (as svi_pyro's _PriorPath); returns the term's inputs and carry."""
    boards = repair_targets(task, np.asarray(pp.x), np.asarray(carry[3]))  # (K*P, L_y)
    K, P = carry[2].shape
    best = jnp.arange(K * P, dtype=jnp.int32).reshape(K, P)  # rollout k of input p: its own board
    pp = pp._replace(targets=jnp.asarray(boards, jnp.int32), mask=jnp.ones((P, K * P), bool))
    return pp, (*carry[:2], best)


class Bound(NamedTuple):
    """The flax networks with their parameters: what a loaded NumPyro run samples from."""

    net: flax_nets.GramNet
    params: dict

    @property
    def x_len(self) -> int:
        return self.net.x_len

    @property
    def y_len(self) -> int:
        return self.net.y_len


def row_sharding(rows: int):
    """(rows sharding, replicated sharding) to spread rows sampled trajectories over every JAX
    device (a 1-D mesh, as training's data_parallel), or None on one device or when the devices
    do not divide the rows (then everything runs on the default device)."""
    devices = jax.devices()
    if len(devices) == 1 or rows % len(devices):
        return None
    return data_parallel(rows)


def _spread(params, *rows):
    """Parameters replicated and each (N*B, ...) array split by rows over the devices (row_sharding)."""
    sh = row_sharding(rows[0].shape[0])
    if sh is None:
        return (params, *rows)
    return (jax.device_put(params, sh[1]), *(None if r is None else jax.device_put(r, sh[0]) for r in rows))


@functools.partial(jax.jit, static_argnames=("mod", "net", "cfg", "depth", "temperature"))
def _boards(params, key, xs, ys, *, mod, net, cfg, depth, temperature=1.0):
    """Argmax boards (N*B, L_y) of the trajectories of xs (N*B, L_x): the N trajectories of a
    puzzle as one batch, split over the devices when there are several (row_sharding)."""
    kw = dict(net=net, cfg=cfg, priors=cfg.priors, steps=range(depth), truncate=False, observe="none")
    sub = {PARAMS: params}
    k_guide, k_model = jax.random.split(key)
    model = handlers.substitute(mod.model, data=sub)
    if ys is not None:  # through the guide: the model replayed on the guide's noise
        tr = handlers.trace(handlers.seed(handlers.substitute(mod.guide, data=sub), k_guide)).get_trace(xs, ys, **kw)
        model = handlers.replay(model, trace={k: v for k, v in tr.items() if v["type"] == "sample"})
    h, _ = handlers.seed(numpyro_temper(model, tau=temperature), k_model)(xs, None, **kw)
    return jnp.argmax(net.apply({"params": params}, h, method="decode"), -1)  # (N*B, L_y)


def sample(
    mod, bound: Bound, cfg: GramConfig, x, y=None, num_samples: int = 1, depth=None, seed: int = 0, temperature=None
):
    """Decoded boards after `depth` supervision steps of N trajectories per puzzle x (B, L_x), from
    the prior, or through the guide when y (B, L_y) is given: (num_samples, B, L_y) numpy.
    With x None the input is empty (unconditional samples, B = 1). `temperature` scales the prior's σ
    (None: the run's, config.temperature_schedule: a schedule draws step by step, as prior_steps)."""
    depth = depth or sample_depth(cfg)
    if x is None:
        x = np.ones((1, bound.x_len), np.int32)
    B = np.asarray(x).shape[0]
    taus = temperature_schedule(cfg, depth, temperature)
    if y is None and len(set(taus)) > 1:
        steps = prior_steps(mod, bound, cfg, x, num_samples, seed, taus)
        return next(itertools.islice(steps, depth - 1, None))[0].reshape(num_samples, B, -1)
    temperature = taus[0]
    xs = jnp.asarray(np.tile(np.asarray(x), (num_samples, 1)), jnp.int32)  # (N*B, L_x)
    ys = None if y is None else jnp.asarray(np.tile(np.asarray(y), (num_samples, 1)), jnp.int32)  # (N*B, L_y)
    params, xs, ys = _spread(bound.params, xs, ys)
    boards = _boards(
        params, jax.random.key(seed), xs, ys, mod=mod, net=bound.net, cfg=cfg,
        depth=depth, temperature=check_temperature(temperature),
    )  # fmt: skip
    return np.asarray(boards).reshape(num_samples, B, -1)


@functools.partial(jax.jit, static_argnames=("mod", "net", "cfg", "depth"))
def _log_lik(params, key, xs, ys, *, mod, net, cfg, depth):
    kw = dict(net=net, cfg=cfg, priors=cfg.priors, steps=range(depth), truncate=False, observe="none")
    h, _ = handlers.seed(handlers.substitute(mod.model, data={PARAMS: params}), key)(xs, None, **kw)
    logits = jax.nn.log_softmax(net.apply({"params": params}, h, method="decode"), -1)  # (K*B, L_y, V_y)
    return jnp.take_along_axis(logits, ys[..., None], -1)[..., 0].sum(-1)  # (K*B,)


def log_likelihood(mod, bound: Bound, cfg: GramConfig, x, y, num_samples: int = 8, depth=None, seed: int = 0):
    """As svi_pyro.log_likelihood: (K, B) log p(y | τ_k, x) of K prior trajectories per puzzle."""
    B = np.asarray(x).shape[0]
    xs = jnp.asarray(np.tile(np.asarray(x), (num_samples, 1)), jnp.int32)  # (K*B, L_x)
    ys = jnp.asarray(np.tile(np.asarray(y), (num_samples, 1)), jnp.int32)  # (K*B, L_y)
    params, xs, ys = _spread(bound.params, xs, ys)
    out = _log_lik(params, jax.random.key(seed), xs, ys, mod=mod, net=bound.net, cfg=cfg,
                   depth=depth or cfg.fit.n_sup)  # fmt: skip
    return np.asarray(out).reshape(num_samples, B)


@functools.partial(jax.jit, static_argnames=("mod", "net", "cfg", "temperature"))
def _prior_step(params, key, xs, carry, tau=None, *, mod, net, cfg, temperature=1.0):
    """One supervision step of prior rollouts from `carry`: the new carry, argmax boards, halt
    logits and LPRM values. τ is `temperature` (static: one compilation per value) or, where
    given, `tau` (a traced scalar: one compilation for every step of a schedule)."""
    kw = dict(net=net, cfg=cfg, priors=cfg.priors, carry=carry, steps=range(1), truncate=False, observe="none")
    tau = temperature if tau is None else tau
    model = handlers.seed(numpyro_temper(handlers.substitute(mod.model, data={PARAMS: params}), tau=tau), key)
    h, l = model(xs, None, **kw)
    apply = functools.partial(net.apply, {"params": params})
    return (h, l), jnp.argmax(apply(h, method="decode"), -1), apply(h, method="halt"), apply(h, method="value")


def prior_steps(
    mod, bound: Bound, cfg: GramConfig, x, num_samples: int, seed: int = 0, temperature: float | None = None
):
    """Prior rollouts in JAX, one supervision step per iteration (one compiled step, reused at
    every depth: the step index does not enter prior rollouts): argmax boards, halt logits and
    LPRM values of all N·B trajectories as numpy, for inference.sampling.rollout. `temperature`:
    one τ, or a sequence of per-step τ (config.temperature_schedule; its last repeats); None is
    the run's constant τ (a run with fit.sample_temperature_end needs the depth: use rollout)."""
    taus = per_step_temperatures(cfg, temperature)
    xs = jnp.asarray(np.tile(np.asarray(x), (num_samples, 1)), jnp.int32)  # (N*B, L_x)
    carry = bound.net.apply({"params": bound.params}, xs.shape[0], method="initial_state")  # ((N*B, L, D),) * 2
    params, xs, h, l = _spread(bound.params, xs, *carry)  # trajectories split over the devices, if several
    carry, key, n = (h, l), jax.random.key(seed), 0
    kw = dict(mod=mod, net=bound.net, cfg=cfg)
    while True:
        key, sub = jax.random.split(key)
        if len(set(taus)) == 1:  # one τ: static, as it always was
            carry, board, halt, value = _prior_step(params, sub, xs, carry, **kw, temperature=taus[0])
        else:  # a schedule: τ traced, one compilation for every step
            tau = jnp.float32(taus[min(n, len(taus) - 1)])
            carry, board, halt, value = _prior_step(params, sub, xs, carry, tau, **kw)
        n += 1
        yield np.asarray(board), np.asarray(halt), np.asarray(value)


# ---- the backend interface (inference/backend.py) ----------------------------------------
def setup(threads: int) -> None:
    """Nothing to set per call: XLA's CPU threads are fixed when JAX starts (XLA_FLAGS)."""


def make_trainer(mod, cfg: GramConfig, task, par=None) -> Trainer:
    return Trainer(mod, flax_nets.build_net(cfg, task), cfg, task=task)


def sampling_net(cfg: GramConfig, task, state: bytes) -> Bound:
    """The networks to sample from (EMA parameters when enabled) out of a Trainer.state()."""
    from flax import serialization

    raw = serialization.msgpack_restore(state)
    if not isinstance(raw, dict) or "params" not in raw:
        raise KeyError("not a NumPyro trainer state (a Pyro run? convert it with gram convert)")
    params = jax.tree_util.tree_map(jnp.asarray, raw["ema"] if cfg.fit.ema else raw["params"])
    net = flax_nets.build_net(cfg, task)
    check_shapes(params, jax.eval_shape(lambda: flax_nets.init_params(net, 0)))
    return Bound(net, params)


def check_shapes(params, expected) -> None:
    """ValueError naming the first parameter whose path or shape is not what the config's
    networks have (a tampered or foreign state), before any sampling call would trip on it."""
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    want = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            raise ValueError(f"parameter {name}: shape {got.get(name)}, the config's networks need {want.get(name)}")


def weights(bound: Bound) -> dict[str, np.ndarray]:
    from gram_ppl.networks.convert import flax_to_torch

    return flax_to_torch(jax.tree_util.tree_map(np.asarray, bound.params), bound.net.cfg.share_core)


def net_from_weights(cfg: GramConfig, task, w: dict) -> Bound:
    from gram_ppl.networks.convert import torch_to_flax

    params = jax.tree_util.tree_map(jnp.asarray, torch_to_flax(w, cfg.net.share_core))
    return Bound(flax_nets.build_net(cfg, task), params)
