"""What every puzzle task provides: token layout, checkers, exact solver, text format, data sets.

Token conventions follow the paper (Table 6): 0 is padding everywhere; the meaning of the other
tokens is task-specific and documented on each task class. Every checker is vectorised: `x` of
shape (..., x_len) and `y` of shape (..., y_len) broadcast against each other, so a batch of
samples for one puzzle, or one sample for a batch of puzzles, is checked in one call.

This module, like the whole of `gram_ppl.tasks`, imports numpy and the standard library only.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

from gram_ppl.config import ConfigError
from gram_ppl.networks import check_mixer
from gram_ppl.task_defaults import relation_bias_in_force


class PuzzleError(ValueError):
    """A puzzle that cannot be used: malformed text, contradictory givens, or no solution."""


@dataclass(frozen=True)
class Split:
    """One split of a data set: inputs, one stored target each, and exact solution counts.

    x: (N, x_len) uint8 puzzle tokens; y: (N, y_len) uint8 target tokens (one valid solution,
    not necessarily the only one); num_solutions: (N,) int64, the exact number of solutions of
    each input (of each canonical class, for colouring).
    """

    x: np.ndarray
    y: np.ndarray
    num_solutions: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self, index) -> Split:
        """The inputs `index` picks (a slice, indices or a mask), with their targets and counts."""
        return Split(self.x[index], self.y[index], self.num_solutions[index])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"x": self.x, "y": self.y, "num_solutions": self.num_solutions}


class Task(abc.ABC):
    """A family of constraint puzzles of one size.

    Subclasses set `name`, `x_len`, `y_len`, `x_vocab`, `y_vocab` and implement the abstract
    methods. `size` is the task's one size parameter (board side, grid side, vertex count).
    """

    name: str = ""
    checker: bool = True  # False: no exact checker or solution set (digits: image_metrics score samples)
    id_tokens: int = 0  # 1: x[0] is a puzzle identifier in 1..num_ids-1 (ARC), read by the puzzle embedding
    num_ids: int = 0
    size: int
    x_len: int
    y_len: int
    x_vocab: int
    y_vocab: int

    @property
    def board_shape(self) -> tuple[int, int]:
        """How y's L_y positions are laid out as a picture (rows, columns), for entropy maps in
        `gram diagnose`: a size x size grid where y has one token per cell (N-Queens and Sudoku
        cells, ARC canvases, digit images), else one row (colouring, N-Queens rows)."""
        return (self.size, self.size) if self.y_len == self.size * self.size else (1, self.y_len)

    def check_net(self, net) -> None:
        """Raise ConfigError if NetConfig `net` cannot read this task's inputs (the one place
        both backends' network builders ask)."""
        if self.id_tokens and net.prefix_tokens < 1:
            raise ConfigError(
                f"{self.name}: the puzzle embedding needs net.prefix_tokens >= 1 (--set net.prefix_tokens=1; paper: 16)"
            )

    @classmethod
    def from_config(cls, cfg) -> Task:
        """The task a TaskConfig describes (most tasks depend on the size alone; ARC's puzzle
        identifiers and stored outputs depend on the whole config)."""
        return cls(cfg.size)

    # ---- constraints -------------------------------------------------------------------
    @abc.abstractmethod
    def conflicts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Number of violated constraints of candidate solutions y for puzzles x; shape (...)."""

    def is_valid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where y satisfies every constraint and agrees with the givens of x; shape (...)."""
        return self.conflicts(x, y) == 0

    @abc.abstractmethod
    def solutions(self, x: np.ndarray, limit: int | None = None) -> np.ndarray:
        """Every solution of one puzzle x (x_len,), as (m, y_len) uint8 in a fixed order.

        With `limit`, at most that many (the first in the same order). Raises PuzzleError
        when the givens contradict each other.
        """

    @abc.abstractmethod
    def check_givens(self, x: np.ndarray) -> None:
        """Raise PuzzleError naming the clash if the givens of x violate a constraint."""

    def check_tokens(self, x: np.ndarray) -> None:
        """Raise PuzzleError if x (x_len,) has the wrong length or tokens out of range."""
        x = np.asarray(x)
        if x.shape != (self.x_len,):
            raise PuzzleError(f"expected {self.x_len} tokens, got shape {x.shape}")
        bad = (x < 1) | (x >= self.x_vocab)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PuzzleError(f"token {int(x[i])} at position {i} is outside 1..{self.x_vocab - 1}")

    def augment(self, rng: np.random.Generator):
        """A random symmetry of the task as a map (x, y) -> (x, y) of token batches (B, L_x),
        (B, L_y) that keeps validity and the number of solutions: the identity here; tasks
        override it with their symmetry group (used to augment training batches)."""
        return lambda x, y: (x, y)

    def input_orbit_keys(self, x: np.ndarray) -> list[bytes] | None:
        """One key per input of x (N, x_len) tokens, equal for inputs that are images of each other
        under the task's symmetries (what the orbit split holds out whole: `gram data overlap`
        checks outside puzzles with it), or None for a task without one."""
        return None

    def canonical(self, y: np.ndarray) -> np.ndarray:
        """The representative of y's class of equivalent solutions (y itself, but colourings
        that differ only by colour names share one), as uint8 tokens whatever the input's integer
        type, so representatives compare by their bytes."""
        return np.asarray(y, dtype=np.uint8)

    # ---- text format (docs/formats.md) ------------------------------------------------------
    @abc.abstractmethod
    def parse_puzzle(self, text: str) -> np.ndarray:
        """One line of the text format -> x (x_len,) uint8. Raises PuzzleError with the reason."""

    @abc.abstractmethod
    def format_puzzle(self, x: np.ndarray) -> str:
        """x (x_len,) -> one line of the text format."""

    @abc.abstractmethod
    def parse_solution(self, text: str) -> np.ndarray:
        """One line of the solution text format -> y (y_len,) uint8."""

    @abc.abstractmethod
    def format_solution(self, y: np.ndarray) -> str:
        """y (y_len,) -> one line of the solution text format."""

    unsolvable_reason = "the puzzle has no solution"

    def vote_report(self, x: np.ndarray, boards: np.ndarray, value: np.ndarray) -> dict:
        """Metrics of a task whose held-out rows are voted on in groups (ARC: pass@2 over the
        augmented versions of each test pair); {} for the others."""
        return {}

    # ---- sequence layout for the networks -------------------------------------------------
    @property
    def seq_len(self) -> int:
        """Positions the model processes: the input tokens, plus y_len output slots when the
        output does not live on the input positions (colouring)."""
        return self.x_len if self.x_len == self.y_len else self.x_len + self.y_len

    def position_features(self) -> list[np.ndarray]:
        """Categorical 2-D position features, each (seq_len,) int64 in 0..max: the model adds a
        learned embedding of each. Grids: row, column, diagonal, anti-diagonal."""
        n = int(round(self.x_len**0.5))
        r, c = np.divmod(np.arange(self.x_len), n)
        return [r, c, r - c + n - 1, r + c]

    # ln of the number of solutions an input has where Split.num_solutions holds -1 because the
    # count, though known, does not fit in int64 (9x9 Sudoku grids); inf: not known (no KL ceiling)
    log_count_unknown: float = math.inf
    # the number of valid objects unconditional generation draws from, where it is known (Sudoku:
    # every complete grid): the reference a uniform sampler gives for copies and distinct draws
    grid_count: int | None = None

    # ---- drawing (gram_ppl/plots.py asks these; no task name is tested there) ----------------
    drawing: str = "grid"  # how a board is drawn: grid (a character per cell) | queens | graph | canvas

    def drawn(self, x: np.ndarray, y: np.ndarray):
        """(task, x, y) in the encoding a board is drawn in: this task's own, or another's (the row
        and vertex encodings are drawn as the cell board and the graph they stand for)."""
        return self, x, y

    def conflict_cells(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(L_y,) bool: the positions of board y (for puzzle x) that break a constraint, shaded when
        an invalid board is drawn; none by default."""
        return np.zeros(len(y), bool)

    def relations(self) -> np.ndarray:
        """(seq_len, seq_len) int64: a small relation id for each ordered pair of positions, telling
        which constraints link them (the relation bias of the attention, NetConfig.relation_bias).
        Default: one bit per position feature, set where the two positions share its value
        (Sudoku: same row + 2·same column + 4·same box; N-Queens cells: row, column, diagonal,
        anti-diagonal; digits and ARC: row and column). Tasks whose constraints are not equalities
        of position features override it (N-Queens rows: the row distance; colouring: shared
        vertices). These ids depend on positions only; a task whose constraints depend on the
        input adds `input_relations`."""
        rel = np.zeros((self.seq_len, self.seq_len), dtype=np.int64)
        for bit, f in enumerate(self.position_features()):
            f = np.asarray(f)
            rel |= (f[:, None] == f[None, :]).astype(np.int64) << bit
        return rel

    def num_relations(self) -> int:
        """How many relation ids the task's positions use (ids 0 .. num_relations() - 1), with
        `input_relations` included."""
        return int(self.relations().max()) + 1

    input_dependent_relations = False  # True: input_relations gives ids per input

    def input_relations(self, x, xp):
        """(B, seq_len, seq_len) relation ids of each input x (B, seq_len) of network tokens, for a
        task whose constraints depend on the input (colouring's vertex tokens: which vertices are
        adjacent), computed with the array module xp (torch or jax.numpy, so both backends read the
        same rule); below num_relations(). Only called where input_dependent_relations is True."""
        raise NotImplementedError(f"{self.name} has no input-dependent relations")

    def repair(self, x: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """A valid target (L_y,) tokens near the board a decoder draws from `logp` (L_y, V) for the
        input x (L_x,): the prior-path "repair" target (config.REPAIRABLE lists the tasks with one)."""
        raise NotImplementedError(f"{self.name} has no repair")

    # ---- data sets ----------------------------------------------------------------------
    @abc.abstractmethod
    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        """Generate (train, test) for a gram_ppl.config.TaskConfig, deterministic in rng."""


def parse_grid_line(text: str, length: int, alphabet: dict[str, int], what: str) -> np.ndarray:
    """Map a line of single-character cells to tokens; errors say where and what is wrong."""
    line = text.strip()
    if len(line) != length:
        raise PuzzleError(f"expected {length} characters ({what}), got {len(line)}")
    out = np.empty(length, dtype=np.uint8)
    for i, ch in enumerate(line):
        tok = alphabet.get(ch)
        if tok is None:
            raise PuzzleError(f"unexpected character {ch!r} at column {i + 1} (allowed: {what})")
        out[i] = tok
    return out


def line_pairs(counts: np.ndarray) -> np.ndarray:
    """Number of clashing pairs among `counts` items on one line: c (c - 1) / 2, elementwise."""
    counts = counts.astype(np.int64)
    return counts * (counts - 1) // 2


def expand_targets(x: np.ndarray, solutions: list[np.ndarray], counts: np.ndarray, cfg, rng) -> Split:
    """Training pairs: every solution of each input (at most cfg.max_targets, drawn at random)
    when cfg.targets == "all", else the first listed one. solutions[i] is (m_i, y_len)."""
    xs, ys, ns = [], [], []
    for xi, sols, n in zip(x, solutions, counts, strict=True):
        if cfg.targets == "one":
            sols = sols[:1]
        elif len(sols) > cfg.max_targets:
            sols = sols[np.sort(rng.choice(len(sols), cfg.max_targets, replace=False))]
        xs.append(np.repeat(xi[None], len(sols), axis=0))
        ys.append(sols)
        ns.append(np.full(len(sols), n, dtype=np.int64))
    order = rng.permutation(sum(len(v) for v in ys))
    return Split(np.concatenate(xs)[order], np.concatenate(ys)[order], np.concatenate(ns)[order])


def hold_out_orbits(keys: list, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: which inputs are held out when whole orbits go to test. keys[i] is input i's
    orbit key (equal for inputs that are symmetric images of each other; a key may also join
    several orbits, which keeps the property: no held-out input is an image of a training
    input). Orbits are taken in random order until at least n_test inputs are held out."""
    _, group = np.unique(np.array(keys, dtype=object), return_inverse=True)
    group = np.asarray(group).reshape(-1)  # (N,) orbit of each input
    sizes = np.bincount(group)
    held, total = np.zeros(len(sizes), dtype=bool), 0
    for g in rng.permutation(len(sizes)):
        if total >= n_test:
            break
        held[g], total = True, total + sizes[g]
    return held[group]


def relation_ids(task: Task, prefix_tokens: int) -> np.ndarray:
    """(L, L) int64 relation ids over the network's L = prefix_tokens + seq_len positions: the
    task's `relations()` on its positions, and one more id for every pair that involves a prefix
    (register) token. The number of ids is `ids.max() + 1`; both backends build the same array."""
    rel = np.asarray(task.relations(), dtype=np.int64)
    count = task.num_relations()
    if rel.shape != (task.seq_len, task.seq_len) or (rel < 0).any() or rel.max() >= count:
        raise ValueError(
            f"{task.name}.relations() must be a ({task.seq_len}, {task.seq_len}) array of ids in 0..{count - 1}"
        )
    n = prefix_tokens + task.seq_len
    out = np.full((n, n), count, dtype=np.int64)  # (L, L): pairs with a prefix token
    out[prefix_tokens:, prefix_tokens:] = rel  # (seq_len, seq_len)
    return out


def relation_count(task: Task, prefix_tokens: int) -> int:
    """The number of relation ids of the network's positions: the task's, and one for pairs with a
    prefix token when there are any (the bias holds one learned scalar per id and head)."""
    return task.num_relations() + (1 if prefix_tokens else 0)


def uses_relation_bias(net, task: Task) -> bool:
    """Whether NetConfig `net`, with its mixer in force (config.net_in_force), gives `task` the
    relation bias (task_defaults.relation_bias_in_force, the rule config.json's resolution follows)."""
    check_mixer(net)
    return relation_bias_in_force(task.name, net.relation_bias, net.mixer)
