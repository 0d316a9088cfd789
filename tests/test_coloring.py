import itertools
import json
from math import perm

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gram_ppl import PuzzleError, TaskConfig, build_dataset
from gram_ppl.tasks import Coloring
from gram_ppl.tasks.coloring import canonical_colorings

PETERSEN = "../examples/puzzles/petersen.jsonl"


def canonical(colors):
    names = {}
    return tuple(names.setdefault(c, len(names)) for c in colors)


def brute_force(n, edges):
    """Canonical forms of every proper colouring among all 3^n assignments."""
    proper = [c for c in itertools.product(range(3), repeat=n) if all(c[u] != c[v] for u, v in edges)]
    return proper, sorted({canonical(c) for c in proper})


def graph(n, edges):
    return Coloring(n).parse_puzzle(json.dumps({"n": n, "edges": [list(e) for e in edges]}))


def test_petersen_graph_has_120_proper_colourings(request):
    path = request.path.parent / PETERSEN
    task = Coloring(10)
    x = task.parse_puzzle(path.read_text())
    sols = task.solutions(x)
    assert len(sols) == 20 and task.is_valid(x, sols).all()
    used = [len(set(s.tolist())) for s in sols]
    assert sum(perm(3, k) for k in used) == 120  # relabelings of each canonical class


@given(n=st.integers(3, 7), data=st.data())
def test_solutions_agree_with_brute_force(n, data):
    pairs = list(itertools.combinations(range(n), 2))
    edges = [p for p in pairs if data.draw(st.booleans())]
    x = graph(n, edges)
    _, expected = brute_force(n, edges)
    got = [tuple(int(v) - 3 for v in s) for s in Coloring(n).solutions(x)]
    assert got == expected  # canonical forms, lexicographic order


@given(n=st.integers(3, 8), data=st.data())
def test_conflicts_count_monochromatic_edges_and_bad_tokens(n, data):
    task = Coloring(n)
    x = np.array(data.draw(st.lists(st.sampled_from([1, 2]), min_size=task.x_len, max_size=task.x_len)), dtype=np.uint8)
    y = np.array(data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), dtype=np.uint8)
    edges = [p for p, t in zip(itertools.combinations(range(n), 2), x, strict=True) if t == 2]
    expected = sum(y[u] == y[v] for u, v in edges) + sum(1 for c in y if not 3 <= c <= 5)
    assert int(task.conflicts(x, y)) == expected


def test_validity_ignores_colour_names():
    task = Coloring(3)
    x = graph(3, [(0, 1), (1, 2)])
    assert task.is_valid(x, np.array([5, 3, 5])) and not task.is_valid(x, np.array([3, 3, 4]))


@pytest.mark.parametrize("n", range(3, 11))
def test_canonical_colourings_count_set_partitions(n):
    stirling = sum(sum((-1) ** (k - j) * perm(k, k - j) // perm(k - j, k - j) * j**n for j in range(k + 1)) // perm(k, k)
                   for k in (1, 2, 3))  # fmt: skip
    rows = canonical_colorings(n)
    assert len(rows) == stirling == len({tuple(r) for r in rows})


def test_four_clique_is_not_colourable():
    task = Coloring(4)
    assert task.solutions(graph(4, itertools.combinations(range(4), 2))).shape == (0, 4)


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"n": 4, "edges": [[0, 0]]}', "self-loop"),
        ('{"n": 4, "edges": [[0, 4]]}', "outside 0..3"),
        ('{"n": 4, "edges": [[0, 1, 2]]}', "pair of vertex numbers"),
        ('{"n": 4, "edges": [[0, true]]}', "pair of vertex numbers"),
        ('{"n": 5, "edges": []}', "must be the integer 4"),
        ('{"n": 4, "edge": []}', "unknown \\['edge'\\]"),
        ('{"n": 4, "edges": {}}', "must be a list"),
        ("[1, 2]", "expected a JSON object"),
        ('{"n": 4,', "not valid JSON"),
    ],
)
def test_parse_errors(text, reason):
    with pytest.raises(PuzzleError, match=reason):
        Coloring(4).parse_puzzle(text)


def test_solution_format_round_trips_and_rejects_bad_colours():
    task = Coloring(4)
    y = task.parse_solution('{"colors": [0, 2, 1, 0]}')
    assert y.tolist() == [3, 5, 4, 3] and task.format_solution(y) == '{"colors": [0, 2, 1, 0]}'
    with pytest.raises(PuzzleError, match="integers 0..2"):
        task.parse_solution('{"colors": [0, 3, 1, 0]}')


def test_data_set_has_the_paper_sizes_and_only_colourable_distinct_graphs():
    ds = build_dataset(TaskConfig(name="coloring", size=8))
    graphs, first = np.unique(ds.train.x, axis=0, return_index=True)
    assert (len(graphs), len(ds.test)) == (7002, 255)
    assert len(ds.train) == np.minimum(ds.train.num_solutions[first], 64).sum()  # a pair per colouring, <= 64
    x = np.concatenate([graphs, ds.test.x])
    assert len(np.unique(x, axis=0)) == len(x)
    assert len(np.unique(np.concatenate([ds.train.x, ds.train.y], 1), axis=0)) == len(ds.train)  # distinct pairs
    task = ds.task
    assert task.is_valid(ds.train.x, ds.train.y).all() and task.is_valid(ds.test.x, ds.test.y).all()
    first = ds.test.y[:, 0]
    assert (first == 3).all()  # targets are canonical: vertex 0 has colour 0
    for i in range(0, 255, 51):
        assert ds.test.num_solutions[i] == len(task.solutions(ds.test.x[i]))
    assert 0.3 < (x == 2).mean() < 0.45
    one = build_dataset(TaskConfig(name="coloring", size=8, targets="one", num_train=50, num_test=5))
    assert (
        len(one.train) == 50 and len(np.unique(one.train.x, axis=0)) == 50
    )  # p = 0.4, slightly thinned by keeping colourable graphs only


