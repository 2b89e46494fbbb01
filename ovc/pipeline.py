"""The pipeline's stages: one plain function per DVC stage, called alike by DVC, Prefect, the CLI
and tests.

Each stage function has the signature ``fn(cfg: Config) -> dict`` and returns a small JSON-able
summary (paths written, counts, metrics). Stages are registered by dotted path so importing this
module stays cheap (no torch/decord until a stage runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ovc.config import Config

# stage name -> "module:function"; order = pipeline order (DVC's dvc.yaml mirrors it)
STAGES: dict[str, str] = {
    "ingest": "ovc.stages.ingest:ingest",
    "clean": "ovc.stages.clean:clean",
    "bootstrap_clip": "ovc.stages.bootstrap_clip:bootstrap_clip",
    "synth_labels": "ovc.stages.synth_labels:synth_labels",
    "attributes": "ovc.stages.attributes:attributes",
    "features": "ovc.stages.features:features",
    "train": "ovc.stages.train:train",
    "evaluate": "ovc.stages.evaluate:evaluate",
    "publish": "ovc.stages.publish:publish",
}


def get_stage(name: str) -> Callable[[Config], dict[str, Any]]:
    """The function behind stage ``name`` (KeyError lists the known stages)."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
    module, fn = STAGES[name].split(":")
    return getattr(importlib.import_module(module), fn)


def run_stage(name: str, cfg: Config) -> dict[str, Any]:
    """Run one stage with a typed config and return its summary."""
    return get_stage(name)(cfg)
