"""Multi-trajectory inference: N prior trajectories per puzzle, batched, with optional ACT halting
and selection by majority vote or by the LPRM value head (paper §7, Appendix A)."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np

from gram_ppl.config import ConfigError, sample_depth, temperature_schedule
from gram_ppl.inference.backend import get_backend
from gram_ppl.inference.resources import check_depth, check_memory, sample_bytes, sample_chunks
from gram_ppl.seeds import seed_for
from gram_ppl.tasks import Task, task_for


class Rollout(NamedTuple):
    boards: np.ndarray  # (N, B, L_y) decoded argmax boards, at each trajectory's halting step
    halt_step: np.ndarray  # (N, B) supervision steps used, 1..depth
    value: np.ndarray  # (N, B) LPRM value v_ψ(h) at that step
    per_step: np.ndarray  # (S, N, B, L_y) boards after each supervision step (S steps run)


def rollout(
    mod,
    net,
    cfg,
    x,
    num_samples: int,
    depth: int,
    halt: bool = False,
    temperature: float | tuple[float, float] | None = None,
    seed: int = 0,
) -> Rollout:
    """Run N trajectories from the prior for each puzzle x (B, L_x), one supervision step at a
    time, with the run's backend (cfg.backend), seeded with `seed`. With `halt`, a trajectory
    stops at the first step whose halt head says σ(q) > 0.5 (the paper's simplified rule);
    otherwise every trajectory runs `depth` steps. `temperature` scales the prior's σ
    (inference/tempering.py): one τ, a pair (start, end) moving linearly over the `depth` steps,
    or None, the run's (config.temperature_schedule)."""
    x = np.asarray(x)
    task = task_for(cfg.task)
    check_depth(depth)
    temperature = temperature_schedule(cfg, depth, temperature)  # τ of each step
    chunks = chunk_seeds(cfg, task, num_samples, x.shape[0], seed)
    rows = num_samples * x.shape[0]
    # one chunk's sampling pass, and the answer kept whole: every trajectory's board after each step and at its end (int64)
    check_memory(8 * (depth + 1) * rows * task.y_len + sample_bytes(cfg, task, chunks[0][0] * x.shape[0]),
                 f"sampling {rows:,} trajectories (their boards at each of {depth} steps)")  # fmt: skip
    parts = [_rollout(mod, net, cfg, x, n, depth, halt, temperature, s) for n, s in chunks]
    if len(parts) == 1:
        return parts[0]
    S = max(len(p.per_step) for p in parts)  # a chunk whose trajectories all halted early repeats its last boards
    per_step = [np.concatenate([p.per_step, np.repeat(p.per_step[-1:], S - len(p.per_step), 0)]) for p in parts]
    return Rollout(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("boards", "halt_step", "value")),
                   np.concatenate(per_step, axis=1))  # fmt: skip


def halts(halt_logit):
    """The halting rule (the paper's simplified ACT): stop where σ(q) > 0.5, i.e. the halt logit q > 0
    (numpy arrays or torch tensors; inference/trajectories.py reads the same rule)."""
    return halt_logit > 0


CHUNK_SEED = 1_000_003  # chunk i of a large sampling call draws with seed + i * CHUNK_SEED (chunk 0: seed)


def chunk_seeds(cfg, task, num_samples: int, puzzles: int, seed: int) -> list[tuple[int, int]]:
    """(samples, seed) of each chunk a call of `num_samples` trajectories per puzzle runs in
    (resources.sample_chunks: each chunk's pass fits in memory; one chunk, the whole call, when it fits)."""
    return [(n, seed + CHUNK_SEED * i) for i, n in enumerate(sample_chunks(cfg, task, num_samples, puzzles))]


def _rollout(mod, net, cfg, x, num_samples, depth, halt, temperature, seed) -> Rollout:
    """`rollout` for one chunk of trajectories that fits in memory at once."""
    B, rows = x.shape[0], num_samples * x.shape[0]
    steps_iter = get_backend(cfg.backend).prior_steps(mod, net, cfg, x, num_samples, seed, temperature)
    boards = np.zeros((rows, net.y_len), np.int64)  # (N*B, L_y)
    steps = np.full(rows, depth)
    value = np.zeros(rows, np.float32)
    running = np.ones(rows, bool)
    per_step = []
    for n, (board, halt_logit, v) in zip(range(depth), steps_iter, strict=False):
        per_step.append(board.reshape(num_samples, B, -1))  # (N, B, L_y)
        stop = running & halts(halt_logit) if halt else np.zeros_like(running)
        if n == depth - 1:
            stop = running.copy()
        boards[stop], value[stop], steps[stop] = board[stop], v[stop], n + 1
        running &= ~stop
        if not running.any():
            break
    shape = (num_samples, B)
    return Rollout(boards.reshape(*shape, -1), steps.reshape(shape), value.reshape(shape), np.stack(per_step))


