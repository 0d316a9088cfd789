"""What a sample site of the model files is, read from the tag it carries, never from its name.

Both model files (models/gram_pyro.py, models/gram_numpyro.py) pass `infer=noise(step, t)` to
each transition-noise site and `infer=observation(step)` to each observed y; inference code asks
`is_noise(site)` and `step_of(site)`. A new latent site (a hierarchical σ, a global latent) carries
no noise tag: it is never taken for transition noise nor credited to a supervision step.
Standard library only (both backends, no torch or JAX here).
"""

from __future__ import annotations

ROLE = "gram_role"


def noise(step: int | None, transition: int) -> dict:
    """The tag of ε_t of transition `transition` in supervision step `step` (None: the step axis
    is stacked by a scan, as in the NumPyro model)."""
    return {ROLE: "noise", "step": step, "transition": transition}


def observation(step: int | None) -> dict:
    """The tag of the observed y at the end of supervision step `step`."""
    return {ROLE: "observation", "step": step}


def is_noise(site: dict) -> bool:
    """Whether a Pyro / NumPyro site (a trace node or a handler's message) is transition noise."""
    return (site.get("infer") or {}).get(ROLE) == "noise"


def step_of(site: dict) -> int | None:
    """The supervision step a tagged site belongs to (None: untagged, or stacked by a scan)."""
    return (site.get("infer") or {}).get("step")
