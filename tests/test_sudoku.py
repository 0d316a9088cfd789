import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gram_ppl import PuzzleError, TaskConfig, build_dataset
from gram_ppl.tasks import Sudoku
from gram_ppl.tasks.sudoku import BOXES


def naive_conflicts(s, x, y):
    br, bc = BOXES[s]
    grid = np.asarray(y).reshape(s, s)
    units = [[(r, c) for c in range(s)] for r in range(s)] + [[(r, c) for r in range(s)] for c in range(s)]
    units += [
        [(r, c) for r in range(R, R + br) for c in range(C, C + bc)] for R in range(0, s, br) for C in range(0, s, bc)
    ]
    repeats = sum(grid[a] == grid[b] and 2 <= grid[a] <= s + 1 for u in units for a, b in itertools.combinations(u, 2))
    not_digit = sum(1 for t in np.asarray(y) if not 2 <= t <= s + 1)
    changed = sum(1 for a, b in zip(x, y, strict=True) if a >= 2 and a != b)
    return repeats + not_digit + changed


def naive_count(task, digits, limit=50):
    """Plain backtracking without propagation, as an independent check of the solver."""
    s = task.size
    grid = list(digits)
    out = []

    def ok(i, d):
        r, c = divmod(i, s)
        br, bc = task.box
        R, C = r - r % br, c - c % bc
        peers = [r * s + k for k in range(s)] + [k * s + c for k in range(s)]
        peers += [(R + a) * s + C + b for a in range(br) for b in range(bc)]
        return all(grid[p] != d for p in peers if p != i)

    def rec():
        if len(out) >= limit:
            return
        try:
            i = grid.index(0)
        except ValueError:
            out.append(list(grid))
            return
        for d in range(1, s + 1):
            if ok(i, d):
                grid[i] = d
                rec()
                grid[i] = 0

    rec()
    return out


def test_there_are_288_four_by_four_grids_all_valid():
    task = Sudoku(4)
    blank = np.ones(16, dtype=np.uint8)
    grids = task.solutions(blank)
    assert len(grids) == 288 == len(np.unique(grids, axis=0))
    assert task.is_valid(blank, grids).all()


@given(size=st.sampled_from([4, 6]), seed=st.integers(0, 10**6), blanks=st.integers(0, 22))
def test_solver_agrees_with_plain_backtracking(size, seed, blanks):
    task = Sudoku(size)
    rng = np.random.default_rng(seed)
    puzzle = task.random_grid(rng)
    puzzle[rng.permutation(size * size)[:blanks]] = 0
    expected = sorted(naive_count(task, puzzle.tolist(), limit=300))
    assume(len(expected) < 300)  # the naive count is complete
    got = task.solve(puzzle)[0].tolist()
    assert sorted(got) == expected
    assert task.solve(puzzle, limit=7)[0].tolist() == got[:7]  # a limit takes a prefix of a fixed order


@given(size=st.sampled_from([4, 6, 9]), data=st.data())
def test_conflicts_agree_with_pairwise_check(size, data):
    task = Sudoku(size)
    n = size * size
    y = np.array(data.draw(st.lists(st.integers(0, size + 2), min_size=n, max_size=n)), dtype=np.uint8)
    x = np.array(data.draw(st.lists(st.sampled_from([1, 1, 1, 2, size + 1]), min_size=n, max_size=n)), dtype=np.uint8)
    assert int(task.conflicts(x, y)) == naive_conflicts(size, x, y)


@pytest.mark.parametrize("size", [4, 6, 9])
def test_random_grids_and_symmetries_stay_valid(size, rng):
    task = Sudoku(size)
    blank = np.ones(size * size, dtype=np.uint8)
    grids = np.array([task.random_grid(rng) for _ in range(5)])
    assert task.is_valid(blank, grids + 1).all()
    assert len({g.tobytes() for g in grids}) == 5
    moved = task.random_symmetry(rng)(grids)
    assert task.is_valid(blank, moved + 1).all()


def test_symmetry_maps_a_puzzle_and_its_solutions_alike(rng):
    task = Sudoku(6)
    puzzle = task.random_grid(rng)
    puzzle[rng.permutation(36)[:24]] = 0
    sols = task.solve(puzzle)[0]
    f = task.random_symmetry(rng)
    moved = task.solve(f(puzzle))[0]
    assert sorted(map(tuple, f(sols))) == sorted(map(tuple, moved))
    assert (f(puzzle) == 0).sum() == 24


def test_unique_puzzles_are_unique_and_respect_the_clue_target(rng):
    task = Sudoku(9)
    grid = task.random_grid(rng)
    puzzle, effort = task.unique_puzzle(grid, rng, clues=30)
    assert np.count_nonzero(puzzle) == 30
    sols, effort_again = task.solve(puzzle, limit=2)
    assert len(sols) == 1 and np.array_equal(sols[0], grid) and effort == effort_again


