import dataclasses

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from tiny import tiny_config

from gram_ppl import build_dataset
from gram_ppl.inference.svi_pyro import balanced_kl, sample, trajectory_loss
from gram_ppl.models import gram_pyro
from gram_ppl.networks.torch_nets import build_net


@pytest.fixture(scope="module")
def data():
    return build_dataset(tiny_config().task)


def setup(data, priors=gram_pyro.PRIORS, **fit):
    cfg = dataclasses.replace(tiny_config(**fit), priors=priors)
    torch.manual_seed(0)
    net = build_net(cfg, data.task)
    x = torch.as_tensor(data.train.x[:8].astype(np.int64))
    y = torch.as_tensor(data.train.y[:8].astype(np.int64))
    return cfg, net, x, y


def kwargs(cfg, net, **kw):
    return {"net": net, "cfg": cfg, "priors": cfg.priors, "steps": range(2), **kw}


def test_site_names_and_shapes(data):
    cfg, net, x, y = setup(data)
    tr = poutine.trace(gram_pyro.model).get_trace(x, y, **kwargs(cfg, net))
    sites = [n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "puzzles"]
    assert sites == ["eps_0_0", "eps_0_1", "y_0", "eps_1_0", "eps_1_1", "y_1"]
    L = data.task.seq_len
    assert tr.nodes["eps_1_1"]["value"].shape == (8, L, 16)
    assert tr.nodes["y_1"]["fn"].batch_shape == (8,) and tr.nodes["y_1"]["value"].shape == (8, 25)
    gtr = poutine.trace(gram_pyro.guide).get_trace(x, y, **kwargs(cfg, net))
    assert [n for n, s in gtr.nodes.items() if s["type"] == "sample" and n != "puzzles"] == sites[:2] + sites[3:5]


def test_model_and_guide_line_up_under_pyro_validation(data):
    cfg, net, x, y = setup(data)
    with pyro.validation_enabled(True):
        loss = Trace_ELBO().differentiable_loss(gram_pyro.model, gram_pyro.guide, x, y, **kwargs(cfg, net))
    assert torch.isfinite(loss)
    loss.backward()
    assert net.posterior_head.net.w_out.weight.grad.abs().sum() > 0  # w_out starts at zero


def test_our_loss_agrees_with_pyro_trace_elbo_in_expectation_for_plain_kl(data):
    """With kl_balance 0.5 the balanced KL has the plain KL's value; Trace_ELBO's single-sample
    estimate of the same ELBO must scatter around ours."""
    cfg, net, x, y = setup(data, kl_balance=0.5, n_sup=1, T=1)
    kw = kwargs(cfg, net, steps=range(1))
    ours = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(1), truncate=False)
    ours = (ours.nll + ours.kl.sum()).mean().item()
    with torch.no_grad():
        est = [
            Trace_ELBO().differentiable_loss(gram_pyro.model, gram_pyro.guide, x, y, **kw).item() / 8 for _ in range(60)
        ]
    assert abs(np.mean(est) - ours) < 4 * np.std(est) / np.sqrt(60) + 0.05 * abs(ours)


def test_reusing_the_guides_transitions_changes_nothing(data):
    from gram_ppl.inference.svi_pyro import SharedCore

    cfg, net, x, y = setup(data, n_sup=2, T=2)
    kw = kwargs(cfg, net, steps=range(2))
    del kw["net"]
    shared = SharedCore(net)
    gtr = poutine.trace(gram_pyro.guide).get_trace(x, y, net=shared, **kw)
    calls = []
    real = net.transition
    net.transition = lambda *a: calls.append(1) or real(*a)  # count what the replayed model computes
    reused = poutine.trace(poutine.replay(gram_pyro.model, trace=gtr)).get_trace(x, y, net=shared.replay(), **kw)
    assert calls == []  # every transition came from the guide's recording
    del net.transition
    without = poutine.trace(poutine.replay(gram_pyro.model, trace=gtr)).get_trace(x, y, net=net, **kw)
    assert torch.allclose(reused.log_prob_sum(), without.log_prob_sum(), rtol=1e-5)
    for n in ("eps_1_1", "y_1"):
        assert torch.allclose(reused.nodes[n]["fn"].log_prob(reused.nodes[n]["value"]),
                              without.nodes[n]["fn"].log_prob(without.nodes[n]["value"]), rtol=1e-5)  # fmt: skip


