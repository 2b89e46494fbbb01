"""``ours_no_reg`` (paper §3.2, Table 3b: ours at λ = 0) through train -> evaluate -> publish -> load.

The weight-regularisation α must be 1 at every forward of every stage: in training (the trainer's
per-step draw is None at λ = 0, so the encoder decides), at evaluation, and in the model rebuilt from
the registry — the ablation is unregularised end to end, with its temporal branch on.
"""

from __future__ import annotations

import pytest
import torch

from ovc.config import load_config
from ovc.models.video_encoder import VideoEncoder
from ovc.pipeline import run_stage
from tests.fixtures_published import FAST
from tests.helpers import REPO_ROOT, tiny_overrides


@pytest.fixture()
def alphas(monkeypatch) -> list[tuple[bool, float]]:
    """(training?, α) of every branch forward, recorded at :meth:`VideoEncoder.resolve_alpha`."""
    seen: list[tuple[bool, float]] = []
    orig = VideoEncoder.resolve_alpha

    def spy(self, alpha=None):
        a = orig(self, alpha)
        seen.append((self.training, a))
        return a

    monkeypatch.setattr(VideoEncoder, "resolve_alpha", spy)
    return seen


def test_ours_no_reg_trains_evaluates_publishes_and_loads_at_alpha_one(tiny_project, alphas):
    from ovc.infer import load_published
    from ovc.models.methods import load_method, load_weights, run_dir

    cfg = load_config(
        REPO_ROOT / "params.yaml",
        tiny_overrides(
            tiny_project,
            *FAST,
            "train.epochs=1",
            "train.max_steps_per_epoch=2",  # step 1 moves W_out off 0, so step 2's gradient reaches θ_ft
            "train.warmup_steps=0",
            "train.methods=[ours_no_reg]",
            "evaluate.methods=[ours_no_reg]",
            "evaluate.main_method=ours_no_reg",
            "publish.method=ours_no_reg",
        ),
    )
    assert cfg.video_encoder.weight_reg_lambda == 0.5  # the config is ours'; the method sets λ = 0 itself

    run_stage("train", cfg)
    trained = [a for training, a in alphas if training]
    assert len(trained) == 2 and set(trained) == {1.0}
    final = load_weights(run_dir(cfg, "ours_no_reg") / "final.safetensors")
    start = load_method(cfg, "ours_step0")  # untrained, ours_no_reg is ours: spatial copies = CLIP's layers
    before = start.state_dict_trainable()
    spatial = [k for k in final if ".spatial." in k]
    assert spatial and any(not torch.equal(final[k], before[k]) for k in spatial)  # the spatial copies trained

    alphas.clear()
    run_stage("evaluate", cfg)
    assert alphas and {a for _, a in alphas} == {1.0} and not any(training for training, _ in alphas)
    metrics = (tiny_project / "eval" / "metrics.json").read_text()
    assert '"ours_no_reg"' in metrics

    receipt = run_stage("publish", cfg)
    assert receipt["method"] == "ours_no_reg"
    model = load_published(receipt["model_version"], f"sqlite:///{tiny_project / 'registry.db'}", device="cpu")
    enc = model.method.video_encoder
    assert isinstance(enc, VideoEncoder) and enc.cfg.use_temporal and enc.cfg.weight_reg_lambda == 0.0
    assert not enc.training and enc.resolve_alpha() == 1.0
    loaded = model.method.state_dict_trainable()
    assert all(torch.equal(loaded[k], final[k]) for k in final)