def test_minimal_puzzles_cannot_lose_another_clue(rng):
    task = Sudoku(6)
    puzzle, _ = task.unique_puzzle(task.random_grid(rng), rng, clues=0)
    for i in np.flatnonzero(puzzle):
        p = puzzle.copy()
        p[i] = 0
        assert len(task.solve(p, limit=2)[0]) == 2


def test_effort_is_zero_when_singles_suffice():
    task = Sudoku(4)
    grid = task.solutions(np.ones(16, dtype=np.uint8))[0].astype(np.int64) - 1
    puzzle = grid.copy()
    puzzle[0] = 0  # one blank: a naked single
    assert task.solve(puzzle)[1] == 0
    assert task.solve(np.zeros(16, dtype=np.int64))[1] > 0


def test_duplicate_givens_are_rejected_naming_the_unit():
    task = Sudoku(9)
    x = task.parse_puzzle("55" + "." * 79)
    with pytest.raises(PuzzleError, match="digit 5 appears twice in row 1"):
        task.check_givens(x)
    x = task.parse_puzzle("5" + "." * 8 + "5" + "." * 71)
    with pytest.raises(PuzzleError, match="digit 5 appears twice in column 1"):
        task.check_givens(x)


@pytest.mark.parametrize(
    "line, reason",
    [("." * 80, "expected 81 characters"), ("." * 80 + "x", "unexpected character 'x' at column 81")],
)
def test_parse_errors(line, reason):
    with pytest.raises(PuzzleError, match=reason):
        Sudoku(9).parse_puzzle(line)


def test_zero_and_dot_both_mean_blank_and_format_round_trips():
    task = Sudoku(4)
    a = task.parse_puzzle("1.3.0000........")
    b = task.parse_puzzle("1030............")
    np.testing.assert_array_equal(a, b)
    assert task.format_puzzle(a) == "1.3............."
    with pytest.raises(PuzzleError, match="unexpected character '5'"):
        task.parse_puzzle("5" + "." * 15)


def test_generation_split_holds_out_whole_grids():
    ds = build_dataset(TaskConfig(name="sudoku", size=4))
    assert (len(ds.train), len(ds.test)) == (230, 58)
    assert not {r.tobytes() for r in ds.train.y} & {r.tobytes() for r in ds.test.y}
    assert (ds.train.x == 1).all() and (ds.test.num_solutions == 288).all()


@pytest.mark.parametrize("mode", ["unique", "multi"])
def test_completion_sets(mode):
    ds = build_dataset(TaskConfig(name="sudoku", size=6, mode=mode, num_train=30, num_test=10, seed=3))
    task = ds.task
    assert task.is_valid(ds.train.x, ds.train.y).all() and task.is_valid(ds.test.x, ds.test.y).all()
    assert not {r.tobytes() for r in ds.train.x} & {r.tobytes() for r in ds.test.x}
    for x, n in zip(ds.test.x, ds.test.num_solutions, strict=True):
        assert len(task.solutions(x)) == n
    if mode == "unique":
        assert (ds.test.num_solutions == 1).all() and ((ds.test.x > 1).sum(1) <= 12).all()
    else:
        assert ((ds.test.num_solutions >= 2) & (ds.test.num_solutions <= 32)).all()
        assert ((ds.test.x > 1).sum(1) == 12).all()
        inputs, counts = np.unique(ds.train.x, axis=0, return_counts=True)
        assert len(inputs) == 30  # every solution of each training puzzle is a training pair
        for x, n in zip(inputs, counts, strict=True):
            assert n == len(task.solutions(x))


def test_min_effort_keeps_only_puzzles_that_need_search():
    cfg = TaskConfig(name="sudoku", size=9, num_train=3, num_test=1, min_effort=2, seed=5)
    ds = build_dataset(cfg)
    task = ds.task
    for x in np.concatenate([ds.train.x, ds.test.x]):
        assert task.solve(x.astype(np.int64) - 1, limit=2)[1] >= 2


@pytest.mark.parametrize("size", [4, 6])
def test_augmentation_keeps_blanks_validity_and_solution_counts(size, rng):
    ds = build_dataset(TaskConfig(name="sudoku", size=size, mode="multi", num_train=10, num_test=2))
    task = ds.task
    x, y = task.augment(rng)(ds.train.x, ds.train.y)
    assert ((x == 1).sum(1) == (ds.train.x == 1).sum(1)).all() and task.is_valid(x, y).all()
    assert [len(task.solutions(a)) for a in x[:5]] == [len(task.solutions(a)) for a in ds.train.x[:5]]


def test_the_geometric_group_has_its_order_and_keeps_validity():
    for s, order in ((4, 128), (6, 3456)):
        task = Sudoku(s)
        maps = task.geometric_maps()
        assert maps.shape == (order, s * s) and len({m.tobytes() for m in maps}) == order
        grids = task.solve(np.zeros(s * s, dtype=np.int64), limit=3)[0]  # (3, s*s) digits
        assert task.is_valid(np.ones(s * s, dtype=np.int64), grids[:, maps] + 1).all()


