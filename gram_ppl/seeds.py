"""Named random streams: every sampling call takes its seed from here, by name, never by an offset
written at the call. A stream's seed is the run's fit.seed plus the stream's fixed offset (the
offsets the reported measurements were drawn with: changing one changes every number drawn with
it); a part of a call (the guide's draws beside the prior's) adds its sub-stream's offset.
Standard library only."""

from __future__ import annotations

STREAMS = {  # stream: offset from fit.seed
    "eval": 1,  # the held-out validity reported while training (TrainLoop.evaluate)
    "evaluate": 2,  # gram evaluate, gram compare, benchmarks/quality.py
    "sample": 3,  # gram sample (user puzzles)
    "generate": 4,  # gram generate (the blank input)
    "diagnose": 5,  # gram diagnose, gp.to_inference_data
    "elpd": 6,  # the held-out log p(y | x) of gram compare --elpd
}
PARTS = {"prior": 0, "guide": 1, "likelihood": 2, "untrained": 2}  # sub-streams within one call


def seed_for(cfg, stream: str, part: str | None = None) -> int:
    """The seed of `stream` (a STREAMS name) for a run with GramConfig `cfg`, and of `part` of it."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {sorted(STREAMS)}")
    return cfg.fit.seed + STREAMS[stream] + (PARTS[part] if part is not None else 0)


def part(seed: int, name: str) -> int:
    """The seed of sub-stream `name` (a PARTS name) of a call seeded with `seed`."""
    return seed + PARTS[name]
