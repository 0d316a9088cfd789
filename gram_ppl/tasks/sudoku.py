"""Sudoku with boxes 2x2 (4x4 grid), 2x3 (6x6) and 3x3 (9x9): completion and generation.

Tokens (paper Table 6, generalised to side s): s*s cells row-major, 0 pad, 1 blank, d + 1 for
digit d in 1..s. Text format: s*s characters, '.' or '0' for a blank, digits 1..s.

The exact solver is a depth-first search over candidate bit masks with constraint propagation
(naked and hidden singles) and fewest-candidates branching. It counts and enumerates solutions up
to a cap and reports its *effort*: the number of branch points it visited, 0 for a puzzle that
singles alone solve. Effort over the whole search for a second solution is the difficulty
rating used by the generator.

Data set modes (TaskConfig.mode):
- "generate": unconditional generation (paper §4.3): x is an all-blank board, y a complete
  grid; split by grid, so no test grid is seen in training. For s = 4 the grids are all 288.
- "unique": completion puzzles with exactly one solution, made by removing clues from random
  grids, in random order, while the solution stays unique; removal stops at `clues` clues or
  when no further clue can go (a minimal puzzle; `clues=0` always goes that far). Only puzzles
  whose effort is at least `min_effort` are kept.
- "multi": completion puzzles with between 2 and `max_solutions` solutions, made by blanking
  all but `clues` random cells. Training keeps a pair for every solution of each training
  puzzle (TaskConfig.targets), the source grid first.

Splits (TaskConfig.split): "input" holds out distinct inputs; "orbit" holds out whole orbits of
inputs under the validity-preserving symmetries (digit relabelling, row/column/band/stack
permutations, transposition for square boxes), so no test puzzle is a symmetric image of a
training one (`orbit_keys`: exact for 4x4 and 6x6, an orbit invariant for 9x9).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from gram_ppl.tasks.base import PuzzleError, Split, Task, expand_targets, hold_out_orbits, line_pairs, parse_grid_line

PAD, BLANK = 0, 1
BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
MODES = ("generate", "unique", "multi")
GRID_COUNTS = {4: 288, 6: 28_200_960, 9: 6_670_903_752_021_072_936_960}  # complete grids of each size
STORABLE = int(np.iinfo(np.int64).max)  # a larger count is stored as -1 in Split.num_solutions


class Sudoku(Task):
    """s x s Sudoku, s in {4, 6, 9}, boxes of BOXES[s] (rows, columns)."""

    name = "sudoku"

    def __init__(self, size: int):
        if size not in BOXES:
            raise ValueError(f"Sudoku size must be one of {sorted(BOXES)}, got {size}")
        self.size = s = size
        self.box = br, bc = BOXES[s]
        self.x_len = self.y_len = s * s
        self.x_vocab = self.y_vocab = s + 2
        r, c = np.divmod(np.arange(s * s), s)
        b = (r // br) * (s // bc) + c // bc
        self._unit_of = np.stack([r, s + c, 2 * s + b], axis=1)  # (s*s, 3): row, column, box unit
        self._unit_cells = np.array([np.flatnonzero((self._unit_of == u).any(1)) for u in range(3 * s)])  # (3s, s)
        self._units = self._unit_cells.tolist()
        self._cell_units = [[self._units[u] for u in self._unit_of[i]] for i in range(s * s)]
        self._peers = [sorted({j for u in self._cell_units[i] for j in u} - {i}) for i in range(s * s)]
        self._membership = np.eye(3 * s, dtype=np.int64)[self._unit_of].sum(1)  # (s*s, 3s)
        self._full = (1 << s) - 1

    def conflict_cells(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A digit repeated in its row, column or box, a non-digit, or a changed given."""
        x, y, s = np.asarray(x), np.asarray(y), self.size
        onehot = y[:, None] == np.arange(2, s + 2)  # (cells, s)
        repeated = (self._membership.T @ onehot.astype(np.int64)) >= 2  # (units, s)
        in_repeat = ((self._membership @ repeated.astype(np.int64)) * onehot).sum(-1) > 0
        return in_repeat | (y < 2) | (y > s + 1) | ((x >= 2) & (y != x))

    def position_features(self) -> list[np.ndarray]:
        """Row, column and box of each cell (so `relations()` = same row + 2·column + 4·box)."""
        return [self._unit_of[:, 0], self._unit_of[:, 1] - self.size, self._unit_of[:, 2] - 2 * self.size]

    def augment(self, rng: np.random.Generator):
        """random_symmetry on tokens: digit relabelling, row/column/band/stack permutations and
        transposition (square boxes); blanks stay blanks."""
        f = self.random_symmetry(rng)

        def apply(tokens):
            t = np.asarray(tokens)
            return (f(t.astype(np.int64) - 1) + 1).astype(t.dtype)  # blank: digit 0 -> 0

        return lambda x, y: (apply(x), apply(y))

    # ---- constraints -------------------------------------------------------------------
    def conflicts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Repeated-digit pairs in rows, columns and boxes + non-digit cells + changed givens."""
        x, y = np.asarray(x), np.asarray(y)
        s = self.size
        onehot = (y[..., None] == np.arange(2, s + 2)).astype(np.int64)  # (..., s*s, s)
        per_unit = np.einsum("...nd,nu->...ud", onehot, self._membership)  # (..., 3s, s)
        repeats = line_pairs(per_unit).sum((-2, -1))
        not_digit = ((y < 2) | (y > s + 1)).sum(-1)
        changed = ((x >= 2) & (y != x)).sum(-1)
        return repeats + not_digit + changed

    def check_givens(self, x: np.ndarray) -> None:
        self.check_tokens(x)
        x = np.asarray(x)
        kinds = ("row", "column", "box")
        for u, cells in enumerate(self._units):
            digits = x[cells]
            digits = digits[digits >= 2]
            vals, counts = np.unique(digits, return_counts=True)
            if (counts > 1).any():
                d = int(vals[counts > 1][0]) - 1
                raise PuzzleError(f"digit {d} appears twice in {kinds[u // self.size]} {u % self.size + 1}")

    def solutions(self, x: np.ndarray, limit: int | None = None) -> np.ndarray:
        self.check_givens(x)
        grids, _ = self.solve(np.asarray(x, dtype=np.int64) - 1, limit)
        return (grids + 1).astype(np.uint8)

    # ---- exact solver on digit grids (0 = blank, 1..s) ------------------------------------
    def solve(
        self,
        digits: np.ndarray,
        limit: int | None = None,
        rng: np.random.Generator | None = None,
        exclude: tuple[int, int] | None = None,
        prefer: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int]:
        """Solutions (m, s*s) int64 digits up to `limit` and the search effort (branch points).

        With `rng` the branching order is random (used to draw random grids); without it the
        order is fixed (fewest-candidates cell first, digits ascending, or with `prefer` (s*s, s)
        scores each cell's digits from the highest score down), so a limit takes a deterministic
        prefix. `exclude=(cell, digit)` forbids one digit in one blank cell.
        """
        cand = self._initial_candidates(np.asarray(digits, dtype=np.int64))
        ok = cand is not None and self._propagate(cand)
        if ok and exclude is not None:
            ok = self._eliminate(cand, int(exclude[0]), 1 << (int(exclude[1]) - 1))
        if not ok:
            return np.zeros((0, self.size**2), dtype=np.int64), 0
        found: list[list[int]] = []
        order = None if prefer is None else np.argsort(-np.asarray(prefer), axis=1, kind="stable").tolist()
        effort = self._search(cand, limit or float("inf"), found, rng, order)
        grids = np.array([[v.bit_length() for v in c] for c in found], dtype=np.int64)
        return grids.reshape(len(found), self.size**2), effort

    def _initial_candidates(self, digits: np.ndarray) -> list[int] | None:
        """Candidate bit masks (s*s,) from the givens, or None if two givens clash."""
        bits = np.where(digits > 0, np.left_shift(1, np.maximum(digits - 1, 0)), 0)  # (s*s,)
        in_unit = bits[self._unit_cells]  # (3s, s)
        unit_bits = np.bitwise_or.reduce(in_unit, axis=1)  # (3s,)
        if any(int(m).bit_count() != k for m, k in zip(unit_bits, np.count_nonzero(in_unit, axis=1), strict=True)):
            return None
        seen = np.bitwise_or.reduce(unit_bits[self._unit_of], axis=1)  # (s*s,)
        return np.where(digits > 0, bits, self._full & ~seen).tolist()

    def _propagate(self, cand: list[int]) -> bool:
        """Naked and hidden singles from a fresh candidate list; False on contradiction."""
        for i, v in enumerate(cand):
            if v == 0:
                return False
            if v & (v - 1) == 0 and not all(self._eliminate(cand, p, v) for p in self._peers[i]):
                return False
        return all(self._hidden_single(cand, unit, 1 << d) for unit in self._units for d in range(self.size))

    def _search(self, cand: list[int], limit, found: list, rng, order=None) -> int:
        """Depth-first search; appends solved candidate lists to `found`; returns effort. `order`:
        per cell, its digits (0-based) in the order to try them (default ascending)."""
        best, fewest = -1, self.size + 1
        for i, v in enumerate(cand):
            k = v.bit_count()
            if 1 < k < fewest:
                best, fewest = i, k
                if k == 2:
                    break
        if best < 0:
            found.append(cand)
            return 0
        bits = [1 << d for d in (range(self.size) if order is None else order[best]) if cand[best] >> d & 1]
        if rng is not None:
            bits = [bits[j] for j in rng.permutation(len(bits))]
        effort = 1
        for bit in bits:
            trial = cand.copy()
            if self._assign(trial, best, bit):
                effort += self._search(trial, limit, found, rng, order)
            if len(found) >= limit:
                break
        return effort

    def _assign(self, cand: list[int], i: int, bit: int) -> bool:
        """Set cell i to the digit `bit`, propagating; False on contradiction."""
        others = cand[i] & ~bit
        while others:
            low = others & -others
            if not self._eliminate(cand, i, low):
                return False
            others ^= low
        return True

    def _eliminate(self, cand: list[int], i: int, bit: int) -> bool:
        if not cand[i] & bit:
            return True
        cand[i] &= ~bit
        v = cand[i]
        if v == 0:
            return False
        if v & (v - 1) == 0:  # naked single: remove v from every peer
            for p in self._peers[i]:
                if not self._eliminate(cand, p, v):
                    return False
        return all(self._hidden_single(cand, unit, bit) for unit in self._cell_units[i])

    def _hidden_single(self, cand: list[int], unit: list[int], bit: int) -> bool:
        """Place digit `bit` if it has one place left in `unit`; False if it has none."""
        places = [j for j in unit if cand[j] & bit]
        if len(places) == 1 and cand[places[0]] != bit:
            return self._assign(cand, places[0], bit)
        return bool(places)

    def repair(self, x: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """A valid board (s*s,) tokens near the one a decoder draws from `logp` (s*s, V)
        log-probabilities for the input x (s*s,) tokens (the prior-path "repair" target): every
        cell takes its most likely digit; cells in order of decreasing confidence are kept where
        that digit repeats none of the givens and kept cells in a unit; the solver completes the
        rest, trying each cell's digits from the most likely down. Where the kept cells admit no
        completion, the least confident are dropped (a binary search on how many to keep: a
        subset of completable cells is completable). PuzzleError if the givens have no solution."""
        s = self.size
        scores = np.asarray(logp, np.float64)[:, 2 : s + 2]  # (s*s, s): the digit tokens
        given = np.asarray(x, np.int64)
        given = np.where(given >= 2, given - 1, 0)  # (s*s,) digits, 0 blank
        digit = scores.argmax(1) + 1  # (s*s,) the most likely digit of each cell
        used = np.zeros(3 * s, np.int64)  # (3s,) bit masks of the digits each unit holds
        for i in np.flatnonzero(given):
            used[self._unit_of[i]] |= 1 << (given[i] - 1)
        kept = []
        for i in np.argsort(-scores.max(1), kind="stable"):  # most confident first
            bit = 1 << (digit[i] - 1)
            if given[i] == 0 and not (used[self._unit_of[i]] & bit).any():
                kept.append(i)
                used[self._unit_of[i]] |= bit

        def complete(m):  # the solution keeping the m most confident kept cells, or None
            board = given.copy()
            board[kept[:m]] = digit[kept[:m]]
            grids, _ = self.solve(board, limit=1, prefer=scores)
            return grids[0] if len(grids) else None

        best = complete(len(kept))
        if best is None:
            lo, best, hi = 0, complete(0), len(kept)  # complete(lo) succeeds, complete(hi) fails
            if best is None:
                raise PuzzleError("the givens admit no solution")
            while hi - lo > 1:
                mid = (lo + hi) // 2
                got = complete(mid)
                lo, hi, best = (mid, hi, got) if got is not None else (lo, mid, best)
        return best + 1

    # ---- generation --------------------------------------------------------------------
    def random_grid(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly shuffled random complete grid (s*s,) of digits: random search, then
        validity-preserving shuffles (digits, rows in bands, bands, columns in stacks, stacks,
        and transposition when boxes are square)."""
        grid, _ = self.solve(np.zeros(self.size**2, dtype=np.int64), limit=1, rng=rng)
        return self.random_symmetry(rng)(grid[0])

    def random_symmetry(self, rng: np.random.Generator):
        """A random validity-preserving map of digit boards (..., s*s) (0 = blank stays 0):
        relabel digits, permute rows within bands, bands, columns within stacks, stacks, and
        transpose when boxes are square. It maps a puzzle and its solutions alike, so it keeps
        the number of solutions and the difficulty."""
        s, (br, bc) = self.size, self.box
        relabel = np.concatenate([[0], rng.permutation(s) + 1])
        rows = np.concatenate([b * br + rng.permutation(br) for b in rng.permutation(s // br)])
        cols = np.concatenate([b * bc + rng.permutation(bc) for b in rng.permutation(s // bc)])
        cells = np.arange(s * s).reshape(s, s)[rows][:, cols]
        if br == bc and rng.random() < 0.5:
            cells = cells.T
        return lambda digits: relabel[np.asarray(digits)[..., cells.reshape(-1)]]

    def geometric_maps(self) -> np.ndarray:
        """(G, s*s) every cell permutation of the group (rows within bands, bands, columns within
        stacks, stacks; times transposition for square boxes): 128 for 4x4, 3,456 for 6x6."""
        s, (br, bc) = self.size, self.box

        def orders(k, n):  # every order of n // k blocks of k lines, lines permuted within blocks
            within = list(
                itertools.product(*[list(itertools.permutations(range(b * k, b * k + k))) for b in range(n // k)])
            )
            return [sum((w[b] for b in blocks), ()) for blocks in itertools.permutations(range(n // k)) for w in within]

        grid = np.arange(s * s).reshape(s, s)
        maps = [grid[np.array(r)][:, np.array(c)].reshape(-1) for r in orders(br, s) for c in orders(bc, s)]
        if br == bc:
            maps += [m.reshape(s, s).T.reshape(-1) for m in maps]
        return np.array(maps)

    def orbit_keys(self, digits: np.ndarray) -> list[bytes]:
        """One key per board (N, s*s) of digits (0 = blank), equal for boards that are images of
        each other under the symmetry group. 4x4 and 6x6: the exact canonical form (the least
        image, digits renamed by first appearance, over every geometric map). 9x9 (2.6 million
        maps): an orbit invariant (digit frequencies; per band its rows' clue counts and per-stack
        counts, sorted; the same for columns; symmetrised under transposition), which may join
        orbits, never splits one."""
        digits = np.asarray(digits, dtype=np.int64)
        if self.size == 9:
            return [self._invariant(b) for b in digits]
        maps, s = self.geometric_maps(), self.size
        keys = []
        for board in digits:
            images = board[maps]  # (G, s*s)
            first = np.where(images[:, :, None] == np.arange(1, s + 1), np.arange(s * s)[:, None], s * s).min(
                1
            )  # (G, s)
            rank = np.argsort(np.argsort(first, axis=1, kind="stable"), axis=1) + 1  # (G, s): new name of each digit
            table = np.concatenate([np.zeros((len(maps), 1), dtype=np.int64), rank], axis=1)  # (G, s + 1), blank -> 0
            named = np.take_along_axis(table, images, axis=1)  # (G, s*s)
            least = named[np.lexsort(named.T[::-1])[0]]
            keys.append(least.astype(np.uint8).tobytes())
        return keys

    def input_orbit_keys(self, x: np.ndarray) -> list[bytes]:
        return self.orbit_keys(np.asarray(x, dtype=np.int64) - 1)  # tokens -> digits, blank 0

    def _invariant(self, board: np.ndarray) -> bytes:
        s, (br, bc) = self.size, self.box
        grid = board.reshape(s, s) > 0

        def lines(g, k, m):  # bands of k lines; each line: (clues, sorted clue counts per block of m)
            sig = [(int(r.sum()), *sorted(r.reshape(-1, m).sum(1).tolist())) for r in g]
            return sorted(tuple(sorted(sig[b * k : b * k + k])) for b in range(s // k))

        rows, cols = lines(grid, br, bc), lines(grid.T, bc, br)
        freq = sorted(np.bincount(board, minlength=s + 1)[1:].tolist())
        pair = sorted([rows, cols]) if br == bc else [rows, cols]  # transposition swaps rows and columns
        return repr((freq, *pair)).encode()

    def unique_puzzle(self, grid: np.ndarray, rng: np.random.Generator, clues: int) -> tuple[np.ndarray, int]:
        """Blank cells of `grid` in random order while the solution stays unique, stopping at
        `clues` clues (or when no cell can go). Returns digits (0 = blank) and the effort."""
        puzzle = np.array(grid, dtype=np.int64)
        for i in rng.permutation(self.size**2):
            if np.count_nonzero(puzzle) <= clues:
                break
            kept, puzzle[i] = puzzle[i], 0
            if len(self.solve(puzzle, limit=1, exclude=(i, kept))[0]):  # a second solution
                puzzle[i] = kept
        return puzzle, self.solve(puzzle, limit=2)[1]

    # ---- text format -------------------------------------------------------------------
    def parse_puzzle(self, text: str) -> np.ndarray:
        alphabet = {".": BLANK, "0": BLANK} | {str(d): d + 1 for d in range(1, self.size + 1)}
        return parse_grid_line(text, self.x_len, alphabet, f"'.', '0' or a digit 1-{self.size}")

    def format_puzzle(self, x: np.ndarray) -> str:
        return "".join(str(t - 1) if t >= 2 else "." for t in np.asarray(x).tolist())

    def parse_solution(self, text: str) -> np.ndarray:
        alphabet = {str(d): d + 1 for d in range(1, self.size + 1)}
        return parse_grid_line(text, self.y_len, alphabet, f"a digit 1-{self.size}")

    format_solution = format_puzzle

    # ---- data sets ----------------------------------------------------------------------
    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        n_train, n_test = cfg.num_train, cfg.num_test
        if cfg.mode == "generate":
            return self._generation_splits(n_train, n_test, rng)
        xs, ys, counts = [], [], []
        seen: set[bytes] = set()
        attempts = 0
        while len(xs) < n_train + n_test:
            attempts += 1
            if attempts > 50 * (n_train + n_test) + 1000:
                raise RuntimeError(
                    f"could not make {n_train + n_test} {cfg.mode} puzzles (made {len(xs)}); "
                    "loosen clues/min_effort/max_solutions"
                )
            grid = self.random_grid(rng)
            item = self._puzzle(grid, cfg, rng)
            if item is None or item[0].tobytes() in seen:  # distinct inputs: no test input in train
                continue
            seen.add(item[0].tobytes())
            xs.append(item[0] + 1)
            ys.append(grid + 1)
            counts.append(item[1])
        x, y = np.array(xs, dtype=np.uint8), np.array(ys, dtype=np.uint8)
        num = np.array(counts, dtype=np.int64)
        is_test = np.arange(len(x)) >= n_train
        if cfg.split == "orbit":  # whole orbits held out: about n_test inputs, the rest train
            is_test = hold_out_orbits(self.input_orbit_keys(x), n_test, rng)
        test = Split(x[is_test], y[is_test], num[is_test])
        train = ~is_test
        if cfg.mode == "unique":
            return Split(x[train], y[train], num[train]), test
        sols = [
            np.concatenate([g[None], s[(s != g).any(1)]])
            for g, s in zip(y[train], map(self._all_solutions, x[train]), strict=True)
        ]
        return expand_targets(x[train], sols, num[train], cfg, rng), test

    def _all_solutions(self, x: np.ndarray) -> np.ndarray:
        return (self.solve(x.astype(np.int64) - 1)[0] + 1).astype(np.uint8)

    def _puzzle(self, grid: np.ndarray, cfg, rng: np.random.Generator):
        """(puzzle digits, number of solutions) from one grid, or None if it does not qualify."""
        if cfg.mode == "unique":
            puzzle, effort = self.unique_puzzle(grid, rng, cfg.clues)
            return (puzzle, 1) if effort >= cfg.min_effort else None
        puzzle = np.array(grid, dtype=np.int64)
        puzzle[rng.permutation(self.size**2)[cfg.clues :]] = 0
        n = len(self.solve(puzzle, limit=cfg.max_solutions + 1)[0])
        return (puzzle, n) if 2 <= n <= cfg.max_solutions else None

    @property
    def grid_count(self) -> int:
        """Every complete grid of this size (Task.grid_count)."""
        return GRID_COUNTS[self.size]

    @property
    def log_count_unknown(self) -> float:
        """ln of the grid count where num_solutions stores it as -1, too large for int64 (9x9;
        Task.log_count_unknown)."""
        n = GRID_COUNTS[self.size]
        return math.log(n) if n > STORABLE else math.inf

    def _generation_splits(self, n_train: int, n_test: int, rng: np.random.Generator) -> tuple[Split, Split]:
        s = self.size
        if s == 4:
            grids = self.solve(np.zeros(16, dtype=np.int64))[0]  # all 288
            grids = grids[rng.permutation(len(grids))]
        else:
            seen: dict[bytes, np.ndarray] = {}
            while len(seen) < n_train + n_test:
                g = self.random_grid(rng)
                seen.setdefault(g.tobytes(), g)
            grids = np.array(list(seen.values()))
        total = GRID_COUNTS[s] if GRID_COUNTS[s] <= STORABLE else -1  # -1: 9x9 (log_count_unknown)
        grids = (grids + 1).astype(np.uint8)
        test, train = grids[:n_test], grids[n_test : n_test + n_train]
        blank = np.full(s * s, BLANK, dtype=np.uint8)

        def split(y):
            return Split(np.tile(blank, (len(y), 1)), y, np.full(len(y), total, dtype=np.int64))

        return split(train), split(test)