def test_a_recording_hands_back_its_results_in_order_and_refuses_another_call():
    from gram_ppl.inference.objective import Recording

    rec, calls = Recording(), []

    def f(v):
        calls.append(v)
        return v * 10

    assert [rec.call("embed", f, 1), rec.call("transition", f, 2)] == [10, 20]
    replay = rec.replay()
    assert replay.call("embed", f, 99) == 10 and calls == [1, 2]  # handed back, not computed
    with pytest.raises(RuntimeError, match="called embed where the guide called transition"):
        replay.call("embed", f, 3)
    assert replay.call("transition", f, 4) == 40 and calls == [1, 2, 4]  # beyond the recording: computed
    assert rec.replay().call("embed", f, 0) == 10  # the first recording is untouched by replays


def test_deterministic_variant_has_no_noise_and_repeats_itself(data):
    cfg, net, x, y = setup(data, variant="deterministic")
    tr = poutine.trace(gram_pyro.model).get_trace(x, y, **kwargs(cfg, net))
    assert not [n for n in tr.nodes if n.startswith("eps")]
    a, b = sample(gram_pyro, net, cfg, x, num_samples=2)
    assert np.array_equal(a, b)


def test_gram_samples_differ(data):
    cfg, net, x, _ = setup(data, priors=dataclasses.replace(gram_pyro.PRIORS, scale=0.5))
    h = [gram_pyro.model(x, None, **kwargs(cfg, net, observe="last"))[0] for _ in range(2)]
    assert not torch.allclose(h[0], h[1])


@pytest.mark.parametrize(
    "family, cls", [("studentt", dist.StudentT), ("laplace", dist.Laplace), ("normal", dist.Normal)]
)
def test_editing_the_priors_block_changes_the_traced_distribution(data, family, cls):
    priors = dataclasses.replace(gram_pyro.PRIORS, family=family)
    cfg, net, x, y = setup(data, priors=priors)
    tr = poutine.trace(gram_pyro.model).get_trace(x, y, **kwargs(cfg, net))
    assert type(tr.nodes["eps_0_0"]["fn"].base_dist) is cls
    terms = trajectory_loss(gram_pyro, net, cfg, priors, x, y, None, range(2), truncate=True)
    assert torch.isfinite(terms.loss) and (terms.kl >= 0).all() if family == "normal" else torch.isfinite(terms.loss)


@pytest.mark.parametrize("mode", ["fixed", "learned", "network"])
def test_scale_modes(data, mode):
    priors = dataclasses.replace(gram_pyro.PRIORS, scale_mode=mode, scale=0.2)
    cfg, net, x, y = setup(data, priors=priors)
    u = torch.randn(8, data.task.seq_len, 16)
    loc, scale = net.prior(u)
    assert torch.allclose(scale, torch.full_like(scale, 0.2), atol=1e-5)  # every mode starts at `scale`
    assert torch.allclose(loc, torch.zeros_like(loc))  # zero-initialised mean
    n_scale_params = sum(p.numel() for p in [net.prior_head.raw_scale] if p is not None)
    assert n_scale_params == (1 if mode == "learned" else 0)