def test_orbit_keys_are_exact_on_4x4_grids_and_invariant_elsewhere(rng):
    task = Sudoku(4)
    grids = task.solve(np.zeros(16, dtype=np.int64))[0]  # all 288 complete grids
    assert len(set(task.orbit_keys(grids))) == 2  # the two essentially different 4x4 Sudoku grids
    for s in (6, 9):
        task = Sudoku(s)
        puzzle, _ = task.unique_puzzle(task.random_grid(rng), rng, clues=0)
        images = np.array([task.random_symmetry(rng)(puzzle) for _ in range(6)])
        assert len(set(task.orbit_keys(np.concatenate([puzzle[None], images])))) == 1
        other, _ = task.unique_puzzle(task.random_grid(rng), rng, clues=0)
        assert task.orbit_keys(other[None]) != task.orbit_keys(puzzle[None])


@pytest.mark.parametrize("mode", ["multi", "unique"])
def test_orbit_split_holds_out_every_symmetric_image(mode):
    """4x4: every image of every test input under the whole group (128 geometric maps x 24
    relabellings of the digits) is absent from training, under the default protocol (split None:
    the orbit split for Sudoku puzzles) and the orbit split; the paper's input split leaks them."""
    task = Sudoku(4)
    maps, relabel = task.geometric_maps(), np.array([(0, *p) for p in itertools.permutations(range(1, 5))])

    def orbit(x):  # x (16,) tokens -> the bytes of every image
        geo = (x.astype(np.int64) - 1)[maps]  # (128, 16) digits, blank 0
        return {row.tobytes() for r in relabel for row in (r[geo] + 1).astype(np.uint8)}  # 128 x 24 boards

    leaks = {}
    for split in (None, "input", "orbit"):
        ds = build_dataset(TaskConfig(name="sudoku", size=4, mode=mode, split=split))
        train = {r.tobytes() for r in ds.train.x}
        leaks[split] = sum(bool(orbit(x) & train) for x in ds.test.x)
        assert 0.12 < len(ds.test) / (len(ds.test) + len(train)) < 0.35
        assert (ds.test.num_solutions == [len(task.solutions(x)) for x in ds.test.x]).all()
    assert leaks[None] == leaks["orbit"] == 0 and leaks["input"] > 10, leaks


def _peaked(task, board, confidence):
    """Log-probabilities (s*s, V) whose most likely digit of cell i is board[i] (tokens), with
    margin confidence[i] over the other digits."""
    logp = np.zeros((task.y_len, task.y_vocab))
    logp[np.arange(task.y_len), board] = confidence
    return logp


@pytest.mark.parametrize("size", [4, 6, 9])
def test_repair_leaves_a_valid_board_and_fixes_one_wrong_cell(size):
    """Task.repair (the prior-path "repair" target): a drawn board that is valid comes back
    unchanged; one wrong cell, the least confident, is put right and nothing else moves."""
    t, rng = Sudoku(size), np.random.default_rng(size)
    x = np.ones(t.x_len, np.int64)  # blank input: generation
    grid = t.random_grid(rng) + 1  # (s*s,) tokens
    conf = rng.uniform(1, 2, t.y_len)
    np.testing.assert_array_equal(t.repair(x, _peaked(t, grid, conf)), grid)
    drawn, i = grid.copy(), 5
    drawn[i] = grid[(i + 1) % t.y_len] if grid[(i + 1) % t.y_len] != grid[i] else grid[(i + 2) % t.y_len]
    assert t.conflicts(x, drawn) > 0
    conf[i] = 0.5  # the wrong cell is the least sure
    np.testing.assert_array_equal(t.repair(x, _peaked(t, drawn, conf)), grid)


@pytest.mark.parametrize("size", [4, 6])
def test_repair_keeps_the_givens_and_is_valid_from_any_scores(size, monkeypatch):
    """From random scores, with or without givens, every repaired board is valid and keeps the
    givens; some draws need the fallback that drops kept cells (a consistent set with no completion)."""
    t, rng = Sudoku(size), np.random.default_rng(0)
    empty = []
    solve = t.solve

    def counting(*a, **k):
        out = solve(*a, **k)
        empty.append(len(out[0]) == 0)
        return out

    monkeypatch.setattr(t, "solve", counting)
    for k in range(40):
        grid = t.random_grid(rng)  # digits
        x = np.where(rng.random(t.x_len) < (0.3 if k % 2 else 0.0), grid + 1, 1)  # (s*s,) tokens, 1 blank
        board = t.repair(x, rng.normal(size=(t.y_len, t.y_vocab)))
        assert t.conflicts(x, board) == 0
    assert any(empty)


def test_repair_refuses_givens_without_a_solution():
    t = Sudoku(4)
    x = np.ones(16, np.int64)
    x[[0, 1]] = 2  # digit 1 twice in the first row
    with pytest.raises(PuzzleError, match="no solution"):
        t.repair(x, np.zeros((16, t.y_vocab)))
