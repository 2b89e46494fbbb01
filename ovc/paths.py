"""One place for data paths: where every stage reads and writes under ``paths.data``.

    layout = DataLayout.of(cfg)            # or DataLayout(Path("data"))
    layout.clean_manifest                   # data/clean/manifest.parquet
    layout.run_dir("ours")                  # data/models/trained/ours

``STAGE_OUTPUTS`` names what each DVC stage writes; a test checks that ``dvc.yaml``'s ``outs`` and
``metrics`` are exactly these, so the pipeline file and the code cannot disagree on a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataLayout:
    """The directory tree under the data root (``paths.data``); every property is a path in it."""

    root: Path

    @classmethod
    def of(cls, cfg: Any) -> DataLayout:
        """The layout of a typed config (``cfg.paths.data``)."""
        return cls(Path(cfg.paths.data))

    # ingest
    @property
    def raw(self) -> Path:
        return self.root / "raw"

    # clean
    @property
    def clean(self) -> Path:
        return self.root / "clean"

    @property
    def clean_manifest(self) -> Path:
        return self.clean / "manifest.parquet"

    @property
    def clean_vocabulary(self) -> Path:
        return self.clean / "vocabulary.parquet"

    @property
    def clean_attributes(self) -> Path:
        return self.clean / "attributes.json"

    @property
    def clean_report(self) -> Path:
        return self.clean / "report.json"

    # models
    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def bootstrap_clip(self) -> Path:
        return self.models / "bootstrap_clip"

    @property
    def trained(self) -> Path:
        return self.models / "trained"

    def run_dir(self, method: str) -> Path:
        """Checkpoints, history and final weights of one trained method."""
        return self.trained / method

    @property
    def train_summary(self) -> Path:
        return self.models / "train_summary.json"

    @property
    def ray_storage(self) -> Path:
        """Ray Train's own run storage (not a DVC output)."""
        return self.root / "ray"

    # synthetic labels
    @property
    def synth_labels(self) -> Path:
        return self.root / "synth_labels"

    @property
    def synth_labels_table(self) -> Path:
        return self.synth_labels / "labels.parquet"

    @property
    def synth_vocabulary(self) -> Path:
        return self.synth_labels / "vocabulary.parquet"

    @property
    def synth_summary(self) -> Path:
        return self.synth_labels / "summary.json"

    # features, evaluation, publication
    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def publish_receipt(self) -> Path:
        return self.root / "publish" / "receipt.json"

    @property
    def registry_db(self) -> Path:
        """The embedded SQLite registry (live state, not a DVC output)."""
        return self.root / "registry.db"

    @property
    def registry_artifacts(self) -> Path:
        """Default store of published model artifacts (``publish.artifacts_dir`` overrides it)."""
        return self.root / "registry_artifacts"

    @property
    def cache(self) -> Path:
        """Caches that are safe to delete (e.g. synthetic-label replies)."""
        return self.root / "cache"


def stage_outputs(layout: DataLayout) -> dict[str, dict[str, list[Path]]]:
    """Stage -> {"outs": [...], "metrics": [...]} as ``dvc.yaml`` must declare them."""
    return {
        "ingest": {"outs": [layout.raw], "metrics": []},
        "clean": {
            "outs": [layout.clean_manifest, layout.clean_vocabulary, layout.clean_attributes],
            "metrics": [layout.clean_report],
        },
        "bootstrap_clip": {"outs": [layout.bootstrap_clip], "metrics": []},
        "synth_labels": {
            "outs": [layout.synth_labels_table, layout.synth_vocabulary],
            "metrics": [layout.synth_summary],
        },
        "features": {"outs": [layout.features], "metrics": []},
        "train": {"outs": [layout.trained], "metrics": []},
        "evaluate": {"outs": [layout.eval], "metrics": []},
        "publish": {"outs": [layout.publish_receipt], "metrics": []},
    }
