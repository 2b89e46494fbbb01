"""params-paper.yaml trains for real on CPU: random-weight ViT-B/16 + a tiny T5 saved to disk (the
real-weights loading path), one step of every trainable method, in-process and with 2 Ray workers
(DDP over gloo), through the command line `ovc stage train -p params-paper.yaml`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

# ViT-B/16 is built, stepped and checkpointed (vificlip: ~1.8 GB of weights + AdamW state) 12 times
# on CPU: minutes, not seconds
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _stage(name: str, overrides: list[str], *extra: str) -> dict:
    cmd = [sys.executable, "-m", "ovc.cli", "stage", name, "-p", str(REPO_ROOT / "params-paper.yaml")]
    for o in [*overrides, *extra]:
        cmd += ["-S", o]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_paper_params_train_every_method_in_process_and_with_two_ray_workers(tmp_path):
    from ovc.bench.gpu import paper_project
    from ovc.models.methods import TRAINABLE_METHODS

    methods = list(TRAINABLE_METHODS)
    # ViT-B/16 at 32x32 input (2x2 patches): the paper's tower and code paths at a CI-sized cost
    overrides = paper_project(
        tmp_path,
        n_train=4,
        num_frames=1,
        image_size=32,
        extra=(
            f"train.methods=[{','.join(methods)}]",
            "train.threads_per_worker=1",
            "synth_labels.provider=clip-tagger",
            "reader.loader_workers=0",  # no decode processes forked from 4 GB workers on a 2-core box
        ),
    )
    _stage("synth_labels", overrides)  # ours_synth trains on clean ∪ synthetic labels
    for workers in (0, 2):
        summary = _stage("train", overrides, f"train.num_workers={workers}")
        assert set(summary["methods"]) == set(methods)
        for m, r in summary["methods"].items():
            assert r["epochs"] == 1 and r["final_loss"] is not None and r["final_loss"] > 0, (workers, m, r)
        shutil.rmtree(tmp_path / "data" / "models" / "trained")  # the 2-worker run trains afresh
