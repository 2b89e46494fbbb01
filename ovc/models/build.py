"""Build a method by its key exactly the same way for training, evaluation, publishing and inference."""

from __future__ import annotations

import json
from pathlib import Path

from ovc.config import Config


def read_attributes(cfg: Config) -> dict[str, list[str]] | None:
    """The clean attributes JSON {label: [descriptions]} (fixed-attribute baseline), or None."""
    path = Path(cfg.paths.data) / "clean" / "attributes.json"
    return json.loads(path.read_text()) if path.exists() else None


def build_method(cfg: Config, name: str, attributes: dict[str, list[str]] | None = None):
    """A method by key around its own CLIP (resolved weights), untrained; ``ours_synth`` builds ``ours``."""
    from ovc.models.baselines import create_method
    from ovc.models.clip import create_clip
    from ovc.models.pretrained import resolve_clip_config
    from ovc.synth.stage import base_method

    clip = create_clip(resolve_clip_config(cfg))
    method = create_method(base_method(name), clip, cfg, attributes=attributes if attributes is not None else read_attributes(cfg))
    method.name = name  # e.g. ours_synth: its own video embeddings, weights and rows
    return method


def method_clip(method):
    """The ClipModel inside a method (for its preprocessing constants)."""
    from ovc.models.clip import ClipModel

    for m in method.modules():
        if isinstance(m, ClipModel):
            return m
    raise ValueError(f"method {method.name} has no CLIP model")
