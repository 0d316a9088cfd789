import dataclasses
import json

import numpy as np
import pytest
import torch
from tiny import tiny_config

from gram_ppl import TaskConfig
from gram_ppl.cli import main
from gram_ppl.inference.run import fit, load_run
from gram_ppl.inference.sampling import rollout, select
from gram_ppl.tasks import get_task

QUIET = dict(progress=False, eval_puzzles=8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    fit(tiny_config(), root / "gram", steps=3, **QUIET)
    fit(tiny_config(variant="deterministic"), root / "det", steps=3, **QUIET)
    return root


def puzzles_file(run, path, n=4):
    cfg, _, data, _ = load_run(run)
    task = data.task
    path.write_text("".join(task.format_puzzle(x) + "\n" for x in data.test.x[:n]))
    return task


def test_sample_writes_json_lines_whose_flags_agree_with_the_checker(runs, tmp_path, capsys):
    task = puzzles_file(runs / "gram", tmp_path / "p.txt")
    out = tmp_path / "s.jsonl"
    assert (
        main(
            [
                "sample",
                str(runs / "gram"),
                "--puzzles",
                str(tmp_path / "p.txt"),
                "--num-samples",
                "6",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert set(row) == {"puzzle", "samples", "valid", "selected", "selected_valid", "halt_step", "lprm"}
        x = task.parse_puzzle(row["puzzle"])
        ys = np.stack([task.parse_solution(s) for s in row["samples"]])
        assert task.is_valid(x, ys).tolist() == row["valid"]
        assert row["selected_valid"] == row["valid"][row["samples"].index(row["selected"])]
        assert row["selected"] in row["samples"] and len(row["lprm"]) == 6 and set(row["halt_step"]) == {2}
    picked = tmp_path / "checked.jsonl"
    argv = ["sample", str(runs / "gram"), "--puzzles", str(tmp_path / "p.txt"), "--num-samples", "6"]
    assert main([*argv, "--select", "checker", "--out", str(picked)]) == 0
    for row in map(json.loads, picked.read_text().splitlines()):  # a valid sample wherever there is one
        assert row["valid"][row["samples"].index(row["selected"])] == row["selected_valid"] == any(row["valid"])
    summary = capsys.readouterr().err.strip().splitlines()[-1]  # the checker's pick reaches the bound
    some = sum(any(r["valid"]) for r in map(json.loads, picked.read_text().splitlines())) / 4
    assert summary.endswith(f"the checker pick valid on {some:.1%} of puzzles, some sample on {some:.1%}")
    assert main([*argv, "--select", "none", "--out", str(picked)]) == 0
    assert {json.loads(line)["selected_valid"] for line in picked.read_text().splitlines()} == {None}
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("% valid")  # no pick, no pick's share


def test_the_sample_summary_counts_puzzles_whose_pick_is_valid():
    from gram_ppl.cli.runs import describe_samples

    rows = [{"valid": [True, False], "selected_valid": True}, {"valid": [False, True], "selected_valid": False},
            {"valid": [False, False], "selected_valid": False}, {"valid": [True, True], "selected_valid": True}]  # fmt: skip
    line = describe_samples(rows, 2, "vote")
    assert (
        line == "4 puzzles, 2 samples each: 50.0% valid; the vote pick valid on 50.0% of puzzles, some sample on 75.0%"
    )
    assert describe_samples([{**r, "selected_valid": None} for r in rows], 2, "none").endswith(
        "2 samples each: 50.0% valid"
    )
    assert describe_samples([], 2, "vote") == "0 puzzles, 2 samples each: nan% valid"


def test_deterministic_samples_are_identical(runs, tmp_path):
    puzzles_file(runs / "det", tmp_path / "p.txt")
    out = tmp_path / "s.jsonl"
    assert (
        main(
            ["sample", str(runs / "det"), "--puzzles", str(tmp_path / "p.txt"), "--num-samples", "5", "--out", str(out)]
        )
        == 0
    )
    for line in out.read_text().splitlines():
        assert len(set(json.loads(line)["samples"])) == 1


def test_sample_rejects_bad_lines_like_solve(runs, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("Q" * 25 + "\n")
    args = ["sample", str(runs / "gram"), "--puzzles", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert ":1: queens at row 1 col 1 and row 1 col 2 attack each other" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_depth_beyond_training_and_halting(runs):
    cfg, net, data, mod = load_run(runs / "gram")
    x = data.test.x[:3]
    deep = rollout(mod, net, cfg, x, num_samples=4, depth=7)
    assert deep.boards.shape == (4, 3, 25) and (deep.halt_step == 7).all()
    with torch.no_grad():
        net.halt_head.bias.fill_(100.0)  # every trajectory wants to halt at once
    early = rollout(mod, net, cfg, x, num_samples=4, depth=7, halt=True)
    assert (early.halt_step == 1).all()


def test_vote_and_lprm_selection():
    task = get_task("coloring", 3)
    boards = np.array([[[3, 4, 5]], [[4, 3, 5]], [[3, 3, 4]]])  # (N=3, B=1, 3): the first two are one colouring
    value = np.array([[0.1], [0.2], [0.9]])
    assert select(task, boards, value, "vote")[0].tolist() == [3, 4, 5]
    assert select(task, boards, value, "lprm")[0].tolist() == [3, 3, 4]
    assert select(task, boards, value, "none") is None


def test_the_checkers_pick_prefers_valid_boards_and_needs_no_answer():
    task = get_task("sudoku", 4)
    grid = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]) + 1  # tokens: digit d is d + 1
    x = grid.copy()
    x[[0, 5, 10, 15]] = 1  # four blanks; one solution
    wrong = grid.copy()
    wrong[[0, 5]] = wrong[[5, 0]]  # the blanks swapped: breaks rows and columns
    boards = np.stack([wrong, wrong, grid, wrong])[:, None]  # (N=4, B=1, 16): the vote is wrong
    value = np.zeros((4, 1))
    assert (select(task, boards, value, "vote")[0] == wrong).all()
    valid = task.is_valid(x[None, None], boards)  # (N, B): checked once by the caller
    assert valid[:, 0].tolist() == [False, False, True, False]
    assert (select(task, boards, value, "checker", valid)[0] == grid).all()  # the one valid board
    other = grid.copy()
    other[[10, 15]] = other[[15, 10]]  # another board that breaks the rules
    none_valid = np.stack([wrong, other, wrong])[:, None]  # (3, 1, 16)
    none_ok = task.is_valid(x[None, None], none_valid)  # (3, 1), all False
    assert (select(task, none_valid, value[:3], "checker", none_ok)[0] == wrong).all()  # falls back to the vote
    with pytest.raises(ValueError, match="needs the validity"):
        select(task, boards, value, "checker")
    with pytest.raises(ValueError, match="needs the validity"):
        select(task, boards, value, "checker", valid[:2])  # a mask for fewer samples than the boards
    with pytest.raises(ValueError, match="no checker"):
        select(get_task("digits", 8), np.zeros((2, 1, 64), np.int64), np.zeros((2, 1)), "checker", np.ones((2, 1)))


def test_generate_unconditional_boards(tmp_path, capsys):
    cfg = dataclasses.replace(tiny_config(), task=TaskConfig(name="sudoku", size=4))
    fit(cfg, tmp_path / "gen", steps=2, **QUIET)
    out = tmp_path / "boards.txt"
    assert main(["generate", str(tmp_path / "gen"), "--num", "7", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    task = get_task("sudoku", 4)
    assert len(lines) == 7 and all(len(task.parse_solution(line)) == 16 for line in lines)
    err = capsys.readouterr().err
    # 4·N_sup at τ = 1: Sudoku generation trains with the anchored prior path by default
    assert "depth 8, temperature 1: 7 samples:" in err
    assert "copy a training grid" in err and "held-out grids generated" in err
    args = ["generate", str(tmp_path / "gen"), "--num", "3", "--depth", "5", "--temperature", "1.5", "--out", str(out)]
    assert main(args) == 0
    assert "depth 5, temperature 1.5: 3 samples:" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "gen"), "--num-samples", "3", "--puzzles", "2"]) == 0
    head = json.loads(capsys.readouterr().out)
    gen = head["generation"]
    assert gen["samples"] == 6 and 0 <= gen["valid"] <= 1 and gen["held_out"] == 58
    assert head["temperature"] == 1.0 and head["depth"] == 8  # the run's, recorded
    assert main(["evaluate", str(tmp_path / "gen"), "--num-samples", "5"]) == 0  # not 5 for each of 58 blank inputs
    out, err = capsys.readouterr()
    assert json.loads(out)["generation"]["samples"] == 5 and json.loads(out)["puzzles"] == 1
    assert "5 boards generated from the blank input" in err

    from gram_ppl.inference.run import load_run
    from gram_ppl.inference.sampling import generate

    g = generate(load_run(tmp_path / "gen"), 7)  # the API: boards and the checker's verdict on each
    assert g.boards.shape == (7, 16) and g.valid.shape == (7,) and g.valid.dtype == bool
    assert g.valid.tolist() == [bool(task.is_valid(np.ones(16, np.uint8), b)) for b in g.boards]
    assert g.distinct_valid == len({b.tobytes() for b in g.boards[g.valid]}) and 0 <= g.share_valid <= 1


def test_generation_report_counts_distinct_copies_and_held_out_grids():
    from gram_ppl.inference.evaluate import describe_generation, generation_report

    a, b, c = np.array([1, 2]), np.array([2, 1]), np.array([3, 3])
    boards = np.stack([a, a, b, c])
    r = generation_report(boards, np.array([True, True, True, False]), train_y=np.stack([a]), test_y=np.stack([b, c]))
    assert r == {"samples": 4, "valid": 0.75, "distinct_valid": 2, "distinct_share": 2 / 3, "copies": 2 / 3,
                 "copy_count": 2, "held_out_generated": 1, "held_out": 2}  # fmt: skip
    r = generation_report(boards, np.ones(4, bool), np.stack([a]), np.stack([b]), conflicts=np.array([0, 0, 1, 3]))
    assert r["conflicts_mean"] == 1.0 and "1.0 conflicts per sample" in describe_generation(r)
    assert "uniform" not in describe_generation(r)  # no grid count: no reference


def test_generation_report_states_what_a_uniform_sampler_would_give():
    """With the number of all grids: the copies of a training grid and the distinct grids that
    k uniform draws give on average (k·T/G and G·(1 − (1 − 1/G)^k)), checked by simulation."""
    from gram_ppl.inference.evaluate import describe_generation, generation_report
    from gram_ppl.tasks import get_task

    assert get_task("sudoku", 6).grid_count == 28_200_960 and get_task("nqueens", 8).grid_count is None
    grids = np.arange(10)[:, None] * np.ones((1, 3), np.int64)  # 10 "grids", 2 of them trained on
    rng = np.random.default_rng(0)
    draws = grids[rng.integers(0, 10, size=(2000, 12))]  # 2000 runs of 12 uniform draws
    copies = [(d[:, 0] < 2).sum() for d in draws]
    distinct = [len(set(d[:, 0].tolist())) for d in draws]
    r = generation_report(draws[0], np.ones(12, bool), grids[:2], grids[2:4], grid_count=10)
    assert r["copies_uniform"] == pytest.approx(12 * 2 / 10) == pytest.approx(np.mean(copies), abs=0.1)
    assert r["distinct_uniform"] == pytest.approx(10 * (1 - 0.9**12)) == pytest.approx(np.mean(distinct), abs=0.1)
    assert r["copy_count"] == copies[0] and r["grids"] == 10
    line = describe_generation(generation_report(draws[0], np.ones(12, bool), grids[:2], grids[2:4], grid_count=10))
    assert f"uniform over all 10 grids would draw {10 * (1 - 0.9**12):,.1f} distinct" in line
    assert f"copy a training grid 2.40 times on average (here {copies[0]})" in line
    six = generation_report(np.zeros((1942, 36), np.int64), np.ones(1942, bool), np.ones((10_000, 36)), np.ones((1, 36)),
                            grid_count=28_200_960)  # fmt: skip
    assert six["copies_uniform"] == pytest.approx(1942 * 1 / 28_200_960)  # one distinct training grid here
