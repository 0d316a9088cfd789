import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gram_ppl import PuzzleError, TaskConfig, build_dataset
from gram_ppl.tasks import NQueens

KNOWN = {4: 2, 5: 10, 6: 4, 7: 40, 8: 92, 9: 352, 10: 724, 11: 2680, 12: 14200}


def empty(n):
    return np.full(n * n, 1, dtype=np.uint8)


def naive_conflicts(n, x, y):
    """Pairwise attack check written independently of the vectorised one."""
    queens = [divmod(i, n) for i in range(n * n) if y[i] == 2]
    attacks = sum(
        r1 == r2 or c1 == c2 or abs(r1 - r2) == abs(c1 - c2) for (r1, c1), (r2, c2) in itertools.combinations(queens, 2)
    )
    missing = max(n - len(queens), 0)
    dropped = sum(1 for i in range(n * n) if x[i] == 2 and y[i] != 2)
    bad = sum(1 for t in y if t not in (1, 2))
    return attacks + missing + dropped + bad


@pytest.mark.parametrize("n", sorted(KNOWN))
def test_solution_counts_match_known_values(n):
    task = NQueens(n)
    sols = task.solutions(empty(n))
    assert len(sols) == KNOWN[n]
    assert len(np.unique(sols, axis=0)) == KNOWN[n]
    assert task.is_valid(empty(n), sols).all()


def test_solutions_are_sorted_and_limit_takes_a_prefix():
    task = NQueens(8)
    sols = task.solutions(empty(8))
    cols = np.argmax(sols.reshape(-1, 8, 8) == 2, axis=2)
    assert [tuple(c) for c in cols] == sorted(tuple(c) for c in cols)
    np.testing.assert_array_equal(task.solutions(empty(8), limit=5), sols[:5])


@given(n=st.integers(4, 8), data=st.data())
def test_completions_agree_with_filtering_all_solutions(n, data):
    task = NQueens(n)
    sols = task.solutions(empty(n))
    src = sols[data.draw(st.integers(0, len(sols) - 1))]
    rows = data.draw(st.sets(st.integers(0, n - 1)))
    x = src.reshape(n, n).copy()
    x[sorted(rows)] = 1
    x = x.reshape(-1)
    expected = sols[((sols == 2) | (x != 2)).all(1)]
    np.testing.assert_array_equal(task.solutions(x), expected)


@given(n=st.integers(4, 7), data=st.data())
def test_conflicts_agree_with_pairwise_check(n, data):
    task = NQueens(n)
    y = np.array(data.draw(st.lists(st.sampled_from([0, 1, 2, 2]), min_size=n * n, max_size=n * n)), dtype=np.uint8)
    x = np.array(data.draw(st.lists(st.sampled_from([1, 1, 2]), min_size=n * n, max_size=n * n)), dtype=np.uint8)
    assert int(task.conflicts(x, y)) == naive_conflicts(n, x, y)
    assert bool(task.is_valid(x, y)) == (naive_conflicts(n, x, y) == 0)


def test_checkers_broadcast_over_batches():
    task = NQueens(6)
    sols = task.solutions(empty(6))  # (4, 36)
    assert task.conflicts(sols[:, None], sols[None]).shape == (4, 4)
    # a board whose givens are another solution's queens is not valid for it
    assert np.array_equal(task.is_valid(sols[:, None], sols[None]), np.eye(4, dtype=bool))


def test_attacking_givens_are_rejected_with_positions():
    task = NQueens(8)
    x = empty(8)
    x[[0, 9]] = 2  # (1,1) and (2,2) share a diagonal
    with pytest.raises(PuzzleError, match="row 1 col 1 and row 2 col 2 attack"):
        task.check_givens(x)
    with pytest.raises(PuzzleError, match="attack"):
        task.solutions(x)


def test_consistent_givens_without_completion_give_no_solutions():
    task = NQueens(4)
    x = empty(4)
    x[0] = 2  # a queen in a corner of a 4x4 board cannot be completed
    assert task.solutions(x).shape == (0, 16)


@pytest.mark.parametrize(
    "line, reason",
    [("." * 63, "expected 64 characters"), ("." * 63 + "q", "unexpected character 'q' at column 64")],
)
def test_parse_errors_say_what_is_wrong(line, reason):
    with pytest.raises(PuzzleError, match=reason):
        NQueens(8).parse_puzzle(line)


def test_text_format_round_trips():
    task = NQueens(8)
    y = task.solutions(empty(8))[0]
    line = task.format_solution(y)
    assert set(line) == {".", "Q"} and len(line) == 64
    np.testing.assert_array_equal(task.parse_solution(line), y)


