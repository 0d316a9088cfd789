import dataclasses
import json

import pytest

from gram_ppl.config import ConfigError, TaskConfig, from_dict, to_dict


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "queens"}, "name must be one of \\['nqueens', 'nqueens_rows', 'sudoku', 'coloring'\\], got 'queens'"),
        ({"name": "sudoku", "size": 5}, "size for task 'sudoku' must be one of \\[4, 6, 9\\]"),
        ({"name": "sudoku", "size": 6, "mode": "hard"}, "mode must be one of \\['generate', 'unique', 'multi'\\]"),
        ({"mode": "unique"}, "mode applies to sudoku only"),
        ({"removed": (0, 9)}, "removed must be queen counts in 1..8"),
        ({"test_fraction": 1.0}, "test_fraction must be in"),
        ({"name": "coloring", "edge_prob": 0.0}, "edge_prob must be in"),
        ({"num_train": -1}, "num_train must be a non-negative integer"),
        ({"name": "sudoku", "size": 4, "split": "orbit"}, "split 'orbit' is implemented for nqueens only"),
        ({"split": "random"}, "split must be one of \\['input', 'orbit'\\]"),
    ],
)
def test_invalid_values_name_the_field_and_allowed_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TaskConfig(**kwargs)


def test_frozen_and_changed_with_replace():
    cfg = TaskConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.size = 10
    assert dataclasses.replace(cfg, size=10).size == 10
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, size=3)


@pytest.mark.parametrize(
    "cfg",
    [TaskConfig(), TaskConfig(name="sudoku", size=9, mode="multi"), TaskConfig(name="coloring", size=10, seed=4)],
)
def test_json_round_trip_of_resolved_configs(cfg):
    full = cfg.resolved()
    assert from_dict(TaskConfig, json.loads(json.dumps(to_dict(full)))) == full
    assert full.resolved() == full


def test_resolved_defaults():
    assert TaskConfig(size=10).resolved().removed == (7, 8, 9)  # the paper's k for 10-Queens
    assert TaskConfig(name="sudoku", size=4).resolved().mode == "generate"
    sudoku9 = TaskConfig(name="sudoku", size=9).resolved()
    assert (sudoku9.mode, sudoku9.min_effort) == ("unique", 1)
    col = TaskConfig(name="coloring", size=10).resolved()
    assert (col.num_train, col.num_test) == (13465, 192)  # the paper's sizes
    assert TaskConfig(name="coloring", size=10, num_test=5).resolved().num_test == 5


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown TaskConfig fields \\['colour'\\]"):
        from_dict(TaskConfig, {"colour": 1})
