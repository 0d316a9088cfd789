"""Benchmark of the puzzle library: exact enumeration, Sudoku solving, data builds.

    .venv/bin/python benchmarks/tasks.py [--hard 1000] [--repeats 20] [--json out.json]

Prints a markdown table (median wall time, target, pass/fail) for docs/benchmarks.md. Targets
on 2 cores: N-Queens enumeration 8/10/12 <= 5 ms / 50 ms / 1 s; solving and checking the
uniqueness of 1,000 generated hard 9x9 puzzles <= 20 s; each default data build <= 30 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
from common import median_seconds, write_json

from gram_ppl import TaskConfig, build_dataset, get_task, save_dataset

DATA_BUILDS = [
    TaskConfig(name="nqueens", size=8),
    TaskConfig(name="nqueens", size=10),
    TaskConfig(name="sudoku", size=4),
    TaskConfig(name="sudoku", size=4, mode="multi"),
    TaskConfig(name="sudoku", size=6),
    TaskConfig(name="sudoku", size=6, mode="multi"),
    TaskConfig(name="sudoku", size=9),
    TaskConfig(name="coloring", size=8),
    TaskConfig(name="coloring", size=10),
]


def bench_nqueens(repeats: int) -> list[dict]:
    rows = []
    for n, target in ((8, 0.005), (10, 0.05), (12, 1.0)):
        task, empty = get_task("nqueens", n), np.ones(n * n, dtype=np.uint8)
        reps = repeats if n < 12 else max(3, repeats // 4)
        t = median_seconds(lambda task=task, empty=empty: task.solutions(empty), reps)
        rows.append(
            dict(what=f"enumerate all {n}-Queens solutions", seconds=t, target=target, note=f"median of {reps}")
        )
    return rows


def bench_sudoku(count: int) -> list[dict]:
    t0 = time.perf_counter()
    cfg = TaskConfig(name="sudoku", size=9, num_train=count, num_test=0, seed=2026, clues=0, min_effort=1)
    puzzles = build_dataset(cfg).train.x.astype(np.int64) - 1  # (count, 81) digits, 0 = blank
    generated = time.perf_counter() - t0
    task = get_task("sudoku", 9)
    t0 = time.perf_counter()
    results = [task.solve(p, limit=2) for p in puzzles]
    solved = time.perf_counter() - t0
    assert all(len(sols) == 1 for sols, _ in results), "a generated puzzle is not unique"
    efforts = [e for _, e in results]
    clues = np.count_nonzero(puzzles, axis=1)
    note = (
        f"{count} puzzles, clues {clues.min()}-{clues.max()} (mean {clues.mean():.1f}), "
        f"minimal, effort >= 1 (median {int(np.median(efforts))}, max {max(efforts)}); generating them took {generated:.0f} s"
    )
    return [dict(what=f"solve + uniqueness check, {count} hard 9x9 Sudoku", seconds=solved, target=20.0, note=note)]


def bench_builds() -> list[dict]:
    rows = []
    for cfg in DATA_BUILDS:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ds = build_dataset(cfg)
            save_dataset(ds, os.path.join(tmp, "ds"))
            t = time.perf_counter() - t0
        c = ds.config
        label = f"data build {c.name} {c.size}" + (f" ({c.mode})" if c.mode else "")
        rows.append(dict(what=label, seconds=t, target=30.0, note=f"{len(ds.train)} train / {len(ds.test)} test"))
    return rows


def machine() -> str:
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hard", type=int, default=1000, help="number of hard 9x9 puzzles to solve")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--skip-builds", action="store_true")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    rows = bench_nqueens(args.repeats) + bench_sudoku(args.hard) + ([] if args.skip_builds else bench_builds())
    print(f"machine: {machine()}\n")
    print("| what | time | target | met | notes |\n|---|---|---|---|---|")
    for r in rows:
        met = "yes" if r["seconds"] <= r["target"] else "**no**"
        print(f"| {r['what']} | {_fmt(r['seconds'])} | ≤ {_fmt(r['target'])} | {met} | {r['note']} |")
    write_json(args.json, {"machine": machine(), "rows": rows})
    return 0


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    raise SystemExit(main())
