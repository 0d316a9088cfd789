"""Network definitions: torch (torch_nets) and flax (flax_nets) twins, and weight conversion."""

from __future__ import annotations

from typing import Any, NamedTuple

# The low-rank prior's directions W (PriorConfig.rank) start small but not at 0, where their
# gradient vanishes: entries drawn from N(0, FACTOR_INIT²), in both backends.
FACTOR_INIT = 0.02


class Embedded(NamedTuple):
    """What `embed(x)` hands the transitions in both backends: the input's embedding `e`
    (B, L, D), added to the state before every update, and, for a task whose relations depend on
    the input (Task.input_dependent_relations), the relation ids `rel` (B, L, L) of the attention
    bias; None where the task's fixed ids serve every input."""

    e: Any
    rel: Any = None


def check_mixer(net) -> None:
    """Raise if NetConfig `net` leaves its mixer to the task's rule (None): a block must be built
    from the net in force (gram_ppl.config.net_in_force, which both backends' build_net apply), or
    it would silently get a mixer the config did not say."""
    if net.mixer is None:
        raise ValueError(
            "net.mixer is None (the task's default): resolve it with gram_ppl.config.net_in_force "
            "(build_net(cfg, task) of either backend does)"
        )
