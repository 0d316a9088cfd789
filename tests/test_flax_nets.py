"""The flax networks (NumPyro backend) against the torch ones: converted weights give the same
deterministic forward pass within float32 rounding, and conversion round-trips exactly."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tiny import tiny_config

from gram_ppl.models.gram_pyro import PRIORS
from gram_ppl.networks import convert, flax_nets
from gram_ppl.networks.torch_nets import build_net
from gram_ppl.tasks import get_task

VARIANTS = [
    {},
    {"net": {"share_core": True}},
    {"net": {"mixer": "mlp"}},
    {"priors": {"rank": 3}},
    {"priors": {"rank": 2, "components": 3}},  # a mixture prior's W_k, offsets and logits
    {"net": {"posterior_input": "add", "posterior_bottleneck": 2, "prefix_tokens": 2}},
    {"net": {"positions": "1d"}, "priors": {"scale_mode": "learned"}},
    {"priors": {"scale_mode": "fixed"}, "fit": {"variant": "noise_only"}},
    {"task": ("coloring", 6)},
    {"task": ("arc1", 5), "net": {"prefix_tokens": 2}},  # the puzzle embedding in the prefix
    {"task": ("sudoku", 4)},  # the relation bias on by the task's default
    {"task": ("coloring", 6), "net": {"relation_bias": True, "prefix_tokens": 2, "share_core": True}},
    {"net": {"relation_bias": True}},  # N-Queens cells: row, column, diagonals
    {"task": ("coloring_rows", 6), "net": {"relation_bias": True}},  # relation ids that depend on the input
    {"task": ("coloring_rows", 5), "net": {"relation_bias": True, "prefix_tokens": 2}},
]


def configured(change):
    cfg = tiny_config()
    parts = {
        k: dataclasses.replace(getattr(cfg, k) if k != "priors" else PRIORS, **v)
        for k, v in change.items()
        if k != "task"
    }
    cfg = dataclasses.replace(cfg, **{"priors": PRIORS, **parts})
    name, size = change.get("task", ("nqueens", 5))
    return cfg, get_task(name, size)


def torch_net(cfg, task):
    torch.manual_seed(0)
    net = build_net(cfg, task)
    with torch.no_grad():  # the guidance heads start at zero: give them weights to compare
        for head in (net.prior_head, net.posterior_head):
            head.net.w_out.weight.normal_(0, 0.05)
            if head.raw_scale is not None:
                head.raw_scale.fill_(0.3)
        for name, p in net.named_parameters():  # the relation bias starts at zero: give it values too
            if name.endswith("mix.rel"):
                p.normal_(0, 0.5)
    return net


@pytest.mark.parametrize("change", VARIANTS, ids=lambda c: str(c) or "default")
def test_forward_pass_agrees_within_float32_rounding(change):
    cfg, task = configured(change)
    tnet = torch_net(cfg, task)
    params = convert.torch_to_flax({k: v.numpy() for k, v in tnet.state_dict().items()}, cfg.net.share_core)
    fnet = flax_nets.build_net(cfg, task)
    rng = np.random.default_rng(0)
    x = rng.integers(1, task.x_vocab, (3, task.x_len))
    y = rng.integers(1, task.y_vocab, (3, task.y_len))

    def apply(method, *args):
        return fnet.apply({"params": params}, *args, method=method)

    with torch.no_grad():
        e = tnet.embed(torch.as_tensor(x))
        h, l = tnet.initial_state(3)
        u, l1 = tnet.transition(h, l, e)
        expected = [
            e,
            u,
            l1,
            *tnet.prior(u),
            *tnet.posterior(u, torch.as_tensor(y)),
            tnet.decode(u),
            tnet.halt(u),
            tnet.value(u),
        ]
    fe = apply(fnet.embed, jnp.asarray(x))
    fh, fl = apply(fnet.initial_state, 3)
    fu, fl1 = apply(fnet.transition, fh, fl, fe)
    assert (fe.rel is None) is (e.rel is None)  # relation ids travel with the input where they depend on it
    if e.rel is not None:
        np.testing.assert_array_equal(np.asarray(fe.rel), e.rel.numpy())
    expected[0] = e.e
    got = [fe.e, fu, fl1, *apply(fnet.prior, fu), *apply(fnet.posterior, fu, jnp.asarray(y)), apply(fnet.decode, fu)]
    got += [apply(fnet.halt, fu), apply(fnet.value, fu)]
    prior = ["prior loc", "prior scale"] + (["prior factor"] if cfg.priors.rank else [])
    prior += ["prior offset", "prior logit"] if cfg.priors.components > 1 else []
    names = ["e_x", "u", "l", *prior, "post loc", "post scale", "logits", "halt", "value"]
    for name, a, b in zip(names, expected, got, strict=True):
        np.testing.assert_allclose(np.asarray(b), a.detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("share_core", [False, True])
def test_conversion_round_trips_exactly(share_core):
    cfg, task = configured({"net": {"share_core": share_core}})
    state = {k: v.numpy() for k, v in torch_net(cfg, task).state_dict().items()}
    back = convert.flax_to_torch(convert.torch_to_flax(state, share_core), share_core)
    assert set(back) == set(state)
    for k in state:
        np.testing.assert_array_equal(back[k], state[k], err_msg=k)
    restored = build_net(cfg, task)
    restored.load_state_dict({k: torch.as_tensor(v) for k, v in back.items()})  # strict: every key fits


@pytest.mark.parametrize("bias", [False, True], ids=["plain", "relation-bias"])
def test_fresh_flax_parameters_have_the_torch_structure_and_zero_guidance(bias):
    cfg, task = configured({"net": {"relation_bias": bias}})
    fnet = flax_nets.build_net(cfg, task)
    state = convert.flax_to_torch(flax_nets.init_params(fnet, seed=0), cfg.net.share_core)
    reference = torch_net(cfg, task).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert not state["prior_head.net.w_out.weight"].any()
    rel = [k for k in state if k.endswith("mix.rel")]
    assert len(rel) == (2 * cfg.net.layers if bias else 0) and not any(state[k].any() for k in rel)  # zero at first
    assert state["z0"].std() == pytest.approx(cfg.priors.init_scale, rel=0.2)


def test_conversion_refuses_a_foreign_state():
    with pytest.raises(ValueError, match="z0"):
        convert.torch_to_flax({"decoder.weight": np.zeros((3, 4))}, share_core=False)


@pytest.mark.parametrize("change", [{"task": ("sudoku", 4)}, {"net": {"mixer": "mlp"}}], ids=["attention", "mlp"])
def test_bfloat16_core_agrees_across_backends_and_differs_from_float32(change):
    """NetConfig.precision="bfloat16": both backends compute the core's products in bfloat16 (their
    transitions agree within bfloat16 rounding, not float32's) and return float32 states."""
    cfg, task = configured(change)
    low = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, precision="bfloat16"))
    x = np.random.default_rng(0).integers(1, task.x_vocab, (3, task.x_len))
    states = {}
    for name, c in (("float32", cfg), ("bfloat16", low)):
        tnet = torch_net(c, task)
        params = convert.torch_to_flax({k: v.numpy() for k, v in tnet.state_dict().items()}, c.net.share_core)
        fnet = flax_nets.build_net(c, task)
        with torch.no_grad():
            u, _ = tnet.transition(*tnet.initial_state(3), tnet.embed(torch.as_tensor(x)))  # (B, L, D)
        fe = fnet.apply({"params": params}, jnp.asarray(x), method=fnet.embed)
        fh, fl = fnet.apply({"params": params}, 3, method=fnet.initial_state)
        fu, _ = fnet.apply({"params": params}, fh, fl, fe, method=fnet.transition)  # (B, L, D)
        assert u.dtype == torch.float32 and fu.dtype == jnp.float32
        states[name] = (u.numpy(), np.asarray(fu))
    (t32, f32), (t16, f16) = states["float32"], states["bfloat16"]
    np.testing.assert_allclose(f16, t16, atol=0.05)  # bfloat16 keeps 8 bits of mantissa
    assert np.abs(f16 - t16).mean() < 0.005
    assert np.abs(t16 - t32).max() > 1e-3 and np.abs(f16 - f32).max() > 1e-3  # the setting is not ignored
