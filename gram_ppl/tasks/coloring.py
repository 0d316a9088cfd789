"""Graph 3-colouring of Erdős–Rényi graphs (paper §10, following the GNN-GCP pipeline).

Tokens (paper Table 6): the input is the strict upper triangle of the adjacency matrix in
row-major order, n(n-1)/2 tokens, 0 pad, 1 no edge, 2 edge; the output is n tokens 3 + colour
(3, 4, 5 = colours 0, 1, 2). Colourings are compared up to a permutation of the colours: the
*canonical form* of a colouring renames colours in order of first appearance, so vertex 0 always
has colour 0 (a "restricted growth string"). `solutions` returns canonical forms, one per class;
the number of proper colourings is 3! / (3 - k)! times the number of canonical ones using k
colours. Text format: `{"n": 8, "edges": [[0, 1], ...]}`; a solution `{"colors": [0, 2, ...]}`.

Enumeration is exact: every canonical colouring of n vertices (9,842 for n = 10) is tested
against the graph's edge vector with one matrix product, in batches of graphs for data sets.
"""

from __future__ import annotations

import functools
import itertools
import json
import math

import numpy as np

from gram_ppl.config import TASK_SIZES, ConfigError
from gram_ppl.tasks.base import PuzzleError, Split, Task, expand_targets, hold_out_orbits

NO_EDGE, EDGE, COLOR0 = 1, 2, 3
COLORS = 3
SIZES = TASK_SIZES["coloring"]  # one source: gram_ppl.config


