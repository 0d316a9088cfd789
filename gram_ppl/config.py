"""Frozen configuration dataclasses, validated on construction, serialised as plain dicts.

Standard library only: importing this module never imports numpy, torch or jax. Change a config
with `dataclasses.replace`; `to_dict` / `from_dict` round-trip through JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

TASK_NAMES = ("nqueens", "sudoku", "coloring")
TASK_SIZES = {"nqueens": tuple(range(4, 13)), "sudoku": (4, 6, 9), "coloring": tuple(range(3, 13))}
SUDOKU_MODES = ("generate", "unique", "multi")

# Defaults that depend on the task and size: (num_train, num_test) per task/mode and size.
_SPLITS = {
    ("sudoku", "generate"): {4: (230, 58), 6: (1000, 200), 9: (1000, 200)},
    ("sudoku", "unique"): {4: (200, 50), 6: (800, 200), 9: (100, 20)},
    ("sudoku", "multi"): {4: (400, 100), 6: (800, 200), 9: (80, 20)},
    ("coloring", None): {8: (7002, 255), 10: (13465, 192)},  # the paper's sizes
}
_CLUES = {"unique": {4: 6, 6: 12, 9: 26}, "multi": {4: 5, 6: 12, 9: 30}}
_MIN_EFFORT = {4: 0, 6: 0, 9: 1}


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the allowed values."""


@dataclass(frozen=True)
class TaskConfig:
    """Which puzzles, and how a data set of them is built (see docs/formats.md, docs/data.md).

    Fields left as None take the task- and size-dependent default given by `resolved()`.
    """

    name: str = "nqueens"  # one of TASK_NAMES
    size: int = 8  # board side (nqueens), grid side (sudoku), number of vertices (coloring)
    seed: int = 0  # data generation seed: same seed, same bytes
    # N-Queens
    removed: tuple[int, ...] | None = None  # queens removed per puzzle; None: (n-3, n-2, n-1)
    test_fraction: float = 0.15  # share of unique inputs held out (paper: 85:15)
    max_sources: int = 1000  # at most this many full solutions serve as sources (n >= 11)
    # Sudoku and colouring
    num_train: int | None = None
    num_test: int | None = None
    mode: str | None = None  # sudoku: generate | unique | multi; None: generate for 4x4, else unique
    clues: int | None = None  # sudoku unique: stop removing at this many (0: minimal); multi: exactly this many
    min_effort: int | None = None  # sudoku unique: least solver effort (branch points) to keep
    max_solutions: int = 32  # sudoku multi: at most this many solutions per puzzle
    edge_prob: float = 0.4  # coloring: Erdős–Rényi edge probability p (not given by the paper)

    def __post_init__(self):
        _choice("name", self.name, TASK_NAMES)
        _choice("size", self.size, TASK_SIZES[self.name], f"for task {self.name!r}")
        if self.mode is not None:
            if self.name != "sudoku":
                raise ConfigError(f"mode applies to sudoku only, not {self.name!r}")
            _choice("mode", self.mode, SUDOKU_MODES)
        if self.removed is not None:
            object.__setattr__(self, "removed", tuple(self.removed))
            bad = [k for k in self.removed if not 1 <= k <= self.size]
            if bad or not self.removed:
                raise ConfigError(f"removed must be queen counts in 1..{self.size}, got {self.removed}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.edge_prob < 1.0:
            raise ConfigError(f"edge_prob must be in (0, 1), got {self.edge_prob}")
        for name in ("num_train", "num_test", "clues", "min_effort"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
        if self.max_sources < 1 or self.max_solutions < 2:
            raise ConfigError("max_sources must be >= 1 and max_solutions >= 2")

    def resolved(self) -> TaskConfig:
        """A copy with every None replaced by its task- and size-dependent default."""
        s, changes = self.size, {}
        if self.name == "nqueens" and self.removed is None:
            changes["removed"] = (s - 3, s - 2, s - 1)
        if self.name == "sudoku":
            mode = self.mode or ("generate" if s == 4 else "unique")
            changes["mode"] = mode
            if self.clues is None and mode in _CLUES:
                changes["clues"] = _CLUES[mode][s]
            if self.min_effort is None:
                changes["min_effort"] = _MIN_EFFORT[s] if mode == "unique" else 0
        if self.name in ("sudoku", "coloring"):
            key = (self.name, changes.get("mode"))
            n_train, n_test = _SPLITS[key].get(s, (5000, 200))
            changes["num_train"] = n_train if self.num_train is None else self.num_train
            changes["num_test"] = n_test if self.num_test is None else self.num_test
        return dataclasses.replace(self, **changes)


def _choice(name: str, value, allowed, where: str = "") -> None:
    if value not in allowed:
        raise ConfigError(f"{name} {where + ' ' if where else ''}must be one of {list(allowed)}, got {value!r}")


def to_dict(cfg) -> dict:
    """A config dataclass -> plain JSON-serialisable dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a config dataclass from `to_dict` output; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return cls(**data)


__all__ = ["ConfigError", "TaskConfig", "TASK_NAMES", "TASK_SIZES", "SUDOKU_MODES", "to_dict", "from_dict"]
