"""Stage ``attributes``: K short visual descriptions per label of the clean vocabulary, for the
fixed-LLM-attributes baseline (paper §3.1 "Fixed LLM prompting"; §4.2). Providers, caching and
provenance: :mod:`ovc.synth.attributes`. Outputs: ``<data>/attributes/attributes.json`` and
``provenance.json`` (no wall clock in them: DVC outputs are deterministic).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ovc.config import Config
from ovc.data.manifest import read_vocabulary
from ovc.fileio import atomic_write_json
from ovc.models.methods import attributes_path, provenance_path
from ovc.paths import DataLayout
from ovc.synth.attributes import AttributesError, describe_labels

log = logging.getLogger(__name__)


def attributes(cfg: Config) -> dict[str, Any]:
    """Write ``<data>/attributes/{attributes,provenance}.json`` for every label of the clean vocabulary."""
    t0 = time.time()
    layout = DataLayout.of(cfg)
    labels = sorted(set(read_vocabulary(layout.clean_vocabulary)["label"]))
    if not labels:
        raise AttributesError(f"{layout.clean_vocabulary} holds no label")
    cache_root = Path(cfg.attributes.cache_dir) if cfg.attributes.cache_dir else layout.cache / "attributes"
    result, prov = describe_labels(cfg, labels, layout.clean_attributes, cache_root)
    atomic_write_json(attributes_path(cfg), result)
    atomic_write_json(provenance_path(cfg), prov)
    failed = prov["failed"]
    return {k: v for k, v in prov.items() if k != "failed"} | {
        "failed": len(failed),
        "seconds": round(time.time() - t0, 2),
    }
