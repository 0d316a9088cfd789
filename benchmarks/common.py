"""Helpers shared by the benchmark scripts (imported as `common`, the scripts' own folder)."""

from __future__ import annotations

import json
import statistics
import time


def median_seconds(fn, repeats: int, warmup: bool = False) -> float:
    """Median wall time of `repeats` calls of fn (after one untimed call with warmup)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_json(path: str | None, rows) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
