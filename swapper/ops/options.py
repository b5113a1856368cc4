"""Checks on a composed training config that Hydra cannot make: a selected option nothing uses."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

# Top-level groups whose node only takes effect when another node interpolates it (``${encoder}``).
COMPONENT_GROUPS = ("encoder", "decoder", "augmentation", "discriminator", "generator", "identity_network")

_REFERENCE = re.compile(r"\$\{(\w+)")


def _references(node: object, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for value in node:
            _references(value, found)
    elif isinstance(node, str):
        found.update(_REFERENCE.findall(node))
    return found


def unused_options(cfg: DictConfig) -> list[str]:
    """The selected component groups (see ``COMPONENT_GROUPS``) that no other node refers to.

    E.g. ``experiment=simswap_lite encoder=deepfakes``: the identity-injection module builds its own
    generator and never reads ``${encoder}``, so the option would be silently ignored.
    """
    raw = OmegaConf.to_container(cfg, resolve=False)
    if not _references(raw, set()):  # a run's saved config (-cp <run> -cn config): resolved copies
        return []
    unused = []
    for group in COMPONENT_GROUPS:
        if raw.get(group) is None:
            continue
        elsewhere = {k: v for k, v in raw.items() if k != group}
        if group not in _references(elsewhere, set()):
            unused.append(group)
    return unused


def check_options(cfg: DictConfig) -> None:
    """Raise ``ValueError`` naming every selected option that the configured module ignores."""
    unused = unused_options(cfg)
    if unused:
        module = (cfg.get("module") or {}).get("_target_", "?")
        raise ValueError(
            f"{', '.join(f'{g}={_option(cfg, g)}' for g in unused)}: not used by module {module}; "
            f"drop the override (or deselect it with {unused[0]}=null)"
        )


def _option(cfg: DictConfig, group: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get(group, "<selected>"))


__all__ = ["COMPONENT_GROUPS", "check_options", "unused_options"]
