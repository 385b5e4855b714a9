"""Hook names: the one resolver from ffnmem's short activation kinds to TransformerLens' hook names.

TransformerLens' hook names are a stable, documented API (``blocks.{l}.mlp.hook_post`` …); every
analysis asks :func:`hook_name` for them instead of formatting strings itself.
"""

from __future__ import annotations

from ffnmem.core.errors import BadInput

HOOK_KINDS: dict[str, str] = {
    "post": "blocks.{l}.mlp.hook_post",  # FFN coefficients m
    "pre": "blocks.{l}.mlp.hook_pre",  # pre-activation (the gate's, for gated MLPs)
    "mlp_in": "blocks.{l}.ln2.hook_out",  # normalised FFN input x
    "out": "blocks.{l}.hook_mlp_out",  # FFN output Σ m_i v_i + b
    "attn_out": "blocks.{l}.hook_attn_out",
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "resid_mid": "blocks.{l}.hook_resid_mid",
    "resid_post": "blocks.{l}.hook_resid_post",
}
# kinds used internally by analyses (not capturable from the CLI): per-head outputs, patterns
INTERNAL_KINDS: dict[str, str] = {"z": "blocks.{l}.attn.hook_z", "pattern": "blocks.{l}.attn.hook_pattern"}
EMBED = "hook_embed"  # token embeddings (before positions are added)


def hook_name(kind: str, layer: int) -> str:
    """Full hook name for a short kind (see :data:`HOOK_KINDS`) at ``layer``."""
    template = HOOK_KINDS.get(kind) or INTERNAL_KINDS.get(kind)
    if template is None:
        raise BadInput(f"unknown activation kind {kind!r}; choose from {', '.join(HOOK_KINDS)}")
    return template.format(l=layer)


def layer_of(name: str) -> int | None:
    """The layer a hook name belongs to (``blocks.{l}.…``), or None for model-level hooks."""
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit() else None
