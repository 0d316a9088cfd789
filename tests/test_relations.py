"""The relation bias (NetConfig.relation_bias): each task's relation ids, the bias reaching the
attention logits only through them, a zero bias reproducing the plain network, the defaults
(on for Sudoku and colouring's vertex tokens), and the leak-free default protocol (orbit split + augmentation for Sudoku)."""

import dataclasses

import numpy as np
import pytest
import torch
from tiny import tiny_config

from gram_ppl import config
from gram_ppl.config import ConfigError, FitConfig, GramConfig, NetConfig, TaskConfig, augments, from_dict, to_dict
from gram_ppl.models.gram_pyro import PRIORS
from gram_ppl.networks import torch_nets
from gram_ppl.networks.torch_nets import build_net
from gram_ppl.tasks import TASKS, get_task
from gram_ppl.tasks.base import relation_ids, uses_relation_bias

SIZES = {"nqueens": 5, "nqueens_rows": 6, "sudoku": 6, "coloring": 5, "coloring_rows": 5, "digits": 8, "arc1": 5,
         "arc2": 5}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_gives_symmetric_small_ids_and_prefix_tokens_their_own(name):
    task = get_task(name, SIZES[name])
    ids = relation_ids(task, prefix_tokens=2)  # (L, L)
    L = 2 + task.seq_len
    assert ids.shape == (L, L) and ids.min() >= 0 and ids.max() < 64
    assert (ids == ids.T).all()  # every relation here is symmetric
    inner = ids[2:, 2:]
    assert (ids[:2] == ids.max()).all() and (ids[:, :2] == ids.max()).all() and (inner < ids.max()).all()


def test_sudoku_ids_are_row_plus_two_column_plus_four_box():
    task = get_task("sudoku", 6)  # boxes of 2 rows x 3 columns
    ids = task.relations()
    cell = lambda r, c: 6 * r + c  # noqa: E731
    assert ids[cell(0, 0), cell(0, 0)] == 7  # itself: same row, column and box
    assert ids[cell(0, 0), cell(0, 2)] == 1 + 4  # same row and box
    assert ids[cell(0, 0), cell(0, 4)] == 1  # same row only
    assert ids[cell(0, 0), cell(1, 1)] == 4  # box only
    assert ids[cell(0, 0), cell(3, 0)] == 2  # column only
    assert ids[cell(0, 0), cell(3, 4)] == 0  # unrelated


def test_row_and_graph_encodings():
    rows = get_task("nqueens_rows", 6).relations()
    assert rows[1, 4] == 3 and rows[4, 1] == 3 and rows[2, 2] == 0  # the row distance
    col = get_task("coloring", 4)  # 6 edge tokens (0,1) (0,2) (0,3) (1,2) (1,3) (2,3), then 4 vertex slots
    ids = col.relations()
    assert ids[0, 0] == 2 and ids[0, 5] == 0 and ids[0, 3] == 1  # edge with itself, disjoint, sharing vertex 1
    assert ids[0, 6] == 1 + 3 and ids[0, 8] == 0 + 3  # edge (0,1) and slot 0: incident; slot 2: not
    assert ids[6, 6] == 1 + 6 and ids[6, 7] == 6  # slot with itself, two slots


def _pair(relation_bias):
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, priors=PRIORS, net=dataclasses.replace(cfg.net, relation_bias=relation_bias))
    torch.manual_seed(0)
    return cfg, build_net(cfg, get_task("sudoku", 4))


def _transition(net, x):
    h, l = net.initial_state(len(x))
    return net.transition(h, l, net.embed(x))[0]  # u: (B, L, D)


def test_a_zero_bias_reproduces_the_plain_network_and_the_bias_acts_only_through_its_ids():
    (_, plain), (_, biased) = _pair(False), _pair(True)
    missing = biased.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["f_H.blocks.0.mix.rel", "f_L.blocks.0.mix.rel"]  # all else is shared
    x = torch.as_tensor(np.random.default_rng(0).integers(1, 6, (3, 16)))
    with torch.no_grad():
        torch.testing.assert_close(_transition(biased, x), _transition(plain, x), rtol=1e-6, atol=1e-6)
        ids = biased.f_L.blocks[0].mix.rel_ids
        absent = sorted(set(range(int(ids.max()) + 1)) - set(ids.unique().tolist()))
        assert absent == [3]  # same row and column but not box: no such pair of cells
        before = _transition(biased, x)
        biased.f_L.blocks[0].mix.rel[absent] = 5.0  # ids no pair has: nothing changes
        torch.testing.assert_close(_transition(biased, x), before, rtol=0, atol=0)
        biased.f_L.blocks[0].mix.rel[1, 0] = 5.0  # same row only, head 0: the output moves
        assert (_transition(biased, x) - before).abs().max() > 1e-3


