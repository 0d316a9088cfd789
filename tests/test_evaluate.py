"""Metric functions on hand-made cases with known answers."""

import numpy as np
import pytest

from gram_ppl.inference.evaluate import _tv_to_uniform, sample_metrics
from gram_ppl.tasks import get_task

TASK = get_task("nqueens", 4)
EMPTY = np.ones(16, dtype=np.uint8)
S1, S2 = TASK.solutions(EMPTY)  # the two 4-Queens solutions
BAD = EMPTY.copy()  # no queens: 4 missing


def metrics(samples, target=S1, n_solutions=2):
    samples = np.array(samples)[:, None]  # (N, B=1, 16)
    return sample_metrics(TASK, EMPTY[None], target[None], samples, np.array([n_solutions]))


def test_all_valid_and_both_solutions_found():
    m = metrics([S1, S2, S1, S2])
    assert m["valid"] == 1 and m["exact"] == 0.5 and m["any_valid"] == 1
    assert m["distinct_valid"] == 2 and m["coverage"] == 1
    assert m["coverage_curve"] == [0.5, 1.0, 1.0, 1.0]
    assert m["conflicts_sum"] == 0 and m["tv_uniform"] == 0


def test_invalid_samples_count_conflicts_and_never_coverage():
    m = metrics([BAD, BAD, S1])
    assert m["valid"] == pytest.approx(1 / 3) and m["coverage_curve"] == [0.0, 0.0, 0.5]
    assert m["conflicts_mean"] == 4 and m["conflicts_sum"] == 4  # the first sample: 4 missing queens
    assert m["tv_uniform"] == 0.5  # all valid mass on one of two solutions
    none = metrics([BAD, BAD])
    assert none["coverage"] == 0 and np.isnan(none["tv_uniform"]) and none["tv_puzzles"] == 0


def test_coverage_curve_never_falls_as_samples_are_added():
    rng = np.random.default_rng(0)
    pool = np.stack([S1, S2, BAD])
    for _ in range(20):
        m = metrics(pool[rng.integers(0, 3, size=12)])
        assert np.all(np.diff(m["coverage_curve"]) >= 0)


@pytest.mark.parametrize(
    "keys, k, tv",
    [([b"a"] * 4, 1, 0.0), ([b"a", b"b"], 2, 0.0), ([b"a", b"a", b"a", b"b"], 2, 0.25), ([b"a"], 4, 0.75)],
)
def test_total_variation_to_uniform(keys, k, tv):
    assert _tv_to_uniform(keys, k) == pytest.approx(tv)


def test_colourings_are_compared_up_to_colour_names():
    task = get_task("coloring", 3)
    x = task.parse_puzzle('{"n": 3, "edges": [[0, 1]]}')
    samples = np.array([[3, 4, 3], [4, 3, 4], [3, 4, 5]])[:, None]  # the first two are one colouring
    m = sample_metrics(task, x[None], samples[0], samples, np.array([len(task.solutions(x))]))
    assert len(task.solutions(x)) == 3  # vertex 2 takes vertex 0's colour, vertex 1's, or the third
    assert m["distinct_valid"] == 2 and m["coverage"] == pytest.approx(2 / 3)


def test_the_logged_evaluation_counts_distinct_valid_boards_for_one_repeated_input():
    from gram_ppl.inference.evaluate import prior_draws, validity_report
    from gram_ppl.tasks import Split

    x = np.stack([EMPTY] * 4)  # one input, drawn for four times: generation's blank board
    split = Split(x=x, y=np.stack([S1] * 4), num_solutions=np.full(4, 2))
    collapsed = validity_report(TASK, split, 4, lambda x, y: np.stack([S1, S1, S1, BAD]), guided=False)
    assert collapsed == {"prior_valid": 0.75, "prior_distinct_valid": 0.25}  # valid, but one board
    diverse = validity_report(TASK, split, 4, lambda x, y: np.stack([S1, S2, S1, S2]), guided=False)
    assert diverse["prior_distinct_valid"] == 0.5 and diverse["prior_valid"] == 1
    other = Split(x=np.stack([EMPTY, S1]), y=np.stack([S1, S1]), num_solutions=np.full(2, 2))  # two inputs
    assert "prior_distinct_valid" not in validity_report(TASK, other, 2, lambda x, y: np.stack([S1, S1]), False)
    # the blank input is drawn as often as asked, however few inputs are held out; other inputs once each
    asked = []

    def record(x, y):
        asked.append(len(x))
        return np.stack([S1, S2, S1, S2, S1, S2][: len(x)])

    more = validity_report(TASK, split, 6, record, guided=False)
    assert asked == [6] and prior_draws(split, 6) == 6 and more["prior_distinct_valid"] == pytest.approx(2 / 6)
    validity_report(TASK, other, 6, record, guided=False)
    assert asked == [6, 2] and prior_draws(other, 6) == 2
