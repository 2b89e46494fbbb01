"""Fixtures of the publish/registry/inference tests: a tiny project published into a SQLite registry.

Loaded for the whole suite by ``pytest_plugins`` in tests/conftest.py.

The "trained" weights are the initial weights of ``ours`` saved as ``final.safetensors`` and the
metrics file carries a fixed calibrated threshold: publishing and inference only need files of the
right form, not a trained model (training and evaluation have their own tests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO_ROOT, tiny_overrides

PUBLISH_THRESHOLD = 0.42
# small label encoder / video encoder: the shapes, not the sizes, are under test
FAST = (
    "llm.n_prefixes=1",
    "llm.k_attributes=1",
    "llm.l_tokens=2",
    "video_encoder.temporal_layers=1",
    "reader.num_frames=4",
    "publish.batch_size=256",
    "classify.device=cpu",
)


def make_trained_files(cfg, threshold: float = PUBLISH_THRESHOLD, method_name: str = "ours") -> Path:
    """``final.safetensors`` of a method (initial weights, seeded) and a metrics.json with a threshold."""
    import torch

    from ovc.models.methods import build_method, run_dir
    from ovc.train.checkpoint import save_weights

    torch.manual_seed(0)
    method = build_method(cfg, method_name)
    weights = save_weights(method.state_dict_trainable(), run_dir(cfg, method_name) / "final.safetensors")
    write_metrics(cfg, threshold, method_name)
    return weights


def write_metrics(cfg, threshold: float | None, method_name: str = "ours") -> Path:
    path = Path(cfg.paths.data) / "eval" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "val": {method_name: {"aupr_micro": 0.5, "calibrated_threshold": threshold}},
                "calibrated_threshold": threshold,
            }
        )
    )
    return path


def project_config(root: Path, *extra: str):
    from ovc.config import load_config

    return load_config(REPO_ROOT / "params.yaml", tiny_overrides(root, *FAST, *extra))


@pytest.fixture(scope="session")
def published(tiny_project_dir, tmp_path_factory) -> SimpleNamespace:
    """A tiny project with ``ours`` published as v1 (read-only: copy ``registry_copy`` to write)."""
    from ovc.pipeline import run_stage

    root = tmp_path_factory.mktemp("published") / "project"
    shutil.copytree(tiny_project_dir, root)
    cfg = project_config(root)
    weights = make_trained_files(cfg)
    receipt = run_stage("publish", cfg)
    return SimpleNamespace(
        root=root,
        cfg=cfg,
        weights=weights,
        receipt=receipt,
        url=f"sqlite:///{root / 'registry.db'}",
        overrides=tiny_overrides(root, *FAST),
        videos=sorted(str(p) for p in (root / "raw" / "videos").glob("*.mp4")),
    )


@pytest.fixture()
def registry_copy(published, tmp_path) -> str:
    """URL of a private copy of the published registry (same artifacts), for tests that write."""
    dst = tmp_path / "registry.db"
    shutil.copy2(published.root / "registry.db", dst)
    for suffix in ("-wal", "-shm"):
        src = published.root / f"registry.db{suffix}"
        if src.exists():
            shutil.copy2(src, tmp_path / f"registry.db{suffix}")
    return f"sqlite:///{dst}"


@pytest.fixture(scope="session")
def published_model(published):
    """The published v1 loaded once (``Classifier.from_registry(model=...)`` reuses it)."""
    from ovc.infer import load_published

    return load_published("v1", published.url, device="cpu")


@pytest.fixture(scope="session", autouse=True)
def _label_cache_in_tmp(tmp_path_factory):
    """The label-matrix cache (default ``$XDG_CACHE_HOME/ovc/label_matrix``) goes to a temp dir, not ~/.cache."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
