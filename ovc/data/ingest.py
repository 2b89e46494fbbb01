"""Dataset adapters of the ``ingest`` stage (:mod:`ovc.stages.ingest` runs them atomically).

Adapters are registered in :data:`ADAPTERS` by dotted path (``"module:function"``), each
``fn(cfg: Config, out_dir: Path) -> dict`` writing the four outputs into ``out_dir`` and
returning a JSON-able summary. ``synthworld`` is the offline default; the real datasets
(youtube8m, kinetics, tao, activitynet, rareact) live in :mod:`ovc.data.adapters`, and a
comma-separated ``cfg.ingest.source`` mixes several of them into one manifest.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ovc.config import Config
from ovc.data.adapters.common import IngestError

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


def get_adapter(source: str) -> Callable[[Config, Path], dict[str, Any]]:
    """The adapter function registered for ``source`` (IngestError lists the known ones); a
    comma-separated list of dataset sources ("youtube8m,kinetics") gets the mixing adapter."""
    if "," in source:
        parts = [s.strip() for s in source.split(",") if s.strip()]
        bad = [s for s in parts if s not in ADAPTERS or s == "synthworld"]
        if bad:
            raise IngestError(
                f"ingest.source {source!r}: cannot mix {bad}; mixable sources: {', '.join(sorted(set(ADAPTERS) - {'synthworld'}))}"
            )
        module, fn = MIX_ADAPTER.split(":")
        return getattr(importlib.import_module(module), fn)
    if source not in ADAPTERS:
        raise IngestError(f"unknown ingest.source {source!r}; known sources: {', '.join(sorted(ADAPTERS))}")
    module, fn = ADAPTERS[source].split(":")
    return getattr(importlib.import_module(module), fn)


# --------------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------------
def ingest_synthworld(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Render the synthetic world (``cfg.world``) into ``out_dir`` (see :mod:`ovc.data.synthworld`).

    Clips whose rendering fails are counted, named in the summary and left out of the manifest.
    """
    from ovc.data.manifest import atomic_write_json, write_manifest, write_vocabulary
    from ovc.data.synthworld import (
        WORLD,
        manifest_rows,
        plan_world,
        render_all,
        resolve_workers,
    )

    w = cfg.world
    specs = plan_world(
        seed=w.seed,
        n_train=w.n_train,
        n_val=w.n_val,
        n_test=w.n_test,
        num_frames=w.num_frames,
        size=w.size,
        max_objects=w.max_objects,
        game_title_rate=w.game_title_rate,
        rare_label_rate=w.rare_label_rate,
        world=WORLD,
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
