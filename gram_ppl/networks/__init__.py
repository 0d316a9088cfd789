"""Network definitions: torch (torch_nets) and flax (flax_nets) twins, and weight conversion."""

from __future__ import annotations

from typing import Any, NamedTuple


class Embedded(NamedTuple):
    """What `embed(x)` hands the transitions in both backends: the input's embedding `e`
    (B, L, D), added to the state before every update, and, for a task whose relations depend on
    the input (Task.input_dependent_relations), the relation ids `rel` (B, L, L) of the attention
    bias; None where the task's fixed ids serve every input."""

    e: Any
    rel: Any = None
