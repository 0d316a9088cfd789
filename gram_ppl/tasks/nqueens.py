"""N-Queens completion (paper §10): place n non-attacking queens given some of them.

Tokens (paper Table 6): a board is n*n cells in row-major order, 0 pad, 1 empty, 2 queen; the
same layout for the puzzle x (the givens) and the solution y. A puzzle is a full solution with k
queens removed; the paper removes k in {5, 6, 7} for n = 8 and {7, 8, 9} for n = 10, i.e.
{n-3, n-2, n-1}, which is our default for every n. Text format: n*n characters of '.' and 'Q'.

Completions are enumerated exactly by a breadth-first search over rows that is vectorised over
all partial boards at once (numpy bit masks), so 12-Queens (14,200 solutions) takes well under a
second.
"""

from __future__ import annotations

import itertools

import numpy as np

from gram_ppl.config import TASK_SIZES
from gram_ppl.tasks.base import PuzzleError, Split, Task, line_pairs, parse_grid_line

EMPTY, QUEEN = 1, 2
SIZES = TASK_SIZES["nqueens"]  # one source: gram_ppl.config


class NQueens(Task):
    """n-Queens completion on an n x n board, n in 4..12."""

    name = "nqueens"
    unsolvable_reason = "the givens cannot be completed to a full board"

    def __init__(self, size: int):
        if size not in SIZES:
            raise ValueError(f"N-Queens size must be one of {list(SIZES)}, got {size}")
        self.size = n = size
        self.x_len = self.y_len = n * n
        self.x_vocab = self.y_vocab = 3
        r, c = np.divmod(np.arange(n * n), n)
        # one-hot line membership of each cell: rows, columns, diagonals, anti-diagonals
        self._lines = np.concatenate(
            [np.eye(n)[r], np.eye(n)[c], np.eye(2 * n - 1)[r - c + n - 1], np.eye(2 * n - 1)[r + c]],
            axis=1,
        ).astype(np.int64)  # (n*n, 6n-2)

    drawing = "queens"

    def conflict_cells(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A queen sharing a row, column or diagonal with another, or a given queen left out."""
        x, y = np.asarray(x), np.asarray(y)
        q = y == QUEEN
        crowded = (q.astype(np.int64) @ self._lines) >= 2  # (lines,) with two or more queens
        return (q & ((self._lines @ crowded) > 0)) | ((x == QUEEN) & ~q)

    def augment(self, rng: np.random.Generator):
        """One of the 8 symmetries of the square board (rotations and reflections)."""
        k, flip, n = int(rng.integers(4)), bool(rng.integers(2)), self.size
        cells = np.rot90(np.arange(n * n).reshape(n, n), k)
        cells = (cells[:, ::-1] if flip else cells).reshape(-1)
        return lambda x, y: (np.asarray(x)[..., cells], np.asarray(y)[..., cells])

    def _orbits(self, boards: np.ndarray) -> np.ndarray:
        """(U, n*n) boards -> (U,) id of each board's orbit under the 8 board symmetries."""
        n = self.size
        cells = [np.rot90(np.arange(n * n).reshape(n, n), k) for k in range(4)]
        cells = [c.reshape(-1) for c in cells + [c[:, ::-1] for c in cells]]
        images = np.stack([boards[:, c] for c in cells], axis=1)  # (U, 8, n*n)
        keys = np.array([min(img.tobytes() for img in imgs) for imgs in images])
        return np.unique(keys, return_inverse=True)[1].reshape(-1)

    # ---- constraints -------------------------------------------------------------------
    def conflicts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Attacking pairs + missing queens + given queens absent from y + invalid tokens."""
        x, y = np.asarray(x), np.asarray(y)
        q = (y == QUEEN).astype(np.int64)  # (..., n*n)
        attacks = line_pairs(q @ self._lines).sum(-1)  # (...)
        missing = np.maximum(self.size - q.sum(-1), 0)
        dropped = ((x == QUEEN) & (y != QUEEN)).sum(-1)
        bad_tokens = ((y != EMPTY) & (y != QUEEN)).sum(-1)
        return attacks + missing + dropped + bad_tokens

    def check_givens(self, x: np.ndarray) -> None:
        self.check_tokens(x)
        n = self.size
        cells = [divmod(int(i), n) for i in np.flatnonzero(np.asarray(x) == QUEEN)]
        for (r1, c1), (r2, c2) in itertools.combinations(cells, 2):
            if r1 == r2 or c1 == c2 or abs(r1 - r2) == abs(c1 - c2):
                raise PuzzleError(
                    f"queens at row {r1 + 1} col {c1 + 1} and row {r2 + 1} col {c2 + 1} attack each other"
                )

    def solutions(self, x: np.ndarray, limit: int | None = None) -> np.ndarray:
        self.check_givens(x)
        n = self.size
        given = np.asarray(x).reshape(n, n) == QUEEN
        allowed = _unattacked(given)  # (n, n): cells no given queen attacks, givens included
        cols = np.zeros((1, 0), dtype=np.int64)  # (S, rows so far): column of each placed queen
        cmask = d1 = d2 = np.zeros(1, dtype=np.int64)  # (S,) occupied columns / diagonals
        for r in range(n):
            parents, placed = [], []
            for c in np.flatnonzero(allowed[r]):
                free = ((cmask >> c) & 1 | (d1 >> (r - c + n - 1)) & 1 | (d2 >> (r + c)) & 1) == 0
                parents.append(np.flatnonzero(free))
                placed.append(np.full(len(parents[-1]), c, dtype=np.int64))
            if not parents:
                return np.zeros((0, n * n), dtype=np.uint8)
            idx, c = np.concatenate(parents), np.concatenate(placed)  # (S',), (S',)
            cols = np.concatenate([cols[idx], c[:, None]], axis=1)  # (S', r + 1)
            cmask = cmask[idx] | (1 << c)
            d1 = d1[idx] | (1 << (r - c + n - 1))
            d2 = d2[idx] | (1 << (r + c))
        order = np.lexsort(cols.T[::-1])  # lexicographic by (row 0 column, row 1 column, ...)
        cols = cols[order][:limit]
        return boards_from_columns(cols, n)

    # ---- text format -------------------------------------------------------------------
    def parse_puzzle(self, text: str) -> np.ndarray:
        return parse_grid_line(text, self.x_len, {".": EMPTY, "Q": QUEEN}, "'.' or 'Q'")

    def format_puzzle(self, x: np.ndarray) -> str:
        return "".join("Q" if t == QUEEN else "." for t in np.asarray(x))

    parse_solution = parse_puzzle
    format_solution = format_puzzle

    # ---- data sets ----------------------------------------------------------------------
    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        """The paper's protocol: every source solution with every choice of k removed queens,
        k in cfg.removed; split 85:15 by unique input; every (input, source) pair whose input
        is in train is kept in train; a test input stores its first source as the target.
        With more than cfg.max_sources full solutions a random subset serves as sources."""
        n = self.size
        all_sols = self.solutions(np.full(n * n, EMPTY, dtype=np.uint8))  # (S, n*n)
        src = all_sols
        if len(src) > cfg.max_sources:
            src = src[np.sort(rng.choice(len(src), cfg.max_sources, replace=False))]
        removed = cfg.removed or (n - 3, n - 2, n - 1)
        keep = np.array(
            [[r not in drop for r in range(n)] for k in removed for drop in itertools.combinations(range(n), k)]
        )  # (C, n): rows whose queen stays
        row_of_cell = np.arange(n * n) // n
        kept_cell = keep[:, row_of_cell]  # (C, n*n)
        x = np.where(kept_cell[None] & (src[:, None] == QUEEN), QUEEN, EMPTY)  # (S, C, n*n)
        x = x.reshape(-1, n * n).astype(np.uint8)
        y = np.repeat(src, len(keep), axis=0)  # (S*C, n*n)
        uniq, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        groups = self._orbits(uniq) if cfg.split == "orbit" else np.arange(len(uniq))  # (U,) group of each input
        n_groups = int(groups.max()) + 1
        held = np.zeros(n_groups, dtype=bool)
        held[rng.permutation(n_groups)[: int(round(cfg.test_fraction * n_groups))]] = True
        is_test = held[groups]  # (U,)
        test_ids = np.flatnonzero(is_test)
        train_pairs = np.flatnonzero(~is_test[inverse])
        if cfg.targets == "one":  # the first source of each training input
            train_pairs = np.intersect1d(train_pairs, first)
        train_pairs = rng.permutation(train_pairs)
        counts = count_completions(uniq, all_sols)  # (U,)
        train = Split(x[train_pairs], y[train_pairs], counts[inverse[train_pairs]])
        test = Split(uniq[test_ids], y[first[test_ids]], counts[test_ids])
        return train, test


def _unattacked(given: np.ndarray) -> np.ndarray:
    """(n, n) bool: cells not attacked by any given queen; a given row allows only its queen."""
    n = given.shape[0]
    r, c = np.indices((n, n))
    ok = np.ones((n, n), dtype=bool)
    for gr, gc in zip(*np.nonzero(given), strict=True):
        ok &= (r != gr) & (c != gc) & (r - c != gr - gc) & (r + c != gr + gc)
        ok[gr, gc] = True
    return ok


def boards_from_columns(cols: np.ndarray, n: int) -> np.ndarray:
    """(m, n) queen column per row -> (m, n*n) uint8 board tokens."""
    boards = np.full((len(cols), n, n), EMPTY, dtype=np.uint8)
    rows = np.broadcast_to(np.arange(n), cols.shape)
    boards[np.arange(len(cols))[:, None], rows, cols] = QUEEN
    return boards.reshape(len(cols), n * n)


def count_completions(x: np.ndarray, solutions: np.ndarray) -> np.ndarray:
    """(U, n*n) partial boards, (S, n*n) all full solutions -> (U,) number containing the givens."""
    g = (x == QUEEN).astype(np.float32)
    s = (solutions == QUEEN).astype(np.float32)
    hits = g @ s.T  # (U, S): given queens present in each solution
    return (hits == g.sum(1, keepdims=True)).sum(1).astype(np.int64)


class NQueensRows(NQueens):
    """N-Queens completion with one token per row (the value is the queen's column): n positions
    instead of n*n, about 4-5x cheaper per step at n = 8 (docs/recipe.md). Tokens: 0 pad, 1 a row
    without a (given) queen, 2 + c a queen in column c. The same puzzles, solution counts, splits,
    text format and checkers as `nqueens` (boards are converted to cells to be checked)."""

    name = "nqueens_rows"

    def __init__(self, size: int):
        super().__init__(size)
        self.cells = NQueens(size)  # the cell encoding everything is checked in
        self.x_len = self.y_len = size
        self.x_vocab = self.y_vocab = size + 2

    # ---- conversion ------------------------------------------------------------------------
    def to_cells(self, rows: np.ndarray) -> np.ndarray:
        """(..., n) row tokens -> (..., n*n) cell tokens; a pad or out-of-range row has no queen."""
        rows, n = np.asarray(rows).astype(np.int64), self.size
        col = rows - 2  # (..., n); negative or >= n: no queen in that row
        cells = np.full((*rows.shape, n), EMPTY, dtype=np.uint8)
        cells[(col[..., None] == np.arange(n))] = QUEEN
        return cells.reshape(*rows.shape[:-1], n * n)

    def to_rows(self, cells: np.ndarray) -> np.ndarray:
        """(..., n*n) cell tokens with at most one queen per row -> (..., n) row tokens."""
        n = self.size
        q = np.asarray(cells).reshape(*np.shape(cells)[:-1], n, n) == QUEEN  # (..., n, n)
        if (q.sum(-1) > 1).any():
            raise PuzzleError("two queens in one row cannot be written in the row encoding")
        return np.where(q.any(-1), q.argmax(-1) + 2, 1).astype(np.uint8)

    # ---- the task, through the cell encoding ----------------------------------------------
    def conflicts(self, x, y):
        y = np.asarray(y)
        bad = ((y < 1) | (y >= self.y_vocab)).sum(-1)  # a pad or unknown token is a broken row
        return self.cells.conflicts(self.to_cells(x), self.to_cells(y)) + bad

    def check_givens(self, x) -> None:
        self.check_tokens(x)
        self.cells.check_givens(self.to_cells(x))

    def solutions(self, x, limit: int | None = None) -> np.ndarray:
        self.check_tokens(x)
        return self.to_rows(self.cells.solutions(self.to_cells(x), limit))

    def augment(self, rng: np.random.Generator):
        cells = self.cells.augment(rng)  # a board symmetry keeps one queen per row of a valid board

        def apply(x, y):
            cx, cy = cells(self.to_cells(x), self.to_cells(y))
            return self.to_rows(cx), self.to_rows(cy)

        return apply

    def parse_puzzle(self, text: str) -> np.ndarray:
        return self.to_rows(self.cells.parse_puzzle(text))

    def format_puzzle(self, x) -> str:
        return self.cells.format_puzzle(self.to_cells(x))

    parse_solution = parse_puzzle
    format_solution = format_puzzle

    def position_features(self) -> list[np.ndarray]:
        return [np.arange(self.size)]  # the row index

    def drawn(self, x, y):
        return self.cells, self.to_cells(x), self.to_cells(y)

    def conflict_cells(self, x, y) -> np.ndarray:
        return self.cells.conflict_cells(self.to_cells(x), self.to_cells(y))

    def relations(self) -> np.ndarray:
        """The row distance |i − j|: queens in rows i and j attack on a diagonal when their
        columns differ by exactly that."""
        rows = np.arange(self.size)
        return np.abs(rows[:, None] - rows[None, :])  # (n, n)

    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        """Exactly `nqueens`'s splits (same seed, same puzzles), in the row encoding."""
        train, test = self.cells.build_splits(cfg, rng)
        return (
            Split(self.to_rows(train.x), self.to_rows(train.y), train.num_solutions),
            Split(self.to_rows(test.x), self.to_rows(test.y), test.num_solutions),
        )
