"""Network definitions: torch (torch_nets) and flax (flax_nets) twins, and weight conversion."""
