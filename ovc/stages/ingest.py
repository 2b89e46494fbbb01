"""Stage ``ingest``: a dataset adapter writes the raw manifest, vocabulary, attributes and videos.

Outputs (``DataLayout.raw``)::

    videos/*.mp4          the clips (paths in the manifest are relative to raw/)
    manifest.parquet      one row per video (video_id, path, labels, split, source, caption)
    vocabulary.parquet    one row per (vocab, label): label, vertical, kind, vocab
    attributes.json       {label: [short visual descriptions]} (fixed-attribute baseline)

Idempotent and atomic: the adapter writes into a fresh folder next to raw/, which then replaces
raw/ whole (a crash leaves the previous raw/ untouched). The adapters are in :mod:`ovc.data.ingest`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ovc.config import Config
from ovc.data.ingest import get_adapter
from ovc.fileio import atomic_dir
from ovc.paths import DataLayout

log = logging.getLogger(__name__)


def ingest(cfg: Config) -> dict[str, Any]:
    """Run the ``cfg.ingest.source`` adapter into ``<data>/raw`` atomically; returns its summary.

    Args:
        cfg: whole config (uses ``paths.data``, ``ingest.*`` and the adapter's own section).
    """
    adapter = get_adapter(cfg.ingest.source)
    raw = DataLayout.of(cfg).raw
    t0 = time.perf_counter()
    with atomic_dir(raw) as tmp:
        summary = adapter(cfg, tmp)
    summary = {
        "source": cfg.ingest.source,
        "out_dir": str(raw),
        "manifest": str(raw / "manifest.parquet"),
        "vocabulary": str(raw / "vocabulary.parquet"),
        "attributes": str(raw / "attributes.json"),
        **summary,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log.info("ingest %s: %s videos -> %s", cfg.ingest.source, summary.get("videos"), raw)
    return summary
