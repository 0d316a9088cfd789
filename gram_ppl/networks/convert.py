"""Weights between the torch and flax GRAM networks, as plain numpy arrays (no torch or jax here).

The flax modules carry the torch modules' names (gram_ppl/networks/flax_nets.py), so a torch
state_dict key maps to a flax path mechanically: "f_L.blocks.0.mix.qkv.weight" is
params["f_L"]["blocks_0"]["mix"]["qkv"]["kernel"], transposed (torch Linear weights are
(out, in), flax Dense kernels (in, out)); embeddings keep their (vocab, D) tables; the z_0
buffer becomes the parameter "z0". With a shared core torch lists f_L's tensors under f_H too; flax
keeps one copy.
"""

from __future__ import annotations

import numpy as np

EMBEDDINGS = ("tok_x", "tok_y", "tok_id", "pos_")


def torch_to_flax(state: dict[str, np.ndarray], share_core: bool) -> dict:
    """A torch GramNet state_dict (numpy arrays) as the flax parameter tree."""
    if "z0" not in state:
        raise ValueError("the state_dict has no z0 buffer: not a GramNet state")
    params: dict = {}
    for key, value in state.items():
        value = np.asarray(value)
        parts = _flax_path(key)
        if share_core and parts[0] == "f_H":
            continue
        *path, leaf = parts
        if leaf == "weight":
            embedding = path[-1].startswith(EMBEDDINGS)
            leaf, value = ("embedding", value) if embedding else ("kernel", value.T)
        node = params
        for name in path:
            node = node.setdefault(name, {})
        if leaf in node:
            raise ValueError(f"two torch tensors map to one flax parameter: {key}")
        node[leaf] = value
    return params


def flax_to_torch(params: dict, share_core: bool) -> dict[str, np.ndarray]:
    """The flax parameter tree as a torch GramNet state_dict (numpy arrays; torch.as_tensor them)."""
    state = {}
    for path, value in _leaves(params):
        *mods, leaf = path
        value = np.array(value)  # a writable copy (torch refuses read-only buffers)
        if leaf == "kernel":
            leaf, value = "weight", value.T
        elif leaf == "embedding":
            leaf = "weight"
        key = ".".join([_torch_name(m) for m in mods] + [leaf])
        state[key] = value
        if share_core and mods and mods[0] == "f_L":
            state["f_H" + key[3:]] = value
    return state


def _flax_path(key: str) -> list[str]:
    """ "f_L.blocks.0.mlp.w_in.weight" -> ["f_L", "blocks_0", "mlp", "w_in", "weight"]."""
    out: list[str] = []
    for part in key.split("."):
        if part.isdigit():
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return out


def _torch_name(flax_name: str) -> str:
    head, _, tail = flax_name.rpartition("_")
    return f"{head}.{tail}" if head and tail.isdigit() else flax_name


def _leaves(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            yield from _leaves(v, (*prefix, k))
        else:
            yield (*prefix, k), v
