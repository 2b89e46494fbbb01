"""Stage ``clean``: raw manifest and vocabulary -> validated, cleaned tables (paper §4.1).

The rules (game-title vertical, ``clean.min_count``, unknown labels) are the pure
:func:`ovc.data.clean.clean_tables`; this module reads ``raw/`` and writes ``clean/`` atomically.
"""

from __future__ import annotations

import logging
from typing import Any

from ovc.config import Config
from ovc.data.clean import clean_tables, filter_attributes
from ovc.data.manifest import (
    data_roots,
    read_manifest,
    read_vocabulary,
    rebase_paths,
    write_manifest,
    write_vocabulary,
)
from ovc.fileio import atomic_write_json
from ovc.paths import DataLayout

log = logging.getLogger(__name__)


def clean(cfg: Config) -> dict[str, Any]:
    """Stage ``clean``: ``{data}/raw`` -> ``{data}/clean`` (see :mod:`ovc.data.clean`).

    Returns the report (also written to ``{data}/clean/report.json``) plus the output paths.
    """
    layout = DataLayout.of(cfg)
    raw, out_dir = layout.raw, layout.clean
    manifest = read_manifest(raw / "manifest.parquet", allow_empty_labels=True, roots=data_roots(cfg))
    vocab = read_vocabulary(raw / "vocabulary.parquet")

    manifest_out, vocab_out, report = clean_tables(manifest, vocab, cfg.clean.min_count, list(cfg.clean.drop_verticals))
    manifest_out["path"] = rebase_paths(manifest_out["path"], raw, out_dir)
    attributes, attr_stats = filter_attributes(raw / "attributes.json", set(vocab_out["label"]))
    report["attributes"] = attr_stats

    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest_out, layout.clean_manifest)
    write_vocabulary(vocab_out, layout.clean_vocabulary)
    atomic_write_json(layout.clean_attributes, attributes)
    atomic_write_json(layout.clean_report, report)

    v, d = report["videos"], report["labels_dropped"]
    log.info(
        "clean: videos %d -> %d; labels dropped: %d vertical, %d under min_count=%d, %d unknown",
        v["before"]["total"],
        v["after"]["total"],
        d["vertical"]["count"],
        d["min_count"]["count"],
        cfg.clean.min_count,
        d["not_in_vocabulary"]["count"],
    )
    outputs = (layout.clean_manifest, layout.clean_vocabulary, layout.clean_attributes, layout.clean_report)
    return {**report, "outputs": {p.name: str(p) for p in outputs}}
