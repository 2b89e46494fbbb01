"""Helpers shared by tests (importable as ``tests.helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """Overrides that point every stage at a tiny project under ``root`` (see :func:`build_tiny_project`)."""
    return [
        f"paths.data={root}",
        "world.n_train=40",
        "world.n_val=12",
        "world.n_test=6",
        "world.workers=1",
        "clean.min_count=2",
        f"clip.pretrained=local-dir:{root / 'randclip'}",
        "train.num_workers=0",
        "train.batch_size=8",
        "train.progress=false",
        *extra,
    ]


def build_tiny_project(root: Path) -> Path:
    """A tiny offline project under ``root``: synthetic world -> clean manifests, plus a random-weight
    CLIP saved in open_clip's local-dir format (stands in for the bootstrapped one)."""
    import torch

    from ovc.config import ClipConfig, load_config
    from ovc.models.clip import create_clip, save_clip_local_dir
    from ovc.pipeline import run_stage

    cfg = load_config(REPO_ROOT / "params.yaml", tiny_overrides(root))
    run_stage("ingest", cfg)
    run_stage("clean", cfg)
    torch.manual_seed(0)
    save_clip_local_dir(create_clip(ClipConfig(model=cfg.clip.model)), cfg.clip.model, root / "randclip")
    return root


def flow_artifacts(state) -> list:
    """Markdown artifacts created by the flow run behind a final Prefect ``state`` (not its result records)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        return [a for a in client.read_artifacts(artifact_filter=flt) if a.type == "markdown"]