def test_noise_only_and_mean_only_ablations(data):
    cfg, net, x, y = setup(data, variant="noise_only")
    with torch.no_grad():
        net.prior_head.net.w_out.weight.normal_()
    loc, _ = net.prior(torch.randn(8, data.task.seq_len, 16))
    assert (loc == 0).all()
    cfg, net, x, y = setup(data, variant="mean_only")
    tr = poutine.trace(gram_pyro.model).get_trace(x, y, **kwargs(cfg, net))
    assert isinstance(tr.nodes["eps_0_0"]["fn"].base_dist, dist.Delta)
    terms = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(2), truncate=True)
    assert torch.isfinite(terms.loss)


def test_balanced_kl_has_the_plain_value_and_splits_the_gradient():
    qloc, qs = torch.randn(3, 4, 5, requires_grad=True), torch.rand(3, 4, 5).add(0.5).requires_grad_()
    ploc, ps = torch.randn(3, 4, 5, requires_grad=True), torch.rand(3, 4, 5).add(0.5).requires_grad_()
    q, p = dist.Normal(qloc, qs).to_event(2), dist.Normal(ploc, ps).to_event(2)
    plain = torch.distributions.kl_divergence(q, p)
    for alpha in (0.0, 0.8, 1.0):
        bal = balanced_kl(q, p, q.rsample(), alpha)
        assert torch.allclose(bal, plain)
        gq, gp = torch.autograd.grad(bal.sum(), [qloc, ploc], retain_graph=True)
        gq_full, gp_full = torch.autograd.grad(plain.sum(), [qloc, ploc], retain_graph=True)
        assert torch.allclose(gq, (1 - alpha) * gq_full, atol=1e-6) and torch.allclose(gp, alpha * gp_full, atol=1e-6)


def test_unconditional_generation_uses_blank_inputs():
    from gram_ppl import TaskConfig

    cfg = dataclasses.replace(tiny_config(), task=TaskConfig(name="sudoku", size=4), priors=gram_pyro.PRIORS)
    ds = build_dataset(cfg.task)
    net = build_net(cfg, ds.task)
    x = torch.as_tensor(ds.test.x[:4].astype(np.int64))
    assert (x == 1).all()
    out = sample(gram_pyro, net, cfg, x, num_samples=3)
    assert out.shape == (3, 4, 16)
    absent = sample(gram_pyro, net, cfg, None, num_samples=3, seed=5)  # x absent: the same empty input
    blank = sample(gram_pyro, net, cfg, x[:1], num_samples=3, seed=5)
    assert absent.shape == (3, 1, 16) and np.array_equal(absent, blank)


@pytest.mark.parametrize(
    "net_kw",
    [{"mixer": "mlp"}, {"positions": "1d"}, {"prefix_tokens": 3}, {"share_core": True}, {"posterior_input": "add"},
     {"posterior_bottleneck": 2, "guidance_hidden": 8}],
)  # fmt: skip
def test_network_variants_run_and_keep_shapes(data, net_kw):
    cfg = dataclasses.replace(tiny_config(), priors=gram_pyro.PRIORS)
    cfg = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, **net_kw))
    net = build_net(cfg, data.task)
    x = torch.as_tensor(data.train.x[:8].astype(np.int64))
    y = torch.as_tensor(data.train.y[:8].astype(np.int64))
    terms = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(2), truncate=True)
    assert torch.isfinite(terms.loss) and terms.h.shape == (8, 25 + net_kw.get("prefix_tokens", 0), 16)
    assert terms.logits.shape == (8, 25, 3)
    if net_kw.get("share_core"):
        assert net.f_L is net.f_H


def test_halt_and_value_losses_never_reach_the_core(data):
    from gram_ppl.inference.svi_pyro import head_losses

    cfg, net, x, y = setup(data)
    terms = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(1), truncate=True)
    halt, value, _ = head_losses(net, terms.h, terms.logits, y)
    (halt + value).backward()
    assert all(p.grad is None for p in net.f_L.parameters()) and all(p.grad is None for p in net.f_H.parameters())
    assert net.halt_head.weight.grad is not None and net.value_head.weight.grad is not None