def select(
    task: Task, boards: np.ndarray, value: np.ndarray, how: str, valid: np.ndarray | None = None
) -> np.ndarray | None:
    """Pick one board per puzzle from (N, B, L_y): "vote" the most frequent (colourings compared
    up to colour names; ties go to the earliest sample), "lprm" the highest value, "checker" the
    vote among the boards the task's checker accepts, `valid` (N, B) = task.is_valid(x[None],
    boards) (the caller checks once and may slice it by width), the plain vote where it accepts
    none (checking needs no answer: for a puzzle with one solution a valid board is the answer, so
    this pick is exact wherever some sample is), "none" None."""
    if how == "none":
        return None
    if how == "lprm":
        return boards[np.argmax(value, axis=0), np.arange(boards.shape[1])]
    if how not in ("vote", "checker"):
        raise ValueError(f"selection must be none, vote, lprm or checker, got {how!r}")
    if how == "checker":
        if not task.checker:
            raise ValueError(f"{task.name} has no checker: select by vote or lprm")
        if valid is None or np.shape(valid) != boards.shape[:2]:
            raise ValueError(
                f"the checker's pick needs the validity of the {boards.shape[:2]} samples "
                f"(task.is_valid(x[None], boards)), got {None if valid is None else np.shape(valid)}"
            )
        valid = np.asarray(valid, bool)  # (N, B)
    picks = []
    for b in range(boards.shape[1]):
        pool = boards[:, b]  # (N, L_y)
        if how == "checker" and valid[:, b].any():
            pool = pool[valid[:, b]]  # the valid boards, in sample order
        keys = [task.canonical(s).tobytes() for s in pool]
        top = Counter(keys).most_common(1)[0][0]
        picks.append(pool[keys.index(top)])
    return np.stack(picks)


def sample_puzzles(
    run,
    puzzles: list[np.ndarray],
    num_samples: int,
    depth: int | None,
    halt: bool,
    how: str,
    temperature: float | tuple[float, float] | None = None,
) -> list[dict]:
    """One JSON-ready record per puzzle (the `gram sample` format, docs/formats.md) for a loaded
    run (inference.run.load_run)."""
    if not puzzles:
        return []
    task, cfg = run.task, run.config
    x = np.stack(puzzles)  # (B, L_x)
    r = rollout(
        run.mod, run.net, cfg, x, num_samples, depth or sample_depth(cfg), halt, temperature, seed_for(cfg, "sample")
    )
    valid = task.is_valid(x[None], r.boards)  # (N, B)
    chosen = select(task, r.boards, r.value, how, valid if task.checker else None)
    picked_valid = task.is_valid(x, chosen) if chosen is not None and task.checker else None  # (B,) or None
    return [
        {
            "puzzle": task.format_puzzle(x[b]),
            "samples": [task.format_solution(s) for s in r.boards[:, b]],
            "valid": valid[:, b].tolist(),
            "selected": None if chosen is None else task.format_solution(chosen[b]),
            "selected_valid": None if picked_valid is None else bool(picked_valid[b]),
            "halt_step": r.halt_step[:, b].tolist(),
            "lprm": [round(float(v), 6) for v in r.value[:, b]],
        }
        for b in range(len(x))
    ]


class Generated(NamedTuple):
    """Unconditional samples: the boards, how many constraints each breaks, and so which of them
    the task's checker accepts."""

    boards: np.ndarray  # (num, L_y) tokens
    conflicts: np.ndarray  # (num,) Task.conflicts against the empty input

    @property
    def valid(self) -> np.ndarray:
        return self.conflicts == 0  # (num,) bool: Task.is_valid

    @property
    def share_valid(self) -> float:
        return float(self.valid.mean())

    @property
    def distinct_valid(self) -> int:
        return len({b.tobytes() for b in self.boards[self.valid]})


def generate(
    run, num: int, depth: int | None = None, temperature: float | tuple[float, float] | None = None
) -> Generated:
    """Unconditional samples from p_θ(x) (empty input): boards (num, L_y) and their validity."""
    task, cfg = run.task, run.config
    if cfg.task.mode == "conditional":  # x is a class label: the blank input was never trained on
        raise ConfigError("a class-conditional run draws samples for a label: use gram sample (or "
                          "inference.api.sample) with label inputs, not generate (the blank input)")  # fmt: skip
    blank = np.ones((1, task.x_len), dtype=np.uint8)  # the empty input: every token 1 (blank cell)
    r = rollout(run.mod, run.net, cfg, blank, num, depth or sample_depth(cfg), temperature=temperature,
                seed=seed_for(cfg, "generate"))  # the one sampling path, chunked when large  # fmt: skip
    boards = r.boards[:, 0]  # (num, L_y)
    return Generated(boards, task.conflicts(blank[0], boards))
