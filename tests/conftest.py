"""Shared pytest setup: offline, telemetry-free, deterministic, small thread counts (CI has 2 cores)."""

from __future__ import annotations

import os

# Set before anything imports transformers / huggingface_hub / prefect / ray.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import REPO_ROOT, build_tiny_project, tiny_overrides  # noqa: E402,F401

# fixtures of a tiny published model, shared by the registry, infer, stages and flows tests
pytest_plugins = ["tests.fixtures_published"]


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """Keep torch to 2 threads so tests behave the same on CI's 2 cores and on bigger machines."""
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_project_dir(tmp_path_factory) -> Path:
    """A tiny project (world + clean + random CLIP), built once per session; copy it before writing."""
    return build_tiny_project(tmp_path_factory.mktemp("tiny_project"))


@pytest.fixture()
def tiny_project(tiny_project_dir, tmp_path) -> Path:
    """A private copy of the tiny project for one test (stages write models/eval into it)."""
    import shutil

    dst = tmp_path / "project"
    shutil.copytree(tiny_project_dir, dst)
    return dst