def test_colouring_outputs_live_on_appended_slots():
    from gram_ppl import TaskConfig

    cfg = dataclasses.replace(tiny_config(), task=TaskConfig(name="coloring", size=5, num_train=10, num_test=2))
    cfg = dataclasses.replace(cfg, priors=gram_pyro.PRIORS)
    ds = build_dataset(cfg.task)
    net = build_net(cfg, ds.task)
    x = torch.as_tensor(ds.train.x[:4].astype(np.int64))  # (4, 10) adjacency tokens
    y = torch.as_tensor(ds.train.y[:4].astype(np.int64))  # (4, 5) colours
    terms = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(2), truncate=True)
    assert terms.h.shape == (4, 15, 16) and terms.logits.shape == (4, 5, 6)


def test_noise_sites_are_known_by_their_tag_not_their_name():
    """A latent site added to the model (here `scale_0`, a name the old `eps_{n}_{t}` parsing
    would have credited to step 0) is neither transition noise nor any step's KL; the loss still
    pays its KL. Every noise site carries its role and step."""
    import types

    from gram_ppl import sites
    from gram_ppl.models.priors import PRIORS
    from gram_ppl.tasks import get_task

    cfg = dataclasses.replace(tiny_config(), priors=PRIORS)
    task = get_task("nqueens", 5)
    torch.manual_seed(0)
    net = build_net(cfg, task)
    base = gram_pyro

    def model(x, y=None, **kw):
        out = base.model(x, y, **kw)
        pyro.sample("scale_0", dist.Normal(0.0, 1.0))  # a global latent, prior N(0, 1), drawn after the noise
        return out

    def guide(x, y=None, **kw):
        base.guide(x, y, **kw)
        pyro.sample("scale_0", dist.Normal(1.0, 1.0))  # KL(N(1, 1) || N(0, 1)) = 0.5 nats

    extra = types.SimpleNamespace(model=model, guide=guide, PRIORS=PRIORS)
    x = torch.as_tensor(np.random.default_rng(0).integers(1, 3, (4, task.x_len)))
    y = torch.as_tensor(np.random.default_rng(1).integers(1, 3, (4, task.y_len)))
    terms = {}
    for name, m in (("plain", base), ("extra", extra)):
        torch.manual_seed(3)
        terms[name] = trajectory_loss(m, net, cfg, PRIORS, x, y, None, range(2), True)
    torch.testing.assert_close(terms["extra"].kl, terms["plain"].kl)  # no step was credited with it
    assert terms["extra"].loss.item() == pytest.approx(terms["plain"].loss.item() + cfg.fit.beta * 0.5, rel=1e-5)
    tr = poutine.trace(base.model).get_trace(x, y, net=net, cfg=cfg, priors=PRIORS, steps=range(2))
    noise = {n: sites.step_of(s) for n, s in tr.nodes.items() if s["type"] == "sample" and sites.is_noise(s)}
    assert noise == {f"eps_{n}_{t}": n for n in range(2) for t in range(cfg.fit.T)}


def test_the_model_runs_every_step_by_default_and_draws_no_y_when_asked_not_to(data):
    """steps=None is all N_sup supervision steps (not one); observe="none" draws no y (sampling)."""
    cfg, net, x, _ = setup(data)
    tr = poutine.trace(gram_pyro.model).get_trace(x, None, net=net, cfg=cfg, priors=cfg.priors)
    names = [n for n, s in tr.nodes.items() if s["type"] == "sample" and not n.startswith("puzzles")]
    assert sum(n.startswith("eps_") for n in names) == cfg.fit.n_sup * cfg.fit.T
    assert [n for n in names if n.startswith("y_")] == [f"y_{n}" for n in range(cfg.fit.n_sup)]
    tr = poutine.trace(gram_pyro.model).get_trace(x, None, net=net, cfg=cfg, priors=cfg.priors, observe="none")
    assert not [n for n in tr.nodes if n.startswith("y_")]