def test_size_out_of_range_is_refused():
    with pytest.raises(ValueError, match="N-Queens size must be one of"):
        NQueens(13)


def test_paper_protocol_for_eight_queens():
    ds = build_dataset(TaskConfig(name="nqueens", size=8))
    task = ds.task
    train_inputs = {r.tobytes() for r in ds.train.x}
    test_inputs = {r.tobytes() for r in ds.test.x}
    assert len(train_inputs) + len(test_inputs) == 5148  # unique inputs over 92 solutions x {5,6,7} removed
    assert not train_inputs & test_inputs
    assert len(ds.test) == round(0.15 * 5148)
    assert 92 * 92 - len(ds.train) == sum(  # every (input, source) pair of a train input is kept
        1 for s in task.solutions(empty(8)) for k in (5, 6, 7) for rows in itertools.combinations(range(8), k)
        if _remove(s, rows).tobytes() in test_inputs
    )  # fmt: skip
    queens = (ds.train.x == 2).sum(1)
    assert set(queens.tolist()) == {1, 2, 3}
    assert task.is_valid(ds.train.x, ds.train.y).all() and task.is_valid(ds.test.x, ds.test.y).all()
    for i in range(0, len(ds.test), 97):
        assert ds.test.num_solutions[i] == len(task.solutions(ds.test.x[i]))


def test_one_target_per_input_keeps_the_split():
    all_pairs = build_dataset(TaskConfig(name="nqueens", size=8))
    one = build_dataset(TaskConfig(name="nqueens", size=8, targets="one"))
    assert len(one.train) == len(np.unique(all_pairs.train.x, axis=0)) < len(all_pairs.train)
    np.testing.assert_array_equal(one.test.x, all_pairs.test.x)


def _remove(solution, rows):
    board = solution.reshape(8, 8).copy()
    board[list(rows)] = 1
    return board.reshape(-1)


def test_augmentation_maps_puzzles_and_solutions_by_board_symmetries(rng):
    task = NQueens(6)
    sols = task.solutions(empty(6))
    seen = set()
    for _ in range(40):
        x, y = task.augment(rng)(sols, sols)
        assert task.is_valid(x, y).all()
        assert {r.tobytes() for r in y} == {r.tobytes() for r in sols}  # the solution set is closed under D4
        seen.add(y.tobytes())
    assert len(seen) > 1


def test_orbit_split_holds_out_every_symmetric_image(rng):
    ds = build_dataset(TaskConfig(name="nqueens", size=8, split="orbit"))
    task = ds.task
    train = {r.tobytes() for r in ds.train.x}
    for x in ds.test.x[::7]:
        for _ in range(8):
            image, _ = task.augment(rng)(x, x)
            assert image.tobytes() not in train
    share = len(ds.test) / (len(ds.test) + len(np.unique(ds.train.x, axis=0)))
    assert 0.1 < share < 0.2


def test_row_encoding_is_the_same_task_in_n_tokens():
    from gram_ppl import TaskConfig, build_dataset
    from gram_ppl.tasks import get_task

    cells = build_dataset(TaskConfig(name="nqueens", size=6))
    rows = build_dataset(TaskConfig(name="nqueens_rows", size=6))
    task = rows.task
    assert task.x_len == task.y_len == 6 and task.x_vocab == 8
    for a, b in ((cells.train, rows.train), (cells.test, rows.test)):  # the same puzzles, counts and order
        assert (task.to_cells(b.x) == a.x).all() and (task.to_cells(b.y) == a.y).all()
        assert (a.num_solutions == b.num_solutions).all()
        assert (task.to_rows(a.y) == b.y).all()
    x = rows.test.x[:20]
    sols = [task.solutions(xi) for xi in x]
    assert [len(s) for s in sols] == rows.test.num_solutions[:20].tolist()
    assert all(task.is_valid(xi, s).all() for xi, s in zip(x, sols, strict=True))
    other = get_task("nqueens", 6)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, (50, 6)).astype(np.uint8)  # random rows, pads and out-of-range tokens included
    bad = ((y < 1) | (y >= 8)).sum(-1)
    assert (task.conflicts(x[:1], y) == other.conflicts(task.to_cells(x[:1]), task.to_cells(y)) + bad).all()
    assert task.format_puzzle(x[0]) == other.format_puzzle(task.to_cells(x[0]))
    assert (task.parse_puzzle(task.format_puzzle(x[0])) == x[0]).all()
    ax, ay = task.augment(np.random.default_rng(3))(rows.train.x[:100], rows.train.y[:100])
    assert task.is_valid(ax, ay).all()
    with pytest.raises(PuzzleError, match="two queens in one row"):
        task.parse_puzzle("QQ" + "." * 34)
