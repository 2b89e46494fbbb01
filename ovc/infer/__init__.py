"""Inference with published models: classify your own videos against any registry vocabulary.

    from ovc.infer import Classifier, load_published
    clf = Classifier.from_registry(model_version="latest", vocab="train")
    results = clf.classify(["a.mp4", "b.mp4"], top_k=5)      # [Result(video, labels, error), ...]

    model = load_published("v2")                             # rebuilt from the registry, digests checked
    model.encode_labels(["red car"])                         # (1, D) float32

Names are imported on first use (``import ovc.infer`` loads no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Classifier": "ovc.infer.classifier",
    "Result": "ovc.infer.classifier",
    "label_thresholds": "ovc.infer.classifier",
    "PublishedModel": "ovc.infer.published",
    "VideoEmbeddings": "ovc.infer.published",
    "load_published": "ovc.infer.published",
    "build_published": "ovc.infer.published",
    "encoder_digest": "ovc.infer.published",
    "PublishedModelError": "ovc.infer.published",
    "MissingArtifactError": "ovc.infer.published",
    "DigestMismatchError": "ovc.infer.published",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ovc.infer' has no attribute {name!r}")
