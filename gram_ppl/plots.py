"""Plots of sampled hypotheses, trajectories and training (matplotlib, numpy only).

Every function returns a `PlotFigure`, a `matplotlib.figure.Figure` built without pyplot (no
global figure state, nothing shown) that renders itself as PNG in Jupyter whatever the backend
(a bare Figure shows only as text unless the inline backend is active); in a script call
`fig.save(path)` (or `fig.savefig`). Boards are drawn from their text format (docs/formats.md): N-Queens and
Sudoku as grids, colourings as graphs on a circle.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from matplotlib.figure import Figure

from gram_ppl.tasks import Task
from gram_ppl.tasks.coloring import COLOR0, COLORS, EDGE

INVALID = "#c0392b"


class PlotFigure(Figure):
    """A Figure that displays as PNG in Jupyter (`_repr_png_`) and saves with one call."""

    def _repr_png_(self) -> bytes:
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg

        buf = io.BytesIO()
        FigureCanvasAgg(self).print_png(buf)
        return buf.getvalue()

    def save(self, path, dpi: int = 120) -> None:
        """Write the figure to `path` (format from its suffix: .png, .pdf, .svg)."""
        self.savefig(path, dpi=dpi)


PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860")


def arviz_plot(plot, *args, figsize=(5.6, 3.4), **kwargs) -> PlotFigure:
    """An ArviZ plot (`az.plot_ppc`, `az.plot_dist`, ...) drawn into a PlotFigure (one axes,
    passed as `ax=`), so it shows in a notebook whatever the backend and saves with one call:
    `plots.arviz_plot(az.plot_ppc, idata, group="prior", var_names=["conflicts"])`."""
    fig = PlotFigure(figsize=figsize, layout="constrained")
    plot(*args, ax=fig.subplots(), **kwargs)
    return fig


def hypothesis_gallery(task: Task, x: np.ndarray, samples: np.ndarray, max_boards: int = 12) -> PlotFigure:
    """The distinct boards among samples (N, L_y) for the puzzle x (L_x): valid ones first, then
    invalid, each group most frequent first, each with its count; invalid boards framed and titled
    in red with their conflicting cells marked. Colourings are grouped up to colour names. When
    not all fit, the `max_boards` panels are shared between valid and invalid boards in the
    proportion of samples each holds (at least one each where the samples have any), so the
    gallery shows what a sample looks like, not only the successes."""
    samples = np.asarray(samples)
    if samples.ndim != 2 or len(samples) == 0:
        raise ValueError(f"samples must be (N ≥ 1, L_y), got shape {samples.shape}")
    keys = [task.canonical(s).tobytes() for s in samples]
    every = Counter(keys)
    first = {k: samples[keys.index(k)] for k in every}
    valid = {k: bool(task.is_valid(x, first[k])) for k in every}
    ranked = sorted(every.items(), key=lambda kc: (not valid[kc[0]], -kc[1]))  # valid first, frequent first
    good = [kc for kc in ranked if valid[kc[0]]]
    bad = [kc for kc in ranked if not valid[kc[0]]]
    share_valid = sum(c for _, c in good) / len(samples)
    slots = min(len(good), max(int(round(max_boards * share_valid)), 1 if good else 0))
    slots = min(slots, max_boards - min(len(bad), 1)) if bad else slots  # an invalid panel where there are any
    shown_bad = bad[: max_boards - slots]
    counts = good[: max_boards - len(shown_bad)] + shown_bad  # slots one group cannot fill go to the other
    cols = min(4, len(counts))
    rows = -(-len(counts) // cols)
    fig = PlotFigure(figsize=(max(2.6 * cols, 6.0), 2.8 * rows), layout="constrained")  # room for the title
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (key, c) in zip(axes, counts, strict=False):
        draw_board(ax, task, x, first[key], valid[key])
        status = "valid" if valid[key] else "invalid"
        ax.set_title(f"{c}/{len(samples)} ({status})", fontsize=9, color="black" if valid[key] else INVALID)
    for ax in axes[len(counts) :]:
        ax.set_axis_off()
    distinct_valid = sum(valid.values())
    share = sum(c for k, c in every.items() if valid[k]) / len(samples)
    fig.suptitle(f"{len(every)} distinct boards, {distinct_valid} of them valid ({share:.0%} of the "
                 f"{len(samples)} samples); {len(counts)} shown", fontsize=10)  # fmt: skip
    return fig


def draw_board(ax, task: Task, x: np.ndarray, y: np.ndarray, valid: bool = True) -> None:
    """One board on `ax`: a grid for N-Queens and Sudoku (givens in bold), a graph for colouring."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("black" if valid else INVALID)
        spine.set_linewidth(1 if valid else 3)
    task, x, y = task.drawn(x, y)  # the row and vertex encodings are drawn as the board / graph they stand for
    if task.drawing == "graph":
        _draw_graph(ax, task, x, y)
        return
    if task.drawing == "canvas":  # ARC: the decoded grid in ARC's colours
        _draw_arc(ax, task, y)
        return
    n = task.size
    chars = task.format_solution(y)
    puzzle = task.format_puzzle(x)  # a given is a character of the puzzle's own grid (digits: a label, no grid)
    given = np.asarray([c not in ".0" for c in puzzle]) if len(puzzle) == len(chars) else np.zeros(len(chars), bool)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.set_aspect("equal")
    for i in range(n + 1):
        ax.axhline(i, color="0.7", lw=0.5)
        ax.axvline(i, color="0.7", lw=0.5)
    bad = conflict_cells(task, x, y) if not valid else np.zeros(n * n, bool)
    for idx in np.flatnonzero(bad):  # the cells that break a constraint, shaded
        r, c = divmod(int(idx), n)
        ax.add_patch(_square((c, r), INVALID))
    for idx, ch in enumerate(chars):
        r, c = divmod(idx, n)
        if task.drawing == "queens":
            if ch == "Q":
                ax.add_patch(_circle((c + 0.5, r + 0.5), 0.33, "black" if given[idx] else PALETTE[0]))
        elif ch != ".":
            weight = "bold" if given[idx] else "normal"
            ax.text(c + 0.5, r + 0.5, ch, ha="center", va="center", fontsize=max(5, 40 // n), fontweight=weight)


def conflict_cells(task: Task, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(L_y,) bool: the positions of board y that break a constraint (the task's own hook,
    `Task.conflict_cells`: N-Queens and Sudoku mark cells; colourings mark clashing edges instead)."""
    return task.conflict_cells(np.asarray(x), np.asarray(y))


def _square(corner, color):
    from matplotlib.patches import Rectangle

    return Rectangle(corner, 1, 1, color=color, alpha=0.25, lw=0)


def _circle(center, radius, color):
    from matplotlib.patches import Circle

    return Circle(center, radius, color=color)


ARC_COLOURS = ("#000000", "#0074d9", "#ff4136", "#2ecc40", "#ffdc00", "#aaaaaa", "#f012be", "#ff851b", "#7fdbff",
               "#870c25")  # the ARC viewer's palette, colours 0-9  # fmt: skip


def _draw_arc(ax, task, y):
    from matplotlib.colors import ListedColormap

    from gram_ppl.tasks.arc import from_canvas

    grid = from_canvas(y, task.size)  # (h, w) colours; (0, 0) when the canvas holds no grid
    if grid.size:
        ax.imshow(grid, cmap=ListedColormap(ARC_COLOURS), vmin=0, vmax=9, interpolation="nearest")
    else:
        ax.text(0.5, 0.5, "no grid", ha="center", va="center", transform=ax.transAxes)


def _draw_graph(ax, task, x, y):
    n = task.size
    angle = 2 * np.pi * np.arange(n) / n
    pos = np.stack([np.cos(angle), np.sin(angle)], 1)  # (n, 2)
    colors = np.asarray(y).astype(int) - COLOR0  # colour index 0..COLORS-1 (others: not a colour)
    for (u, v), tok in zip(task.pairs, np.asarray(x), strict=True):
        if tok == EDGE:
            clash = colors[u] == colors[v]
            ax.plot(*pos[[u, v]].T, color=INVALID if clash else "0.6", lw=2 if clash else 0.8, zorder=1)
    for i in range(n):
        face = PALETTE[colors[i]] if 0 <= colors[i] < COLORS else "white"
        ax.scatter(*pos[i], s=140, color=face, edgecolors="black", zorder=2)
        ax.text(*pos[i], str(i), ha="center", va="center", fontsize=6, zorder=3)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_aspect("equal")


def coverage_and_depth(results: dict[str, dict]) -> PlotFigure:
    """Coverage against the number of samples and validity against depth for several runs on the
    same axes; each value is a `gram evaluate` metrics dict (coverage_curve, valid_by_depth).
    Where the dict says how many puzzles and samples it holds (`puzzles`, `num_samples`), the
    validity carries its 95% Wilson interval over those draws."""
    if not results:
        raise ValueError("no results to plot")
    fig = PlotFigure(figsize=(9, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for label, m in results.items():
        curve = m["coverage_curve"]
        ax1.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=label)
        depth = np.asarray(m["valid_by_depth"], dtype=float)
        (line,) = ax2.plot(np.arange(1, len(depth) + 1), depth, marker="o", label=label)
        if "puzzles" in m and "num_samples" in m:
            n = m["puzzles"] * m["num_samples"]
            lo, hi = binomial_interval(np.round(depth * n), n)
            ax2.fill_between(np.arange(1, len(depth) + 1), lo, hi, color=line.get_color(), alpha=0.2)
    ax1.set(xlabel="samples per puzzle N", ylabel="coverage@N", ylim=(0, 1.02), title="coverage against width")
    ax2.set(xlabel="supervision steps", ylabel="valid (one sample)", ylim=(0, 1.02), title="validity against depth")
    ax1.legend(fontsize=8)
    return fig


def solution_keys(task: Task, x: np.ndarray, boards: np.ndarray) -> list:
    """A hashable key per board (N, L_y) of the puzzle x: its canonical bytes when valid, None
    when not; the `final_keys` that `trajectory_fan` colours by."""
    valid = task.is_valid(np.asarray(x)[None], boards)
    return [task.canonical(b).tobytes() if v else None for b, v in zip(boards, valid, strict=True)]


def trajectory_fan(
    h_pca: np.ndarray, final_keys: list, title: str = "", *, with_z0: bool = True, named: bool = False
) -> PlotFigure:
    """N trajectories of one puzzle, h projected per step (N, S+1, 2) on axes fitted on the final
    states (`diagnostics.pca_per_puzzle`), each coloured by the solution it ends in (`final_keys`,
    e.g. the final board's bytes; None for invalid), legend in order of frequency. Right: per
    step, how far apart the solution groups are, as the ratio of the between-group to the
    within-group mean squared distance in the projection; the step where it first exceeds 1 is
    where the trajectories split. with_z0=False: h_pca holds steps 1..S only (the InferenceData's
    `h_pca`). named=True: the keys are names for the legend (a digit classifier's classes)."""
    h_pca = np.asarray(h_pca)
    if h_pca.ndim != 3 or h_pca.shape[-1] < 2 or len(final_keys) != len(h_pca):
        raise ValueError("h_pca must be (N, steps, ≥2) with one final key per trajectory")
    fig = PlotFigure(figsize=(9.6, 4.2), layout="constrained")
    ax, ax_split = fig.subplots(1, 2, width_ratios=[1.6, 1])
    ranked = [k for k, _ in Counter(k for k in final_keys if k is not None).most_common()]
    start = 1 if with_z0 and h_pca.shape[1] > 2 else 0  # z_0 (step 0) is far from the rest: left out
    first = start if with_z0 else 1
    handles = {}
    for traj, key in zip(h_pca, final_keys, strict=True):
        rank = ranked.index(key) if key is not None else None
        color = "0.75" if rank is None else (PALETTE[rank] if rank < len(PALETTE) else "0.4")
        label = "invalid" if rank is None else (f"solution {rank + 1}" if rank < len(PALETTE) else "other solutions")
        label = str(key) if named and rank is not None and rank < len(PALETTE) else label
        pts = traj[start:]
        (line,) = ax.plot(pts[:, 0], pts[:, 1], color=color, lw=0.8, alpha=0.8)
        order = len(PALETTE) + 1 if rank is None else min(rank, len(PALETTE))
        handles.setdefault(order, (line, f"{label} ({final_keys.count(key)})" if not named or rank is None else label))
        ax.scatter(pts[:, 0], pts[:, 1], c=np.arange(len(pts)), cmap="Greys", vmin=-2, vmax=len(pts), s=8, zorder=3)
        ax.scatter(pts[-1, 0], pts[-1, 1], color=color, s=18, zorder=4, edgecolors="black", linewidths=0.4)
    last = first + len(h_pca[0, start:]) - 1
    steps = f"steps {first}–{last}, light to dark" + (" (z_0 left out)" if first and with_z0 else "")
    ax.set(xlabel="PC 1 (of the final states)", ylabel="PC 2", title=title or f"trajectories of h: {steps}")
    ordered = [handles[k] for k in sorted(handles)]
    ax.legend([h for h, _ in ordered], [t for _, t in ordered], fontsize=7, title="final board", title_fontsize=7)
    ratio = split_ratio(h_pca[:, start:], final_keys)
    xs = np.arange(first, first + len(ratio))
    if np.isfinite(ratio).any():
        ax_split.plot(xs, ratio, marker="o", ms=3, color=PALETTE[0])
        ax_split.axhline(1.0, color="0.5", ls="--", lw=0.8, label="between = within")
        split = next((int(x) for x, r in zip(xs, ratio, strict=True) if r > 1), None)
        if split is not None:
            ax_split.axvline(split, color=INVALID, lw=1, label=f"split at step {split}")
        ax_split.set(xticks=xs, ylim=(0, None))
        ax_split.legend(fontsize=7)
        what = "ratio between / within solutions"
    else:
        ax_split.text(0.5, 0.5, "fewer than two solutions\nreached by 2+ draws", ha="center", va="center",
                      transform=ax_split.transAxes, fontsize=8)  # fmt: skip
        what = "no split to show"
    ax_split.set(xlabel="supervision step", ylabel=what, title="when the trajectories split")
    return fig


def split_ratio(h_pca: np.ndarray, final_keys: list) -> np.ndarray:
    """Per step, the mean squared distance between the centres of the solution groups (valid
    final boards reached by at least 2 draws) over the mean squared distance of draws to their
    group's centre, in the projection h_pca (N, steps, 2): (steps,), nan with fewer than 2 groups."""
    groups = [k for k, c in Counter(k for k in final_keys if k is not None).items() if c >= 2]
    if len(groups) < 2:
        return np.full(h_pca.shape[1], np.nan)
    idx = [np.array([i for i, k in enumerate(final_keys) if k == g]) for g in groups]
    centres = np.stack([h_pca[i].mean(0) for i in idx])  # (G, steps, 2)
    within = np.mean([((h_pca[i] - c) ** 2).sum(-1).mean(0) for i, c in zip(idx, centres, strict=True)], 0)
    between = ((centres - centres.mean(0)) ** 2).sum(-1).mean(0)  # (steps,)
    return between / np.maximum(within, 1e-12)


def commit_plot(boards: np.ndarray, valid: np.ndarray, vocab: int, title: str = "", first_step: int = 0) -> PlotFigure:
    """When N trajectories of one puzzle commit to their answer, boards (N, steps, L_y) decoded
    after each step (the first is step `first_step`: 0 for z_0's decode) and valid (N, steps):
    left, the step from which each draw's board no longer changes (`diagnostics.commit_steps`);
    right, per step, the share of draws whose board is valid (95% interval) and the mean per-cell
    entropy of the decoded boards over the draws (nats)."""
    from gram_ppl.diagnostics import board_entropy, commit_steps

    boards, valid = np.asarray(boards), np.asarray(valid, dtype=bool)
    N, S1 = boards.shape[:2]
    commit = commit_steps(boards) + first_step
    fig = PlotFigure(figsize=(9.0, 3.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ok = valid[:, -1]
    bins = np.arange(first_step, first_step + S1 + 1) - 0.5
    ax1.hist([commit[ok], commit[~ok]], bins=bins, stacked=True, color=[PALETTE[0], INVALID], alpha=0.8,
             label=[f"valid at the end ({ok.sum()})", f"invalid at the end ({(~ok).sum()})"])  # fmt: skip
    steps = np.arange(first_step, first_step + S1)
    ax1.set(xlabel="step from which the decoded board stays the same", ylabel="draws", xticks=steps,
            title=title or f"commit step of {N} draws")  # fmt: skip
    ax1.legend(fontsize=7)
    lo, hi = binomial_interval(valid.sum(0), N)
    ax2.plot(steps, valid.mean(0), marker="o", ms=3, color=PALETTE[0], label="valid share (95% interval)")
    ax2.fill_between(steps, lo, hi, color=PALETTE[0], alpha=0.2)
    ax2.set(xlabel="supervision step", ylabel="share valid", ylim=(0, 1), xticks=steps, title="decoded board per step")
    twin = ax2.twinx()
    entropy = board_entropy(boards, vocab).mean(-1)
    twin.plot(steps, entropy, marker="s", ms=3, color=PALETTE[1], label="entropy")
    twin.set(ylabel="mean cell entropy over draws (nats)", ylim=(0, max(float(entropy.max()) * 1.15, 1e-3)))
    lines = ax2.get_lines()[:1] + twin.get_lines()
    ax2.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    return fig


def binomial_interval(successes, trials, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (95% by default) of a binomial share: (lower, upper)."""
    k, n = np.asarray(successes, dtype=np.float64), np.maximum(np.asarray(trials, dtype=np.float64), 1)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def solution_coverage(task: Task, x: np.ndarray, samples: np.ndarray, solutions: np.ndarray) -> PlotFigure:
    """How often each exact solution of the puzzle x was sampled among samples (N, L_y): one bar
    per solution (solutions (m, L_y), e.g. task.solutions(x)), the share of invalid samples, and
    the uniform share 1/m that a sampler covering the solution set evenly would give."""
    samples, solutions = np.asarray(samples), np.asarray(solutions)
    if samples.ndim != 2 or solutions.ndim != 2 or len(solutions) == 0:
        raise ValueError("samples must be (N, L_y) and solutions (m ≥ 1, L_y)")
    index = {task.canonical(s).tobytes(): i for i, s in enumerate(solutions)}
    counts = np.zeros(len(solutions))
    for s in samples:
        i = index.get(task.canonical(s).tobytes())
        if i is not None:
            counts[i] += 1
    share = counts / len(samples)
    fig = PlotFigure(figsize=(max(4, 0.5 * len(solutions) + 2), 3.2), layout="constrained")
    ax = fig.subplots()
    every = np.append(counts, len(samples) - counts.sum())
    lo, hi = binomial_interval(every, len(samples))
    err = [every / len(samples) - lo, hi - every / len(samples)]
    ax.bar(np.arange(len(solutions)), share, color=PALETTE[0], label="sampled share (95% interval)",
           yerr=[e[:-1] for e in err], capsize=2)  # fmt: skip
    ax.bar([len(solutions)], [1 - share.sum()], color=INVALID, alpha=0.6, label="invalid",
           yerr=[e[-1:] for e in err], capsize=2)  # fmt: skip
    ax.axhline(1 / len(solutions), color="black", ls="--", lw=1, label=f"uniform 1/{len(solutions)}")
    ax.set_xticks(list(range(len(solutions) + 1)), [str(i + 1) for i in range(len(solutions))] + ["✗"])
    ax.set(xlabel="exact solution", ylabel="share of samples", ylim=(0, 1),
           title=f"coverage {int((counts > 0).sum())}/{len(solutions)} solutions, {len(samples)} samples")  # fmt: skip
    ax.legend(fontsize=7)
    return fig


def image_gallery(panels: dict[str, np.ndarray], per_row: int = 10, side: int = 8, captions=None) -> PlotFigure:
    """Rows of binary images side by side, one block per entry of `panels` (name -> (M, side²)
    tokens, 2 = on: the digits task), e.g. {"GRAM": samples, "real": held-out digits}; at most
    2 rows of per_row images each. `captions` (name -> list of M strings) titles each image
    (the judge's predicted class, say)."""
    blocks = {k: np.asarray(v).reshape(-1, side * side)[: 2 * per_row] for k, v in panels.items()}
    if not blocks or any(len(v) == 0 for v in blocks.values()):
        raise ValueError("image_gallery needs at least one image in every panel")
    rows = sum(-(-len(v) // per_row) for v in blocks.values())
    fig = PlotFigure(figsize=(0.9 * per_row, 1.05 * rows + 0.3 * len(blocks)), layout="constrained")
    figs = fig.subfigures(len(blocks), 1, squeeze=False).ravel()
    for sub, (name, imgs) in zip(figs, blocks.items(), strict=True):
        r = -(-len(imgs) // per_row)
        axes = sub.subplots(r, per_row, squeeze=False).ravel()
        for i, ax in enumerate(axes):
            ax.set_axis_off()
            if i < len(imgs):
                ax.imshow((imgs[i] == 2).reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
                if captions and name in captions:
                    ax.set_title(str(captions[name][i]), fontsize=7)
        sub.suptitle(name, fontsize=9)
    return fig


def entropy_heatmap(boards: np.ndarray, vocab: int, shape: tuple[int, int] | None = None) -> PlotFigure:
    """Per-cell entropy (nats) of the sampled tokens at every step, boards (N, S+1, L_y); one
    panel per step, cells laid out in `shape` (default one row)."""
    from gram_ppl.diagnostics import board_entropy

    boards = np.asarray(boards)
    N, S1, L = boards.shape
    shape = shape or (1, L)
    ent = board_entropy(boards, vocab)  # (S+1, L)
    fig = PlotFigure(figsize=(2.2 * S1, 2.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, S1, squeeze=False)).ravel()
    top = max(float(ent.max()), 1e-6)
    for s, ax in enumerate(axes):
        im = ax.imshow(ent[s].reshape(shape), vmin=0, vmax=top, cmap="viridis")
        ax.set(title=f"step {s}", xticks=[], yticks=[])
        ax.set_xticks(np.arange(-0.5, shape[1]), minor=True)  # the cell grid
        ax.set_yticks(np.arange(-0.5, shape[0]), minor=True)
        ax.grid(which="minor", color="white", lw=0.6)
        ax.tick_params(which="minor", length=0)
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="entropy (nats)")
    return fig


def hamming_histogram(
    samples: np.ndarray, labels: dict[str, np.ndarray] | None = None, solutions: np.ndarray | None = None
) -> PlotFigure:
    """Histogram of pairwise Hamming distances between the samples (N, L_y) of one puzzle, or of
    several sets given as `labels` {name: (N, L_y)} on the same axes; with the puzzle's exact
    `solutions` (m, L_y), the distances between them as the reference (what a sampler that covers
    the solution set shows; 0 only for copies of one board)."""
    sets = labels or {"samples": np.asarray(samples)}
    fig = PlotFigure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    L = next(iter(sets.values())).shape[1]
    bins = np.arange(L + 2) - 0.5
    for name, s in sets.items():
        d = (s[:, None] != s[None]).sum(-1)[np.triu_indices(len(s), 1)]
        ax.hist(d, bins=bins, alpha=0.6, density=True, label=f"{name} ({len(s)} samples)")
    if solutions is not None and len(solutions) > 1:
        sol = np.asarray(solutions)
        d = (sol[:, None] != sol[None]).sum(-1)[np.triu_indices(len(sol), 1)]
        ax.hist(d, bins=bins, density=True, histtype="step", color="black", lw=1.2,
                label=f"between the {len(sol)} exact solutions")  # fmt: skip
    elif solutions is not None:
        ax.axvline(0, color="black", lw=1.2, label="one exact solution: 0")
    ax.set(xlabel="Hamming distance between two samples (cells)", ylabel="share of pairs")
    ax.legend(fontsize=8)
    return fig


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start), as Pyro's SVI tutorials
    smooth their ELBO traces."""
    values = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def training_traces(history: list[dict]) -> PlotFigure:
    """A run's history.json in the layout of Pyro's SVI tutorials: the loss (the surrogate negative
    ELBO plus head losses) and the cross-entropy per batch with their running means, the KL of
    every supervision step (running means), the learning rate; the held-out validity of prior
    (and guide) samples with 95% Wilson intervals and the held-out importance-weighted bound on
    log p(y | x) (8 prior trajectories per puzzle) at each evaluation. Log axes where positive."""
    rows = [r for r in history if "loss" in r]
    if not rows:
        raise ValueError("the history has no training records")
    evals = [r for r in history if "eval" in r]
    step = np.array([r["step"] for r in rows])
    window = max(1, len(rows) // 50)
    fig = PlotFigure(figsize=(13, 6.2), layout="constrained")
    (ax1, ax2, ax3), (ax4, ax5, ax6) = fig.subplots(2, 3)
    for ax, key, title in ((ax1, "loss", "−ELBO surrogate + heads"), (ax2, "ce", "cross-entropy")):
        values = np.array([r[key] for r in rows], dtype=float)
        ax.plot(step, values, lw=0.5, color="0.75", label="per batch")
        ax.plot(step, running_mean(values, window), lw=1.2, color=PALETTE[0], label=f"running mean ({window})")
        ax.set(xlabel="batch", ylabel="nats per puzzle", title=title)
        ax.legend(fontsize=7)
        if (values > 0).all():
            ax.set_yscale("log")
    kl = np.array([r["kl"] for r in rows], dtype=float).reshape(len(rows), -1)  # (steps, N_sup)
    for n in range(kl.shape[1]):
        ax3.plot(step, running_mean(kl[:, n], window), lw=0.9, label=f"step {n + 1}")
    ax3.set(xlabel="batch", ylabel="nats per puzzle", title=f"KL(q ‖ p) per supervision step (running mean {window})")
    if kl.shape[1]:
        ax3.legend(fontsize=7)
    if all("lr" in r for r in rows):
        ax4.plot(step, [r["lr"] for r in rows], lw=1, color=PALETTE[2])
    ax4.set(xlabel="batch", ylabel="learning rate", title="learning rate")
    for key, label, color in (("prior_valid", "prior samples", PALETTE[0]), ("guide_valid", "guide samples", "0.6")):
        trials = ("prior_draws", "eval_puzzles") if key == "prior_valid" else ("eval_puzzles",)
        pts = [
            (r["step"], r["eval"][key], next((r[t] for t in trials if t in r), None)) for r in evals if key in r["eval"]
        ]
        if pts:
            xs, ps, ns = (np.array(v, dtype=float) for v in zip(*[(a, b, c or np.nan) for a, b, c in pts], strict=True))
            ax5.plot(xs, ps, marker="o", ms=3, lw=1, color=color, label=label)
            if np.isfinite(ns).all():
                lo, hi = binomial_interval(np.round(ps * ns), ns)
                ax5.fill_between(xs, lo, hi, color=color, alpha=0.2)
    ax5.set(xlabel="batch", ylabel="share valid (1 sample)", title="held-out validity (95% intervals)", ylim=(0, 1))
    if evals:
        ax5.legend(fontsize=7)
    pts = [(r["step"], r["eval"]["heldout_log_p"]) for r in evals if "heldout_log_p" in r["eval"]]
    if pts:
        ax6.plot(*zip(*pts, strict=True), marker="o", ms=3, lw=1, color=PALETTE[0])
    ax6.set(xlabel="batch", ylabel="nats per puzzle", title="held-out log p(y | x), IW bound (8 prior draws)")
    return fig


def distinct_growth(boards: np.ndarray, valid: np.ndarray, total: int | None = None, title: str = "") -> PlotFigure:
    """How many distinct valid boards appear as the number of samples grows, for samples (M, L_y)
    in the order drawn with their validity (M,); with the size `total` of the set of valid boards
    (288 for 4×4 Sudoku), the expectation under uniform sampling of that set, K(1 − (1 − 1/K)^n),
    and the same at the samples' valid share p, K(1 − (1 − p/K)^n): a sampler that covers the
    set evenly follows the latter; one that repeats favourites falls below it."""
    boards, valid = np.asarray(boards), np.asarray(valid, dtype=bool)
    seen, curve = set(), []
    for b, ok in zip(boards, valid, strict=True):
        if ok:
            seen.add(b.tobytes())
        curve.append(len(seen))
    n = np.arange(1, len(boards) + 1)
    fig = PlotFigure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(n, curve, color=PALETTE[0], lw=1.5, label=f"samples ({valid.mean():.0%} valid)")
    if total:
        p = max(float(valid.mean()), 1e-12)
        ax.plot(n, total * (1 - (1 - 1 / total) ** n), color="black", ls="--", lw=1, label="uniform, all valid")
        ax.plot(n, total * (1 - (1 - p / total) ** n), color="0.5", ls=":", lw=1, label=f"uniform at {p:.0%} valid")
        ax.axhline(total, color="0.7", lw=0.8)
    ax.set(xlabel="samples", ylabel="distinct valid boards", title=title or "distinct valid boards against samples")
    ax.legend(fontsize=7)
    return fig


def prior_check(stats: dict[str, dict[str, np.ndarray]], num_cells: int | None = None) -> PlotFigure:
    """The prior predictive check of several PRIORS blocks side by side
    (`inference.trajectories.prior_predictive_check`): the share of valid boards with its 95%
    interval, the distributions of conflicts, of the distance to the nearest exact solution and
    of the number of distinct boards per puzzle, and the RMS of h per step (median and 10-90%
    band over draws and networks), one colour per block."""
    names = list(stats)
    if not names:
        raise ValueError("prior_check needs at least one block")
    fig = PlotFigure(figsize=(15, 3.4), layout="constrained")
    axes = fig.subplots(1, 5)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    pos = np.arange(len(names))
    valid = [stats[n]["valid"] for n in names]
    share = np.array([v.mean() for v in valid])
    lo, hi = binomial_interval(np.array([v.sum() for v in valid]), np.array([len(v) for v in valid]))
    axes[0].bar(pos, share, color=colors, yerr=[share - lo, hi - share], capsize=3)
    axes[0].set(
        ylabel="share of draws", title="valid boards (95% interval)", ylim=(0, max(0.05, float(hi.max()) * 1.2))
    )
    for ax, key, title in ((axes[1], "conflicts", "violated constraints"),
                           (axes[2], "distance", "cells to the nearest solution"),
                           (axes[3], "distinct", "distinct boards per puzzle")):  # fmt: skip
        data = [stats[n].get(key) for n in names]
        if any(d is None or len(d) == 0 for d in data):
            ax.text(0.5, 0.5, "not computed (no solution sets)", ha="center", va="center", transform=ax.transAxes)
        else:
            parts = ax.violinplot(data, positions=pos, showmedians=True)
            for body, color in zip(parts["bodies"], colors, strict=True):
                body.set_facecolor(color)
        ax.set(title=title)
    if num_cells:
        axes[2].axhline(num_cells, color="0.5", ls=":", lw=0.8)
    for ax in axes[:4]:
        ax.set_xticks(pos, [f"{i + 1}" for i in pos])
        ax.set_xlabel("block")
    for i, n in enumerate(names):
        h = stats[n]["h_norm"]  # (draws, S+1)
        steps = np.arange(h.shape[1])
        axes[4].plot(steps, np.median(h, 0), color=colors[i], marker="o", ms=3, label=f"{i + 1}: {n}",
                     ls=("-", "--", "-.", ":")[i % 4])  # blocks that coincide stay visible  # fmt: skip
        axes[4].fill_between(steps, np.percentile(h, 10, 0), np.percentile(h, 90, 0), color=colors[i], alpha=0.15)
    axes[4].set(xlabel="supervision step (0: z_0)", ylabel="RMS of h", title="h per step (median, 10-90%)")
    axes[4].legend(fontsize=7)
    return fig


def khat_plot(khat: np.ndarray, threshold: float) -> PlotFigure:
    """PSIS k̂ per puzzle against the sample-size-aware threshold min(1 − 1/log10 S, 0.7) that the
    report uses (red above it), and 0.7, above which no number of draws makes the estimate reliable."""
    khat = np.asarray(khat)
    fig = PlotFigure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    bad = khat > threshold
    ax.scatter(np.arange(len(khat)), khat, c=np.where(bad, INVALID, PALETTE[0]), s=18)
    ax.axhline(threshold, color=INVALID, lw=1, label=f"threshold for these draws: {threshold:.2f} (above: unreliable)")
    if threshold < 0.7:
        ax.axhline(0.7, color="0.5", ls="--", lw=0.8, label="0.7: unreliable for any number of draws")
    ax.set(
        xlabel="puzzle",
        ylabel="Pareto k̂",
        title=f"PSIS k̂ of the guide per puzzle: {int(bad.sum())} of {len(khat)} above",
    )
    ax.legend(fontsize=8)
    return fig
