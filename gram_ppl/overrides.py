"""`--set SECTION.FIELD=VALUE` on a GramConfig: the command line's way to change any config field.
Standard library only."""

from __future__ import annotations

import dataclasses
import json

from gram_ppl.config import ConfigError, GramConfig, PriorConfig


def apply_overrides(cfg: GramConfig, assignments: list[str], priors: PriorConfig | None = None) -> GramConfig:
    """Apply "section.field=value" strings (value in JSON, or a bare string) to a GramConfig.
    `priors.X=...` changes a field of cfg.priors or, when cfg.priors is None, of `priors` (the
    model file's PRIORS block, which the caller passes): never of PriorConfig()'s defaults.
    All assignments to one section are applied together, so fields that must agree
    (net.noise_tokens with net.prefix_tokens) can be set in one command."""
    changes: dict[str, dict] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in ("task", "net", "fit", "priors"):
            raise ConfigError(f"cannot set {text!r}: use SECTION.FIELD=VALUE with SECTION in task, net, fit, priors")
        part = getattr(cfg, section)
        if section == "priors" and part is None:
            if priors is None:
                raise ConfigError("setting priors.* needs the PRIORS block it applies to")
            part = priors
        known = _field_names(part, section)
        if name not in known:
            raise ConfigError(
                f"cannot set {text!r}: {section} has no field {name!r}; known: {', '.join(sorted(known))}"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes.setdefault(section, {})[name] = value
    for section, fields in changes.items():
        part = getattr(cfg, section) if getattr(cfg, section) is not None else priors
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(part, **fields)})
    return cfg


def _field_names(part, section: str) -> set[str]:
    cls = type(part) if part is not None else {"priors": PriorConfig}.get(section)
    return {f.name for f in dataclasses.fields(cls)} if cls else set()