def test_augmentation_relabels_vertices_consistently(rng):
    ds = build_dataset(TaskConfig(name="coloring", size=8, num_train=30, num_test=2))
    task = ds.task
    x, y = task.augment(rng)(ds.train.x, ds.train.y)
    assert task.is_valid(x, y).all() and (y[:, 0] == 3).all()  # still canonical
    assert ((x == 2).sum(1) == (ds.train.x == 2).sum(1)).all()  # same edge counts
    assert [len(task.solutions(a)) for a in x[:5]] == [len(task.solutions(a)) for a in ds.train.x[:5]]


def _relabel(task, x, perm):
    """The graph x (E,) with new vertex i = old vertex perm[i]."""
    n = task.size
    adj = np.zeros((n, n), dtype=np.uint8)
    adj[task.pairs[:, 0], task.pairs[:, 1]] = x
    adj = np.maximum(adj, adj.T)
    return adj[perm[task.pairs[:, 0]], perm[task.pairs[:, 1]]]


@pytest.mark.parametrize("n, classes", [(4, 11), (5, 34)])
def test_orbit_keys_count_the_isomorphism_classes(n, classes):
    """Every labelled graph on n vertices: as many keys as non-isomorphic graphs (11 and 34)."""
    task = Coloring(n)
    graphs = np.array(list(itertools.product([1, 2], repeat=task.x_len)), dtype=np.uint8)
    assert len(set(task.orbit_keys(graphs))) == classes
    # the invariant fallback (forced by allowing a single order) joins classes, never splits one
    forced = task.orbit_keys(graphs, max_orders=1)
    exact = task.orbit_keys(graphs)
    assert len(set(forced)) <= classes and all(
        len({f for f, e in zip(forced, exact, strict=True) if e == k}) == 1 for k in set(exact)
    )


def test_orbit_split_holds_out_every_relabelling():
    """Colouring-6 (720 vertex orders): no relabelling of a test graph is a training graph; the
    default split leaks them."""
    task = Coloring(6)
    perms = np.array(list(itertools.permutations(range(6))))
    leaks = {}
    for split in ("input", "orbit"):
        ds = build_dataset(TaskConfig(name="coloring", size=6, num_train=300, num_test=60, split=split))
        train = {r.tobytes() for r in ds.train.x}
        leaks[split] = sum(any(_relabel(task, x, p).tobytes() in train for p in perms) for x in ds.test.x)
        assert len(ds.test) >= 60 and len(np.unique(ds.train.x, axis=0)) + len(ds.test) == 360
    assert leaks["orbit"] == 0 and leaks["input"] > 10, leaks


def test_vertex_encoding_is_the_same_task_in_n_tokens():
    """coloring_rows: one token per vertex (1 + its neighbour mask); the same graphs, targets,
    counts, checker, text format and augmentation as coloring."""
    tri = build_dataset(TaskConfig(name="coloring", size=6, num_train=80, num_test=20))
    rows = build_dataset(TaskConfig(name="coloring_rows", size=6, num_train=80, num_test=20))
    task = rows.task
    assert (task.x_len, task.y_len, task.x_vocab, task.seq_len) == (6, 6, 65, 6)
    for a, b in ((tri.train, rows.train), (tri.test, rows.test)):  # same graphs in the same order
        assert (task.to_triangle(b.x) == a.x).all() and (b.y == a.y).all()
        assert (a.num_solutions == b.num_solutions).all() and (task.to_rows(a.x) == b.x).all()
    g = graph(6, [(0, 1), (0, 5), (2, 3)])
    assert task.to_rows(g).tolist() == [1 + 2 + 32, 1 + 1, 1 + 8, 1 + 4, 1, 1 + 1]  # bit j: neighbour j
    x = rows.test.x[:10]
    assert [len(task.solutions(xi)) for xi in x] == rows.test.num_solutions[:10].tolist()
    y = np.random.default_rng(0).integers(0, 7, (40, 6)).astype(np.uint8)  # pads and non-colours too
    assert (task.conflicts(x[:1], y) == Coloring(6).conflicts(tri.test.x[:1], y)).all()
    assert task.format_puzzle(x[0]) == Coloring(6).format_puzzle(tri.test.x[0])
    assert (task.parse_puzzle(task.format_puzzle(x[0])) == x[0]).all()
    ax, ay = task.augment(np.random.default_rng(3))(rows.train.x, rows.train.y)
    assert task.is_valid(ax, ay).all() and (ax != rows.train.x).any()
    assert sorted(task.orbit_keys(ax[:5])) == sorted(task.orbit_keys(rows.train.x[:5]))
    with pytest.raises(PuzzleError, match="not symmetric"):
        task.check_givens(np.array([1 + 2, 1, 1, 1, 1, 1]))  # 0 lists 1, 1 lists nobody
    with pytest.raises(PuzzleError, match="itself"):
        task.check_givens(np.array([1 + 1, 1, 1, 1, 1, 1]))
    with pytest.raises(PuzzleError, match="outside"):
        task.check_givens(np.array([65, 1, 1, 1, 1, 1]))