class Coloring(Task):
    """3-colouring of graphs on n vertices, n in 3..12."""

    name = "coloring"
    unsolvable_reason = "the graph is not 3-colourable"

    def __init__(self, size: int):
        if size not in SIZES:
            raise ValueError(f"colouring size (vertices) must be one of {list(SIZES)}, got {size}")
        self.size = n = size
        self.x_len, self.y_len = n * (n - 1) // 2, n
        self.x_vocab, self.y_vocab = 3, COLOR0 + COLORS
        self.pairs = np.array(list(itertools.combinations(range(n), 2)), dtype=np.int64)  # (E, 2)

    def position_features(self) -> list[np.ndarray]:
        """Input token (u, v) of the adjacency triangle, output slot i as (i, i), and a flag
        telling the two apart."""
        slots = np.arange(self.size)
        first = np.concatenate([self.pairs[:, 0], slots])
        second = np.concatenate([self.pairs[:, 1], slots])
        kind = np.concatenate([np.zeros(self.x_len, dtype=np.int64), np.ones(self.size, dtype=np.int64)])
        return [first, second, kind]

    drawing = "graph"

    @property
    def seq_len(self) -> int:
        """The edge tokens, then one output slot per vertex (always apart: with 3 vertices there are
        as many edges as vertices, which the base rule would take for outputs on the inputs)."""
        return self.x_len + self.y_len

    def relations(self) -> np.ndarray:
        """Shared vertices (0, 1 or 2) of the two positions' vertex sets (an edge token (u, v):
        {u, v}; an output slot i: {i}), plus 3 per position of the pair that is an output slot: edge–edge
        sharing an endpoint, edge–vertex incidence, vertex–vertex (itself or not)."""
        first, second, kind = self.position_features()
        member = np.zeros((len(first), self.size), dtype=np.int64)  # (L, n): the vertices of each position
        member[np.arange(len(first)), first] = member[np.arange(len(first)), second] = 1
        return member @ member.T + 3 * (kind[:, None] + kind[None, :])  # (L, L) in 0..8

    # ---- constraints -------------------------------------------------------------------
    def conflicts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Edges whose ends share a colour + output tokens that are not colours."""
        x, y = np.asarray(x), np.asarray(y)
        same = y[..., self.pairs[:, 0]] == y[..., self.pairs[:, 1]]  # (..., E)
        clashes = ((x == EDGE) & same).sum(-1)
        not_color = ((y < COLOR0) | (y >= COLOR0 + COLORS)).sum(-1)
        return clashes + not_color

    def augment(self, rng: np.random.Generator):
        """A random relabelling of the vertices; the colouring follows it and is re-canonicalised."""
        n, perm = self.size, rng.permutation(self.size)  # new vertex i is old vertex perm[i]
        index = np.zeros((n, n), dtype=np.int64)
        index[self.pairs[:, 0], self.pairs[:, 1]] = np.arange(self.x_len)
        index = index + index.T
        moved = index[perm[self.pairs[:, 0]], perm[self.pairs[:, 1]]]  # (E,) old triangle position of each new pair

        def apply(x, y):
            y = np.asarray(y)[..., perm]
            return np.asarray(x)[..., moved], np.apply_along_axis(self.canonical, -1, y)

        return apply

    def canonical(self, y: np.ndarray) -> np.ndarray:
        """Colours renamed in order of first appearance (tokens 3 + colour)."""
        names: dict[int, int] = {}
        return np.array([COLOR0 + names.setdefault(int(c), len(names)) for c in np.asarray(y)], dtype=np.uint8)

    def input_orbit_keys(self, x: np.ndarray) -> list[bytes]:
        return self.orbit_keys(x)  # graphs up to vertex relabelling, whatever the encoding

    def orbit_keys(self, x: np.ndarray, max_orders: int = 40320) -> list[bytes]:
        """One key per graph (N, E), equal for graphs that are relabellings of each other. Colour
        refinement (1-WL) orders the vertices canonically up to ties; the key is the least
        adjacency triangle over every order of the tied vertices (the exact canonical form) when
        there are at most max_orders such orders (always for n <= 8), else the refined colour
        histogram with each class's neighbour counts, an invariant that may join orbits, never
        splits one."""
        n, keys = self.size, []
        for g in np.asarray(x):
            adj = np.zeros((n, n), dtype=np.int64)
            adj[self.pairs[:, 0], self.pairs[:, 1]] = g == EDGE
            adj = adj + adj.T
            colour = np.zeros(n, dtype=np.int64)
            while True:  # refine: a vertex's new colour ranks (its colour, its neighbours' colour counts)
                sig = [(int(colour[v]), *np.bincount(colour[adj[v] > 0], minlength=n).tolist()) for v in range(n)]
                ranks = {t: i for i, t in enumerate(sorted(set(sig)))}
                new = np.array([ranks[t] for t in sig])
                if len(ranks) == len(set(colour.tolist())):
                    break
                colour = new
            cells = [np.flatnonzero(colour == c) for c in range(int(colour.max()) + 1)]
            if np.prod([float(math.factorial(len(c))) for c in cells]) > max_orders:
                counts = sorted(sig)
                keys.append(repr(("invariant", counts)).encode())
                continue
            orders = np.array(
                [sum(p, ()) for p in itertools.product(*[list(itertools.permutations(c.tolist())) for c in cells])]
            )
            tri = adj[orders[:, self.pairs[:, 0]], orders[:, self.pairs[:, 1]]]  # (O, E): the triangle in each order
            keys.append(tri[np.lexsort(tri.T[::-1])[0]].astype(np.uint8).tobytes())
        return keys

    def check_givens(self, x: np.ndarray) -> None:
        self.check_tokens(x)

    def solutions(self, x: np.ndarray, limit: int | None = None) -> np.ndarray:
        self.check_givens(x)
        valid = self.proper_mask(np.asarray(x)[None])[0]  # (R,)
        return (canonical_colorings(self.size)[valid][:limit] + COLOR0).astype(np.uint8)

    def proper_mask(self, x: np.ndarray, chunk: int = 512) -> np.ndarray:
        """(G, E) graphs -> (G, R) bool: which canonical colourings are proper for each graph."""
        rgs = canonical_colorings(self.size)
        same = (rgs[:, self.pairs[:, 0]] == rgs[:, self.pairs[:, 1]]).astype(np.float32)  # (R, E)
        out = [(np.asarray(x[i : i + chunk]) == EDGE).astype(np.float32) @ same.T == 0 for i in range(0, len(x), chunk)]
        return np.concatenate(out) if out else np.zeros((0, len(rgs)), dtype=bool)

    # ---- text format -------------------------------------------------------------------
    def parse_puzzle(self, text: str) -> np.ndarray:
        obj = _json_object(text, {"n", "edges"})
        n = obj["n"]
        if not isinstance(n, int) or isinstance(n, bool) or n != self.size:
            raise PuzzleError(f'"n" must be the integer {self.size} (the --size), got {n!r}')
        edges = obj["edges"]
        if not isinstance(edges, list):
            raise PuzzleError('"edges" must be a list of [u, v] pairs')
        adj = np.zeros((n, n), dtype=bool)
        for k, e in enumerate(edges):
            if not (isinstance(e, list) and len(e) == 2 and all(_is_int(v) for v in e)):
                raise PuzzleError(f"edge {k} must be a pair of vertex numbers, got {e!r}")
            u, v = e
            if not (0 <= u < n and 0 <= v < n):
                raise PuzzleError(f"edge {k} {e} has a vertex outside 0..{n - 1}")
            if u == v:
                raise PuzzleError(f"edge {k} {e} is a self-loop")
            adj[u, v] = adj[v, u] = True
        return np.where(adj[self.pairs[:, 0], self.pairs[:, 1]], EDGE, NO_EDGE).astype(np.uint8)

    def format_puzzle(self, x: np.ndarray) -> str:
        edges = self.pairs[np.asarray(x) == EDGE].tolist()
        return json.dumps({"n": self.size, "edges": edges})

    def parse_solution(self, text: str) -> np.ndarray:
        colors = _json_object(text, {"colors"})["colors"]
        if not (isinstance(colors, list) and len(colors) == self.size):
            raise PuzzleError(f'"colors" must be a list of {self.size} colours')
        if not all(_is_int(c) and 0 <= c < COLORS for c in colors):
            raise PuzzleError(f'"colors" must hold integers 0..{COLORS - 1}, got {colors!r}')
        return (np.array(colors) + COLOR0).astype(np.uint8)

    def format_solution(self, y: np.ndarray) -> str:
        return json.dumps({"colors": (np.asarray(y).astype(np.int64) - COLOR0).tolist()})

    # ---- data sets ----------------------------------------------------------------------
    def colourable_graphs(self) -> int | None:
        """How many distinct 3-colourable graphs on the n labelled vertices exist (counted by
        enumeration up to n = 6, 2^15 graphs); None above that (more than any data set asks)."""
        if self.x_len > 15:
            return None
        bits = (np.arange(2**self.x_len)[:, None] >> np.arange(self.x_len)) & 1  # (2^E, E) every graph
        return int(self.proper_mask(np.where(bits == 1, EDGE, NO_EDGE).astype(np.uint8)).any(1).sum())

    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        """Distinct 3-colourable G(n, p) graphs, p = cfg.edge_prob, split into train and test
        graphs. Train has a pair per canonical colouring of each graph (cfg.targets); a test
        graph stores one canonical colouring drawn at random and its number of them."""
        n_train, n_test = cfg.num_train, cfg.num_test
        exist = self.colourable_graphs()
        if exist is not None and n_train + n_test > exist:
            raise ConfigError(
                f"coloring size {self.size}: {n_train} training + {n_test} test graphs asked for, but only {exist} "
                f"distinct 3-colourable graphs on {self.size} labelled vertices exist (set task.num_train / num_test)"
            )
        graphs, seen = [], set()
        while len(graphs) < n_train + n_test:
            batch = np.where(rng.random((4096, self.x_len)) < cfg.edge_prob, EDGE, NO_EDGE).astype(np.uint8)
            for g in batch[self.proper_mask(batch).any(1)]:
                if g.tobytes() not in seen and len(graphs) < n_train + n_test:
                    seen.add(g.tobytes())
                    graphs.append(g)
        x = np.array(graphs)  # (G, E)
        proper = self.proper_mask(x)  # (G, R)
        counts = proper.sum(1).astype(np.int64)
        rgs = (canonical_colorings(self.size) + COLOR0).astype(np.uint8)  # (R, n)
        sols = [rgs[rng.permutation(np.flatnonzero(row))] for row in proper]  # random order per graph
        is_test = np.arange(len(x)) >= n_train
        if cfg.split == "orbit":  # whole isomorphism classes held out: about n_test graphs
            is_test = hold_out_orbits(self.input_orbit_keys(x), n_test, rng)
        tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        train = expand_targets(x[tr], [sols[i] for i in tr], counts[tr], cfg, rng)
        test = Split(x[te], np.array([sols[i][0] for i in te]).reshape(-1, self.size), counts[te])
        return train, test


class ColoringRows(Coloring):
    """3-colouring with one token per vertex: the input token of vertex i is 1 + its neighbour
    set as a bit mask (bit j set when i and j share an edge), so x and y both have n positions
    (the n(n-1)/2 edge tokens of `coloring` become n), each vertex reading its neighbours from
    its own token, like `nqueens_rows` for N-Queens. x_vocab is 2^n + 1 (0 is the pad), a
    learned embedding per neighbour set: 4,097 rows at n = 12. The same graphs, splits, solution
    counts, text format and checkers as `coloring` (inputs are converted to the adjacency
    triangle to be checked)."""

    name = "coloring_rows"

    def __init__(self, size: int):
        super().__init__(size)
        self.triangle = Coloring(size)  # the encoding everything is checked in
        self.x_len = size
        self.x_vocab = 2**size + 1
        self._bits = 1 << np.arange(size)  # (n,) the bit of each vertex

    # ---- conversion ------------------------------------------------------------------------
    def to_rows(self, tri: np.ndarray) -> np.ndarray:
        """(..., E) adjacency-triangle tokens -> (..., n) vertex tokens 1 + neighbour mask."""
        tri, n = np.asarray(tri), self.size
        adj = np.zeros((*tri.shape[:-1], n, n), dtype=bool)
        adj[..., self.pairs[:, 0], self.pairs[:, 1]] = tri == EDGE
        adj = adj | np.swapaxes(adj, -1, -2)  # (..., n, n) symmetric
        return (1 + adj.astype(np.int64) @ self._bits).astype(np.uint16)  # (..., n)

    def to_triangle(self, rows: np.ndarray) -> np.ndarray:
        """(..., n) vertex tokens -> (..., E) adjacency-triangle tokens; PuzzleError if the
        neighbour sets disagree (j in i's set but not i in j's) or name a self-loop."""
        mask = np.asarray(rows).astype(np.int64) - 1  # (..., n)
        adj = (mask[..., :, None] & self._bits) > 0  # (..., n, n): adj[i, j] = bit j of vertex i
        if (adj != np.swapaxes(adj, -1, -2)).any():
            raise PuzzleError("the neighbour sets are not symmetric (j lists i but i does not list j)")
        if np.diagonal(adj, axis1=-2, axis2=-1).any():
            raise PuzzleError("a vertex lists itself as a neighbour (a self-loop)")
        edge = adj[..., self.pairs[:, 0], self.pairs[:, 1]]  # (..., E)
        return np.where(edge, EDGE, NO_EDGE).astype(np.uint8)

    # ---- the task, through the triangle -------------------------------------------------------
    def conflicts(self, x, y):
        return self.triangle.conflicts(self.to_triangle(x), y)

    def check_givens(self, x) -> None:
        self.check_tokens(x)
        self.to_triangle(x)

    def solutions(self, x, limit: int | None = None) -> np.ndarray:
        self.check_givens(x)
        return self.triangle.solutions(self.to_triangle(x), limit)

    def proper_mask(self, x: np.ndarray, chunk: int = 512) -> np.ndarray:
        return self.triangle.proper_mask(self.to_triangle(x), chunk)

    def orbit_keys(self, x: np.ndarray, max_orders: int = 40320) -> list[bytes]:
        return self.triangle.orbit_keys(self.to_triangle(x), max_orders)

    def augment(self, rng: np.random.Generator):
        tri = self.triangle.augment(rng)

        def apply(x, y):
            tx, ty = tri(self.to_triangle(x), y)
            return self.to_rows(tx), ty

        return apply

    def parse_puzzle(self, text: str) -> np.ndarray:
        return self.to_rows(self.triangle.parse_puzzle(text))

    def format_puzzle(self, x) -> str:
        return self.triangle.format_puzzle(self.to_triangle(x))

    def position_features(self) -> list[np.ndarray]:
        return [np.arange(self.size)]  # the vertex index

    def drawn(self, x, y):
        return self.triangle, self.to_triangle(x), y

    @property
    def seq_len(self) -> int:
        return self.size  # one token per vertex, the output on it

    input_dependent_relations = True  # adjacency is the input

    def relations(self) -> np.ndarray:
        """The part that depends on positions only: 1 for a vertex and itself, 0 for two vertices
        (`input_relations` adds adjacency)."""
        return Task.relations(self)

    def num_relations(self) -> int:
        return 3  # another vertex, itself, a neighbour

    def input_relations(self, x, xp):
        """(B, n, n) ids: 0 two vertices that are not adjacent, 1 a vertex and itself, 2 two
        adjacent vertices (bit j of vertex i's token − 1: the constraint "colours differ" is there)."""
        bits = xp.asarray(self._bits)  # (n,)
        adjacent = ((x[..., :, None] - 1) & bits) != 0  # (B, n, n): j in i's neighbour set
        itself = xp.asarray(self.relations()) == 1  # (n, n); a self-loop bit (not a valid input) is ignored
        return xp.where(itself, 1, xp.where(adjacent, 2, 0))  # (B, n, n)

    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        """Exactly `coloring`'s splits (same seed, same graphs), in the vertex encoding."""
        train, test = self.triangle.build_splits(cfg, rng)
        return (
            Split(self.to_rows(train.x), train.y, train.num_solutions),
            Split(self.to_rows(test.x), test.y, test.num_solutions),
        )


@functools.cache
def canonical_colorings(n: int) -> np.ndarray:
    """(R, n) int64: every colouring of n vertices with at most 3 colours in canonical form
    (colours numbered by first appearance), in lexicographic order."""
    rows = [[0]]
    for _ in range(n - 1):
        rows = [r + [c] for r in rows for c in range(min(max(r) + 2, COLORS))]
    rows = np.array(rows, dtype=np.int64).reshape(-1, n)
    rows.flags.writeable = False
    return rows


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_object(text: str, keys: set[str]) -> dict:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, and ints beyond Python's digit limit
        raise PuzzleError(f"not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise PuzzleError(f"expected a JSON object with keys {sorted(keys)}")
    if set(obj) != keys:
        missing, extra = sorted(keys - set(obj)), sorted(set(obj) - keys)
        raise PuzzleError(
            f"expected keys {sorted(keys)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    return obj
