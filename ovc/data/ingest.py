"""Stage ``ingest``: a dataset adapter writes the raw manifest, vocabulary, attributes and videos.

Outputs (under ``Path(cfg.paths.data) / "raw"``)::

    videos/*.mp4          the clips (paths in the manifest are relative to raw/)
    manifest.parquet      one row per video (video_id, path, labels, split, source, caption)
    vocabulary.parquet    one row per (vocab, label): label, vertical, kind, vocab
    attributes.json       {label: [short visual descriptions]} (fixed-LLM-attribute baseline)

The stage is idempotent and atomic: the adapter writes into a fresh temp folder next to raw/,
which then replaces raw/ as a whole (a crash leaves the previous raw/ untouched).

Adapters are registered in :data:`ADAPTERS` by dotted path (``"module:function"``), each
``fn(cfg: Config, out_dir: Path) -> dict`` writing the four outputs into ``out_dir`` and
returning a JSON-able summary. ``synthworld`` is the offline default; the real datasets
(youtube8m, kinetics, tao, activitynet, rareact) live in :mod:`ovc.data.adapters`, and a
comma-separated ``cfg.ingest.source`` mixes several of them into one manifest.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ovc.config import Config

log = logging.getLogger(__name__)

# cfg.ingest.source -> "module:function" (fn(cfg, out_dir) -> summary)
ADAPTERS: dict[str, str] = {
    "synthworld": "ovc.data.ingest:ingest_synthworld",
    # real datasets (paper §4.1), reading their own file formats from ingest.root / ingest.roots
    "youtube8m": "ovc.data.adapters.youtube8m:ingest_youtube8m",
    "kinetics": "ovc.data.adapters.kinetics:ingest_kinetics",
    "tao": "ovc.data.adapters.tao:ingest_tao",
    "activitynet": "ovc.data.adapters.activitynet:ingest_activitynet",
    "rareact": "ovc.data.adapters.rareact:ingest_rareact",
}
MIX_ADAPTER = "ovc.data.adapters.common:ingest_mix"  # ingest.source "a,b,...": several datasets in one manifest


class IngestError(ValueError):
    """Bad ingest request (unknown source, ...); the message names the item and the options."""


def get_adapter(source: str) -> Callable[[Config, Path], dict[str, Any]]:
    """The adapter function registered for ``source`` (IngestError lists the known ones); a
    comma-separated list of dataset sources ("youtube8m,kinetics") gets the mixing adapter."""
    if "," in source:
        parts = [s.strip() for s in source.split(",") if s.strip()]
        bad = [s for s in parts if s not in ADAPTERS or s == "synthworld"]
        if bad:
            raise IngestError(f"ingest.source {source!r}: cannot mix {bad}; mixable sources: {', '.join(sorted(set(ADAPTERS) - {'synthworld'}))}")
        module, fn = MIX_ADAPTER.split(":")
        return getattr(importlib.import_module(module), fn)
    if source not in ADAPTERS:
        raise IngestError(f"unknown ingest.source {source!r}; known sources: {', '.join(sorted(ADAPTERS))}")
    module, fn = ADAPTERS[source].split(":")
    return getattr(importlib.import_module(module), fn)


def _swap_dir(new: Path, target: Path) -> None:
    """Replace ``target`` by ``new`` (two renames; the old tree is deleted afterwards)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def ingest(cfg: Config) -> dict[str, Any]:
    """Run the ``cfg.ingest.source`` adapter into ``<data>/raw`` atomically; returns its summary.

    Args:
        cfg: whole config (uses ``paths.data``, ``ingest.*`` and the adapter's own section).
    """
    adapter = get_adapter(cfg.ingest.source)
    raw = Path(cfg.paths.data) / "raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    tmp = raw.with_name(f".{raw.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        summary = adapter(cfg, tmp)
        _swap_dir(tmp, raw)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
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


# --------------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------------
def ingest_synthworld(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Render the synthetic world (``cfg.world``) into ``out_dir`` (see :mod:`ovc.data.synthworld`).

    Clips whose rendering fails are counted, named in the summary and left out of the manifest.
    """
    from ovc.data.manifest import atomic_write_json, write_manifest, write_vocabulary
    from ovc.data.synthworld import WORLD, manifest_rows, plan_world, render_all, resolve_workers

    w = cfg.world
    specs = plan_world(
        seed=w.seed, n_train=w.n_train, n_val=w.n_val, n_test=w.n_test, num_frames=w.num_frames,
        size=w.size, max_objects=w.max_objects, game_title_rate=w.game_title_rate,
        rare_label_rate=w.rare_label_rate, world=WORLD,
    )
    errors = render_all(specs, out_dir / "videos", fps=w.fps, workers=w.workers)
    for vid, err in sorted(errors.items()):
        log.warning("synthworld: clip %s failed and is left out: %s", vid, err)
    manifest = pd.DataFrame(manifest_rows([s for s in specs if s.video_id not in errors]))
    vocabulary = pd.DataFrame(WORLD.vocabulary(), columns=["label", "vertical", "kind", "vocab"])
    write_manifest(manifest, out_dir / "manifest.parquet", allow_empty_labels=True)
    write_vocabulary(vocabulary, out_dir / "vocabulary.parquet")
    atomic_write_json(out_dir / "attributes.json", WORLD.attributes())

    label_counts: dict[str, dict[str, int]] = {}
    for split, labels in manifest.groupby("split", sort=False)["labels"]:
        label_counts[str(split)] = dict(sorted(Counter(lab for ls in labels for lab in ls).items()))
    return {
        "videos": len(manifest),
        "failed": len(errors),
        "failed_ids": sorted(errors)[:20],
        "workers": resolve_workers(w.workers),
        "splits": {str(k): int(v) for k, v in manifest["split"].value_counts(sort=False).items()},
        "vocabulary_sizes": {str(k): int(v) for k, v in vocabulary["vocab"].value_counts(sort=False).items()},
        "label_counts": label_counts,
    }
