"""Training loop: the loss falls on CPU, checkpoints resume exactly, Ray Train with 2 workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ovc.config import load_config
from ovc.train.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from ovc.train.loop import run_dir, run_fingerprint, train_method, train_methods
from tests.helpers import REPO_ROOT, tiny_overrides


def _cfg(root, *extra):
    return load_config(REPO_ROOT / "params.yaml", tiny_overrides(root, *extra))


def _final(cfg, method):
    return load_weights(run_dir(cfg, method) / "final.safetensors")


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs (max abs diff {(a[k] - b[k]).abs().max():.3g})"


def test_loss_falls_on_cpu(tiny_project):
    """The learnable-prompt label encoder (frozen video side) fits the training split: loss falls."""
    cfg = _cfg(tiny_project, "train.epochs=6", "train.lr=0.003", "train.warmup_steps=0", "train.max_steps_per_epoch=3")
    result = train_method(cfg, "ours_no_temporal")
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], f"loss did not fall: {losses}"
    # checkpoints every epoch, final weights hold exactly the trainable tensors
    ckpt = latest_checkpoint(run_dir(cfg, "ours_no_temporal"))
    assert ckpt is not None and ckpt.name == "epoch_0006"
    weights, opt_state, state = load_checkpoint(ckpt)
    assert state["epoch"] == 6 and len(state["history"]) == 6
    _assert_same_weights(weights, _final(cfg, "ours_no_temporal"))
    assert any(k.startswith("label_encoder.") for k in weights) and not any(".clip." in k for k in weights)


def test_interrupted_run_resumes_to_identical_weights(tiny_project):
    """Stop after epoch 1, re-run: the result equals an uninterrupted run with the same seed, and
    the training curve (kept in the checkpoint) goes on where it stopped. The straight run scores
    val every 3 steps, the interrupted one every 2: scoring never changes what is trained."""
    extra = ("train.epochs=3", "train.max_steps_per_epoch=2", "train.eval_videos=6")
    interrupted = _cfg(tiny_project, *extra, "train.eval_every=2")
    train_method(interrupted, "ours", stop_after_epochs=1)
    assert latest_checkpoint(run_dir(interrupted, "ours")).name == "epoch_0001"
    state = load_checkpoint(latest_checkpoint(run_dir(interrupted, "ours")))[2]
    assert [(r["step"], "val_aupr_macro" in r) for r in state["curve"]] == [(0, True), (1, False), (2, True)]
    resumed = train_method(interrupted, "ours")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    curve = resumed["curve"]
    assert [r["step"] for r in curve] == list(range(7))
    assert [r["step"] for r in curve if r.get("val_aupr_macro") is not None] == [0, 2, 4, 6]
    assert curve[:3] == state["curve"]  # the first epoch's rows come from the checkpoint, not a re-run

    straight = _cfg(tiny_project, *extra, f"paths.data={tiny_project}", "train.seed=0", "train.eval_every=3")
    # same project, different run dir: move the finished run aside and train again from scratch
    done = run_dir(interrupted, "ours")
    done.rename(done.with_name("ours_resumed"))
    again = train_method(straight, "ours")
    _assert_same_weights(load_weights(done.with_name("ours_resumed") / "final.safetensors"), _final(straight, "ours"))
    assert [r["step"] for r in again["curve"] if r.get("val_aupr_macro") is not None] == [0, 3, 6]
    assert [r["loss"] for r in again["curve"]] == [r["loss"] for r in curve]  # the same loss at every step
    for step in (0, 6):  # the same val AUPR where both scored
        assert {k: v for k, v in again["curve"][step].items() if k.startswith("val_aupr")} == {
            k: v for k, v in curve[step].items() if k.startswith("val_aupr")
        }


def test_rerun_after_completion_is_a_noop(tiny_project):
    cfg = _cfg(tiny_project, "train.epochs=1", "train.max_steps_per_epoch=1")
    train_method(cfg, "coop")
    before = (run_dir(cfg, "coop") / "final.safetensors").read_bytes()
    again = train_method(cfg, "coop")
    assert len(again["history"]) == 1
    assert (run_dir(cfg, "coop") / "final.safetensors").read_bytes() == before


def test_fingerprint_tells_cache_runs_from_frame_runs(tiny_project):
    """A run started from decoded frames must never resume from the feature cache (or vice versa)."""
    frames = run_fingerprint(_cfg(tiny_project), "ours")
    cached = run_fingerprint(_cfg(tiny_project, "features.enabled=true", "features.dtype=float16"), "ours")
    cached32 = run_fingerprint(_cfg(tiny_project, "features.enabled=true", "features.dtype=float32"), "ours")
    assert len({frames, cached, cached32}) == 3
    # knobs that do not change what is computed keep the fingerprint
    assert run_fingerprint(_cfg(tiny_project, "features.dtype=float32"), "ours") == frames
    assert run_fingerprint(_cfg(tiny_project, "train.progress=false", "features.batch_size=3"), "ours") == frames
    assert run_fingerprint(_cfg(tiny_project, "train.lr=0.01"), "ours") != frames


def test_frozen_method_cannot_be_trained(tiny_project):
    with pytest.raises(ValueError, match="not trainable"):
        train_method(_cfg(tiny_project), "clip_classname")


@pytest.mark.slow
def test_killed_process_resumes_to_identical_weights(tiny_project, tmp_path):
    """A real SIGKILL of `ovc stage train` after its first checkpoint; the re-run finishes identically."""
    extra = ["train.epochs=3", "train.max_steps_per_epoch=2", "train.methods=[ours_no_temporal]"]
    args = [sys.executable, "-m", "ovc.cli", "stage", "train"] + [
        a for o in tiny_overrides(tiny_project, *extra) for a in ("-S", o)
    ]
    cfg = _cfg(tiny_project, *extra)
    ckpts = run_dir(cfg, "ours_no_temporal") / "checkpoints"
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (ckpts / "epoch_0001").exists():
        assert proc.poll() is None, "training exited before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir(cfg, "ours_no_temporal") / "final.safetensors").exists()
    subprocess.run(args, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _final(cfg, "ours_no_temporal")

    d = run_dir(cfg, "ours_no_temporal")
    d.rename(d.with_name("killed_run"))
    train_method(cfg, "ours_no_temporal")
    _assert_same_weights(killed, _final(cfg, "ours_no_temporal"))


@pytest.mark.slow
def test_ray_two_workers_loss_falls_and_resumes(tiny_project):
    """Ray Train TorchTrainer, 2 CPU workers (gloo), two methods in one worker group: loss falls;
    stop after epoch 1 + resume == straight run."""
    pytest.importorskip("ray.train.torch", reason="ray[train] is a core dependency; its absence is an install error")
    extra = (
        "train.num_workers=2",
        "train.epochs=3",
        "train.max_steps_per_epoch=2",
        "train.lr=0.003",
        "train.warmup_steps=0",
    )
    cfg = _cfg(tiny_project, *extra)
    try:
        train_methods(cfg, ["ours", "coop"], stop_after_epochs=1)  # one fit, both methods interrupted
        assert latest_checkpoint(run_dir(cfg, "ours")).name == "epoch_0001"
        assert latest_checkpoint(run_dir(cfg, "coop")).name == "epoch_0001"
        both = train_methods(cfg, ["ours", "coop"])
        assert [h["epoch"] for h in both["coop"]["history"]] == [1, 2, 3]
        resumed = both["ours"]
        losses = [h["loss"] for h in resumed["history"]]
        assert len(losses) == 3 and losses[-1] < losses[0], losses
        # the curve across the interruption: rank 0's val AUPR at step 0 and the end, the all-reduced loss at every step
        curve = resumed["curve"]
        assert [r["step"] for r in curve] == list(range(7)) and all(r["loss"] > 0 for r in curve[1:])
        assert [r["step"] for r in curve if r.get("val_aupr_macro") is not None] == [0, 6]
        d = run_dir(cfg, "ours")
        d.rename(d.with_name("ours_resumed"))
        train_method(cfg, "ours")
        _assert_same_weights(load_weights(d.with_name("ours_resumed") / "final.safetensors"), _final(cfg, "ours"))
        hist = json.loads((run_dir(cfg, "ours") / "history.json").read_text())
        assert hist[0]["pairs"] > 0
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def test_feature_cache_gives_the_same_loss_as_recomputing(tiny_project):
    """Training from cached trunk outputs (float32) computes exactly the loss of the frame path."""
    from ovc.config import load_config as _load
    from ovc.data.loader import ClipLoader, to_model_input
    from ovc.models.methods import build_method, method_clip
    from ovc.pipeline import run_stage
    from ovc.train.batching import sample_label_set
    from ovc.train.data import TrainData
    from ovc.train.features import FeatureCache
    from ovc.train.loop import batch_loss

    cfg = _cfg(tiny_project, "features.enabled=true", "features.dtype=float32", "reader.train_sampling=uniform")
    summary = run_stage("features", cfg)
    assert summary["enabled"] and summary["videos"] > 0
    cache = FeatureCache.load(cfg)
    torch.manual_seed(0)
    method = build_method(cfg, "ours")
    data = TrainData(cfg, method="ours")
    idx = list(range(6))
    label_set = sample_label_set([data.labels[i] for i in idx], data.vocabulary, 4, 0)
    clip = method_clip(method)
    [batch] = list(ClipLoader.from_config(cfg, data.paths, train=True, num_workers=0).batches([idx]))
    frames = to_model_input(batch.frames, "cpu", clip.image_mean, clip.image_std)
    feats = cache.get([data.video_ids[i] for i in idx])
    assert batch.indices == idx
    method.train()
    torch.manual_seed(1)
    from_frames = batch_loss(method, frames, label_set.labels, label_set.targets, cfg)
    torch.manual_seed(1)  # same α draw
    from_cache = batch_loss(method, feats, label_set.labels, label_set.targets, cfg)
    assert torch.allclose(from_frames, from_cache, rtol=1e-5, atol=1e-5), (from_frames, from_cache)

    # a cache built from other weights is refused with what to run
    stale = _load(
        REPO_ROOT / "params.yaml", tiny_overrides(tiny_project, "features.enabled=true", "reader.num_frames=4")
    )
    with pytest.raises(Exception, match="re-run `ovc stage features`"):
        FeatureCache.load(stale)
    # and the whole loop runs from the cache
    result = train_method(
        _cfg(
            tiny_project,
            "features.enabled=true",
            "features.dtype=float32",
            "train.epochs=1",
            "train.max_steps_per_epoch=2",
        ),
        "ours",
    )
    assert result["history"][0]["pairs"] > 0


def test_ray_payload_paths_are_absolute(tmp_path, monkeypatch):
    """Ray workers run in their own working directories: the data root and relative weights must be absolute."""
    from ovc.train.loop import _absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    cfg = load_config(REPO_ROOT / "params.yaml", ["paths.data=data", "clip.pretrained=local-dir:weights"])
    abs_cfg = _absolute_paths(cfg)
    assert abs_cfg.paths.data == str(tmp_path / "data")
    assert abs_cfg.clip.pretrained == f"local-dir:{tmp_path / 'weights'}"
    assert (
        _absolute_paths(load_config(REPO_ROOT / "params.yaml", ["clip.pretrained=openai"])).clip.pretrained == "openai"
    )


@pytest.mark.slow
def test_feature_cache_bench_quick_reports_side_by_side():
    """`ovc bench feature_cache --quick`: frames and cache epochs of each method, measured in one run."""
    from ovc.bench.features import bench_feature_cache

    out = bench_feature_cache(quick=True)
    assert out["methods"] == ["ours", "coop"]
    for method in out["methods"]:
        row = out["epoch_seconds_by_method"][method]
        assert row["from_frames"] > 0 and row["from_cache"] > 0
        assert out["speedup_by_method"][method] == pytest.approx(row["from_frames"] / row["from_cache"], rel=1e-2)
    assert out["speedup"] == pytest.approx(out["epoch_seconds_from_frames"] / out["epoch_seconds_from_cache"], rel=1e-2)
    assert out["video_side_speedup"] > 0 and out["cache_build_seconds"] > 0