def test_the_relation_bias_learns():
    cfg, net = _pair(True)
    x = torch.as_tensor(np.random.default_rng(0).integers(1, 6, (3, 16)))
    u = _transition(net, x)  # (B, L, D), RMS-normalised: project it so the loss depends on its direction
    (u * torch.randn(u.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    grad = net.f_L.blocks[0].mix.rel.grad  # (R, H)
    assert grad[[0, 1, 2, 4, 5, 6, 7]].abs().sum(1).min() > 1e-4 and not grad[3].any()


def test_the_mlp_mixer_refuses_the_bias_and_states_it_off():
    with pytest.raises(ConfigError, match="mixer='attention'"):  # asked for, it would be silently ignored
        NetConfig(relation_bias=True, mixer="mlp")
    cfg = GramConfig(task=TaskConfig(name="sudoku", size=6), net=NetConfig(mixer="mlp"))
    assert config.relation_bias(cfg) is False  # the task's default is on, but not for this mixer
    assert config.resolved(cfg).net.relation_bias is False  # config.json says what the network does
    attention = dataclasses.replace(cfg, net=NetConfig())
    assert config.resolved(attention).net.relation_bias is True


def test_hard_9x9_puzzles_8_queens_cells_and_8_and_10_queens_rows_default_to_the_mlp_mixer_and_the_bias_asks_for_attention():
    hard = TaskConfig(name="sudoku", size=9)  # unique solutions: the mode 9x9 resolves to
    stored = config.resolved(GramConfig(task=hard)).net
    assert (stored.mixer, stored.relation_bias) == ("mlp", False)  # measured to win (docs/recipe.md)
    for other in (TaskConfig(name="sudoku", size=9, mode="generate"), TaskConfig(name="sudoku", size=6)):
        assert config.resolved(GramConfig(task=other)).net.mixer == "attention"  # not measured there
    biased = config.resolved(GramConfig(task=hard, net=NetConfig(relation_bias=True))).net
    assert (biased.mixer, biased.relation_bias) == ("attention", True)  # the bias asks for attention logits
    plain = config.resolved(GramConfig(task=hard, net=NetConfig(mixer="attention"))).net
    assert (plain.mixer, plain.relation_bias) == ("attention", True)  # the run of the default before
    cells = [config.resolved(GramConfig(task=TaskConfig(name="nqueens", size=n))).net.mixer for n in (8, 10)]
    assert cells == ["mlp", "attention"]  # measured on 8-Queens only
    rows = TaskConfig(name="nqueens_rows", size=8)
    assert config.resolved(GramConfig(task=rows, net=NetConfig(mixer="attention"))).net.mixer == "attention"
    rows8 = config.resolved(GramConfig(task=rows))
    assert (rows8.net.mixer, rows8.fit.sample_depth) == ("mlp", 64)  # 8-Queens rows: the MLP, sampled deep
    assert config.resolved(GramConfig(task=TaskConfig(name="nqueens_rows", size=6))).net.mixer == "attention"
    rows10 = config.resolved(GramConfig(task=TaskConfig(name="nqueens_rows", size=10)))
    assert (rows10.net.mixer, rows10.fit.sample_depth) == ("mlp", 64)  # 10-Queens rows: the MLP, sampled deep


def test_a_block_refuses_a_mixer_left_to_the_task():
    for build in (
        lambda: torch_nets.Block(NetConfig(), length=4),
        lambda: uses_relation_bias(NetConfig(), get_task("sudoku", 6)),
    ):
        with pytest.raises(ValueError, match=r"net_in_force \(build_net\(cfg, task\)"):
            build()


def test_config_defaults_and_old_runs():
    attention = NetConfig(mixer="attention")
    assert uses_relation_bias(attention, get_task("sudoku", 9))  # None: the task's default
    assert not uses_relation_bias(attention, get_task("nqueens", 8))
    assert uses_relation_bias(attention, get_task("coloring_rows", 10))  # vertex tokens: adjacency per input
    assert not uses_relation_bias(NetConfig(mixer="attention", relation_bias=False), get_task("coloring_rows", 10))
    assert uses_relation_bias(NetConfig(mixer="attention", relation_bias=True), get_task("nqueens", 8))
    assert not uses_relation_bias(NetConfig(mixer="mlp"), get_task("sudoku", 4))  # no logits to bias
    with pytest.raises(ConfigError, match="relation_bias"):
        NetConfig(relation_bias="yes")
    old = to_dict(NetConfig())
    del old["relation_bias"]  # a config.json written before the field existed
    assert from_dict(NetConfig, old).relation_bias is False  # resumes as it was trained


@pytest.mark.parametrize(
    ("task", "fit", "split", "augmented"),
    [
        (TaskConfig(name="sudoku", size=6), FitConfig(), "orbit", True),  # the default: leak-free augmentation
        (TaskConfig(name="sudoku", size=4, mode="multi"), FitConfig(), "orbit", True),
        (TaskConfig(name="sudoku", size=4), FitConfig(), "input", False),  # generation: no input to hold out
        (TaskConfig(name="nqueens", size=8), FitConfig(), "input", False),  # the paper's protocol
        (TaskConfig(name="nqueens", size=8, split="orbit"), FitConfig(), "orbit", True),
        (TaskConfig(name="sudoku", size=6), FitConfig(augment=False), "orbit", False),
        (TaskConfig(name="sudoku", size=6, split="input"), FitConfig(), "input", False),  # paper protocol, no leak
    ],
)
def test_augmentation_follows_the_split_unless_set(task, fit, split, augmented):
    cfg = GramConfig(task=task, fit=fit)
    assert task.resolved().split == split and augments(cfg) is augmented


def test_vertex_token_relations_come_from_the_input_graph():
    """coloring_rows: ids per input (1 itself, 2 adjacent, 0 otherwise) in numpy, torch and jax
    alike; with the bias the network reads adjacency through them, and the prefix keeps its id."""
    import jax.numpy as jnp

    task = get_task("coloring_rows", 5)
    rng = np.random.default_rng(0)
    adj = np.triu(rng.random((3, 5, 5)) < 0.5, 1)
    adj = adj | adj.transpose(0, 2, 1)  # (B, n, n) symmetric, no self-loops
    x = 1 + adj.astype(np.int64) @ (1 << np.arange(5))  # (B, n): 1 + neighbour mask
    expected = np.where(np.eye(5, dtype=bool), 1, np.where(adj, 2, 0))  # (B, n, n)
    np.testing.assert_array_equal(task.input_relations(x, np), expected)
    np.testing.assert_array_equal(task.input_relations(torch.as_tensor(x), torch).numpy(), expected)
    np.testing.assert_array_equal(np.asarray(task.input_relations(jnp.asarray(x), jnp)), expected)
    assert task.num_relations() == 3 and relation_ids(task, 2).max() == 3  # prefix pairs: id 3

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, priors=PRIORS, net=dataclasses.replace(cfg.net, relation_bias=True, prefix_tokens=1))
    torch.manual_seed(0)
    net = build_net(cfg, task)
    xt = torch.as_tensor(x)
    e = net.embed(xt)
    assert e.rel.shape == (3, 6, 6) and (e.rel[:, 0] == 3).all() and (e.rel[:, 1:, 1:].numpy() == expected).all()
    with torch.no_grad():
        before = _transition(net, xt)
        net.f_L.blocks[0].mix.rel[2, 0] = 5.0  # the "adjacent" id, head 0: the output moves
        assert (_transition(net, xt) - before).abs().max() > 1e-3
    plain = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, relation_bias=False))
    assert build_net(plain, task).embed(xt).rel is None  # no bias: no ids carried


@pytest.mark.parametrize("name", sorted(TASKS))
def test_what_config_json_records_is_what_the_network_builds(name):
    task = get_task(name, SIZES[name])
    for asked in ({}, {"relation_bias": False}, {"relation_bias": True}, {"mixer": "mlp"}):
        net = NetConfig(prefix_tokens=1, **asked)  # ARC's puzzle embedding needs a prefix token
        cfg = GramConfig(task=TaskConfig(name=name, size=SIZES[name]), net=net)
        recorded = config.resolved(cfg).net.relation_bias  # what config.json says
        built = (
            getattr(build_net(dataclasses.replace(cfg, priors=PRIORS), task).f_L.blocks[0].mix, "rel", None) is not None
        )  # what the network has
        assert recorded == uses_relation_bias(config.net_in_force(cfg), task) == built, (name, net)
