"""The training loop (paper §3.3) and its Ray Train driver.

:func:`train_methods` trains methods (``ours`` and the trainable baselines) on the clean training
manifest, one after another inside one worker group (:func:`train_method` is the one-method case):

* batches: a fresh permutation of the training videos per epoch, derived from ``(seed, epoch)``;
  each batch's label set P_B ∪ N_B (|·| = 4B) is drawn by :class:`ovc.train.batching.MultiLabelCollator`;
* data parallel: with W workers, global step ``k`` processes batches ``k·W … k·W+W−1`` — worker r
  takes batch ``k·W + r`` — and the trainable gradients are averaged across workers with one
  ``all_reduce`` of a flat buffer (DDP's arithmetic, without wrapping models whose frozen towers
  would only slow DDP down). Gloo on CPU, NCCL on GPUs; Ray Train's ``TorchTrainer`` sets up the
  process group, ``RAY_ADDRESS`` attaches to an existing cluster;
* randomness (frame offsets, negatives, the weight-regularisation α) is seeded per
  ``(seed, epoch, step, rank)``, so a run interrupted after epoch e and resumed from its checkpoint
  ends with exactly the weights of an uninterrupted run;
* every epoch rank 0 writes a checkpoint (:mod:`ovc.train.checkpoint`); a re-run resumes from the
  newest one and skips finished epochs;
* the training curve: every optimizer step's loss (all-reduced over the workers) and, every
  ``train.eval_every`` steps, at step 0 and at the last step, rank 0's val AUPR of the model being
  trained (:mod:`ovc.train.val_curve`; the other ranks wait at the next all-reduce). Rank 0 keeps it
  in each checkpoint (a resumed run keeps its curve) and writes ``curve.json`` beside ``history.json``;
* one ``TorchTrainer.fit`` trains every method of the stage: starting a Ray Train worker group (and
  importing torch/open_clip/transformers in it) costs ~30 s on 2 cores, so a group per method would
  spend ~2 minutes of the offline default's 15-minute budget on start-ups alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovc.config import Config, config_from_dict
from ovc.fileio import atomic_write_json
from ovc.models.methods import TRAINABLE_METHODS, run_dir  # noqa: F401 (run_dir re-exported for the train API)
from ovc.paths import DataLayout
from ovc.train.checkpoint import checkpoint_state, latest_checkpoint
from ovc.train.data import TrainData

log = logging.getLogger(__name__)

# config that does not change what a run computes (may differ between an interrupted run and its resume)
# (the val curve's knobs too: scoring forks the random state, so it never changes the weights)
_NOT_IN_FINGERPRINT = {
    "train": ("methods", "progress", "threads_per_worker", "use_gpu", "eval_every", "eval_videos"),
    "paths": ("data",),
}


def run_fingerprint(cfg: Config, method: str) -> str:
    """Digest of everything a training run's result depends on: the method, the model/loss/train
    params, whether (and in which dtype) it trains from the feature cache, and the bytes of the clean training manifest and CLIP weights. A checkpoint is resumed only
    when its fingerprint matches, so `dvc exp run -S train.lr=...` never resumes a stale run."""
    import hashlib

    from ovc.models.pretrained import training_inputs_digest

    d = asdict(cfg)
    parts: dict[str, Any] = {"method": method}
    for section in (
        "train",
        "loss",
        "llm",
        "label_encoder",
        "video_encoder",
        "baselines",
        "reader",
        "clip",
        "synth_labels",
    ):
        if section in d:
            parts[section] = {k: v for k, v in d[section].items() if k not in _NOT_IN_FINGERPRINT.get(section, ())}
    # training from the feature cache sees fixed uniform frames stored in features.dtype, not the
    # decoded frames: a run started one way must never resume the other way
    parts["features"] = {"enabled": cfg.features.enabled, "dtype": cfg.features.dtype if cfg.features.enabled else None}
    # a CPU step in bf16 (compute.cpu_amp on a CPU with native bf16) computes other weights than an fp32 one
    from ovc.models.device import cpu_amp_active, resolve_device

    parts["cpu_bf16"] = cpu_amp_active(resolve_device(cfg.compute.device), cfg.compute.cpu_amp)
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    h.update(training_inputs_digest(cfg))
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Helpers that run inside each worker
# --------------------------------------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _seed_everything(*keys: int) -> None:
    """Seed torch/numpy from a tuple of ints (deterministic per (seed, epoch, step, rank))."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
    torch.manual_seed(seed)
    np.random.seed(seed)


def _allreduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Sum floats across workers (on the worker's device: NCCL reduces CUDA tensors only)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist = _dist()
    if dist is not None:
        dist.all_reduce(t)
    return t.tolist()


def _step_seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def batch_scores(method, videos, labels: list[str], alpha: float | None = None) -> torch.Tensor:
    """(B, |labels|) scores of one batch; ``videos`` are frames (B, F, 3, H, W) on the method's device
    or cached trunk features (VideoFeatures); ``alpha`` is the step's weight-regularisation α (§3.2)."""
    from ovc.models.video_encoder import VideoEncoder, VideoFeatures

    ve = method.video_encoder
    if isinstance(videos, VideoFeatures):
        v = ve.forward_features(videos, alpha)
    elif isinstance(ve, VideoEncoder):
        v = ve(videos, alpha)
    else:
        v = ve(videos)
    return method.score(v, method.encode_labels(labels))  # (B, D) x (L, D) -> (B, L)


class StepModel(torch.nn.Module):
    """What one training step runs: ``(videos, labels, α) -> scores``. The module DDP wraps, so the
    method's own forward (used by evaluate/classify) stays untouched; α enters as an argument and
    the §3.2 interpolation (``functional_call`` on ``lerp(θ_frozen, θ_ft, α)``) runs inside DDP's
    forward, so its autograd hooks see ``dθ/dθ_ft = α`` like any other use of a parameter."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, videos, labels: list[str], alpha: float | None = None) -> torch.Tensor:
        return batch_scores(self.method, videos, labels, alpha)


def batch_loss(
    method, videos, labels: list[str], targets: torch.Tensor, cfg: Config, alpha: float | None = None
) -> torch.Tensor:
    """Paper eq. 2 for one batch; ``videos`` are frames or cached trunk features (VideoFeatures)."""
    scores = batch_scores(method, videos, labels, alpha)
    return _loss(scores, targets, cfg)


def model_inputs(raw, device: torch.device | str, mean, std):
    """A batch's video inputs on the model's device: uint8 frames (B, F, 3, H, W) from the loader
    (moved as uint8, CLIP-normalised there) or cached VideoFeatures (moved as they are)."""
    from ovc.data.loader import to_model_input
    from ovc.models.video_encoder import VideoFeatures

    if isinstance(raw, VideoFeatures):
        return raw.to(device)
    return to_model_input(raw, device, mean, std)


def step_loss(
    model: torch.nn.Module,
    videos,
    labels: list[str],
    targets: torch.Tensor,
    cfg: Config,
    device: torch.device,
    alpha: float | None = None,
) -> torch.Tensor:
    """One step's forward: scores under autocast (CUDA + ``compute.amp``; CPU bf16 with
    ``compute.cpu_amp`` where the CPU has it natively), the loss in fp32 with the targets moved to
    the scores' device. ``model`` is a :class:`StepModel` (or its DDP wrapper)."""
    from ovc.models.device import train_autocast

    with train_autocast(device, cfg.compute.amp, cfg.compute.cpu_amp):
        scores = model(videos, labels, alpha)  # (B, |P_B ∪ N_B|)
    return _loss(scores, targets, cfg)


def _loss(scores: torch.Tensor, targets: torch.Tensor, cfg: Config) -> torch.Tensor:
    from ovc.train.loss import multilabel_loss_from_scores

    # fp32 loss whatever precision the scores were computed in (autocast on GPUs)
    return multilabel_loss_from_scores(
        scores.float(),
        targets.to(scores.device),
        tau=cfg.loss.tau,
        neg_weight=cfg.loss.neg_weight,
        reduction=cfg.loss.reduction,
    )


def _ray_train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry: :func:`train_worker` (the driver reads each run's history.json)."""
    train_worker(config)


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Per-worker loop (called by Ray Train's TorchTrainer, or in-process when num_workers == 0):
    trains each method of the payload in turn, in the same worker processes.

    Args:
        config: ``{"cfg": Config as dict, "methods": [{"method": name, "fingerprint": digest}, ...],
            "stop_after_epochs": int|None, "ray": bool}``.
    """
    import functools

    from ovc.models.device import resolve_device
    from ovc.train.features import FeatureCache
    from ovc.train.val_curve import ValSubset

    cfg = config_from_dict(config["cfg"])
    if cfg.train.threads_per_worker > 0:
        torch.set_num_threads(cfg.train.threads_per_worker)
    if config.get("ray"):
        import ray.train.torch

        device = ray.train.torch.get_device()  # the GPU Ray assigned to this worker (CPU without GPUs)
    else:
        device = resolve_device(cfg.compute.device)
    load_features = functools.cache(
        lambda: FeatureCache.load(cfg)
    )  # read once per worker, shared by the methods that use it
    load_val = functools.cache(lambda: ValSubset.load(cfg))  # the val-curve videos: decoded once per worker (rank 0)
    results = {}
    for job in config["methods"]:
        results[job["method"]] = _train_one(
            cfg, job["method"], job["fingerprint"], config.get("stop_after_epochs"), load_features, device, load_val
        )
    return results


def _train_one(
    cfg: Config, method_name: str, fingerprint: str, stop_after: int | None, load_features, device, load_val=None
) -> dict[str, Any]:
    """Train one method in this worker (resuming from its newest checkpoint); rank 0 writes the outputs.
    ``load_features()`` returns the feature cache (called only when the method trains from it),
    ``load_val()`` the val-curve subset (:class:`ovc.train.val_curve.ValSubset`; called by rank 0
    at its first evaluation)."""
    from ovc.data.loader import ClipLoader
    from ovc.models.device import grad_scaler
    from ovc.models.methods import build_method, method_clip, uses_frozen_trunk
    from ovc.models.video_encoder import VideoEncoder
    from ovc.train.batching import MultiLabelCollator
    from ovc.train.checkpoint import load_checkpoint, save_checkpoint, save_weights
    from ovc.train.val_curve import ValCurve

    tcfg = cfg.train
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    world = dist.get_world_size() if dist else 1
    device = torch.device(device)

    _seed_everything(tcfg.seed, 0x5EED)  # identical init on every worker (prefixes, prompt transformer)
    method = build_method(cfg, method_name, device=device)
    clip = method_clip(method)
    data = TrainData(cfg, method=method_name)
    params = method.trainable_parameters()
    if not params:
        raise ValueError(f"method {method_name!r} has no trainable parameters; nothing to train")
    optimizer = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    scaler = grad_scaler(device, cfg.compute.amp)
    # the collator draws each batch's label set P_B ∪ N_B (its "frames" are just row positions)
    collator = MultiLabelCollator(data.vocabulary, cfg.loss.labels_per_video, seed=tcfg.seed, frames_key="index")
    cache = None
    if cfg.features.enabled and uses_frozen_trunk(method):
        cache = load_features()
        if rank == 0:
            log.info("%s: training from the feature cache (fixed %s frames)", method_name, cfg.reader.eval_sampling)
    loader = ClipLoader.from_config(
        cfg, data.paths, train=True, stage=f"train {method_name} (rank {rank})", device=device
    )

    out = run_dir(cfg, method_name)
    history: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []  # one row per optimizer step (+ step 0), see ovc.evaluate.curves
    start_epoch = 0
    ckpt = latest_checkpoint(out)  # the driver removed runs of other params/data (see train_methods)
    if ckpt is not None:
        weights, opt_state, state = load_checkpoint(ckpt)
        method.load_state_dict_trainable(weights)
        optimizer.load_state_dict(opt_state)  # moves the state onto the parameters' device
        start_epoch = int(state["epoch"])
        history = state.get("history", [])
        curve = state.get("curve", [])
        if rank == 0:
            log.info("%s: resuming from %s (epoch %d done)", method_name, ckpt, start_epoch)

    model: torch.nn.Module = StepModel(method)
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        # DDP averages the trainable gradients (bucketed all-reduce overlapping backward; NCCL on
        # GPUs, gloo on CPU, as Ray Train set up the group). Frozen CLIP/LLM weights have no grads
        # and are left alone; find_unused_parameters covers methods whose every trainable tensor is
        # not used in every step (e.g. the last temporal block's frame path).
        model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=True,
        )
    video_encoder = method.video_encoder if isinstance(method.video_encoder, VideoEncoder) else None

    n_batches = math.ceil(len(data) / tcfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / world)
    if tcfg.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, tcfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * tcfg.epochs
    scheduler = _lr_lambda(tcfg.warmup_steps, total_steps)

    def inputs_of(batch) -> tuple[Any, list[int]]:
        if cache is not None:
            kept = [i for i in batch if data.video_ids[i] in cache]  # the cache skipped unreadable videos
            raw = cache.get([data.video_ids[i] for i in kept]) if kept else None
        else:
            raw, kept = batch.frames, batch.indices
        return (model_inputs(raw, device, clip.image_mean, clip.image_std) if kept else None), kept

    val_curve = ValCurve(cfg, method, device, load_val) if rank == 0 and tcfg.eval_every > 0 else None

    def val_point(done: int) -> dict[str, Any]:
        """The curve's val cells after ``done`` optimizer steps (rank 0, when due; else none)."""
        if val_curve is None or not (done % tcfg.eval_every == 0 or done == total_steps):
            return {}
        point = val_curve.evaluate()
        log.info(
            "%s step %d/%d: val AUPR macro %s micro %s (%.2f s)",
            method_name,
            done,
            total_steps,
            _fmt(point["val_aupr_macro"]),
            _fmt(point["val_aupr_micro"]),
            point["val_seconds"],
        )
        return point

    if start_epoch == 0 and not curve and (stop_after is None or stop_after > 0):
        curve.append({"step": 0, "loss": None, **val_point(0)})  # the untrained start

    show_progress = rank == 0 and tcfg.progress
    fallback = None  # the last inputs of this rank: a rank without a batch runs them at weight 0 (DDP needs every rank)
    for epoch in range(start_epoch, tcfg.epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        method.train()
        collator.set_epoch(epoch)
        order = np.random.default_rng([tcfg.seed, epoch]).permutation(len(data)).tolist()
        batches = [order[i : i + tcfg.batch_size] for i in range(0, len(order), tcfg.batch_size)]
        mine = [batches[s * world + rank] for s in range(steps_per_epoch) if s * world + rank < len(batches)]
        source = iter(mine) if cache is not None else loader.batches(mine, epoch)
        t0 = time.time()
        wait = 0.0
        loss_sum, pair_count, batch_count = 0.0, 0.0, 0.0
        val_seconds = 0.0  # this epoch's val-curve time (kept out of "seconds": benches time the training)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"{method_name} epoch {epoch + 1}/{tcfg.epochs}", leave=False)
        for step in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            for g in optimizer.param_groups:
                g["lr"] = tcfg.lr * scheduler(global_step)
            _seed_everything(tcfg.seed, epoch, step, rank)
            # one α per step, the same on every worker (§3.2: one interpolation of the weights per step)
            alpha = (
                video_encoder.sample_alpha(torch.Generator().manual_seed(_step_seed(tcfg.seed, epoch, step, 0xA1FA)))
                if video_encoder
                else None
            )
            optimizer.zero_grad(set_to_none=True)
            b = step * world + rank
            step_inputs, weight = None, 0.0
            if b < len(batches):
                t_wait = time.perf_counter()
                videos, kept = inputs_of(next(source))
                wait += time.perf_counter() - t_wait
                if kept:
                    batch = collator(
                        [
                            {"index": torch.tensor(j), "labels": data.labels[i], "video_id": data.video_ids[i]}
                            for j, i in enumerate(kept)
                        ]
                    )
                    step_inputs, weight = (videos, batch["labels"], batch["targets"]), 1.0
                    fallback = step_inputs
            if step_inputs is None and dist is not None:
                step_inputs = (
                    fallback
                    if fallback is not None
                    else _first_readable(batches, inputs_of, loader, collator, data, epoch, cache)
                )
            loss_value = 0.0
            if step_inputs is not None:
                videos, labels, targets = step_inputs
                loss = step_loss(model, videos, labels, targets, cfg, device, alpha)
                scaler.scale(loss * weight).backward()
                if weight:
                    loss_value = float(loss.detach())
                    loss_sum += loss_value
                    pair_count += float(targets.numel())
            # the step's loss summed over the batches that contributed rides on the all-reduce every step has
            n_contrib, step_loss_sum = _allreduce_sum([weight, loss_value * weight], device)
            scaler.unscale_(optimizer)
            if world > 1 or n_contrib > 1:
                # DDP averaged over all W workers; the mean is over the batches that contributed
                scale = world / max(n_contrib, 1.0)
                if scale != 1.0:
                    for p in params:
                        if p.grad is not None:
                            p.grad.mul_(scale)
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            batch_count += weight
            t_val = time.perf_counter()
            point = val_point(global_step + 1)
            val_seconds += time.perf_counter() - t_val
            curve.append({"step": global_step + 1, "loss": step_loss_sum / n_contrib if n_contrib else None, **point})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / max(batch_count, 1):.3f}")
        if bar is not None:
            bar.close()
        loss_sum, batch_count, pair_count, skipped = _allreduce_sum(
            [loss_sum, batch_count, pair_count, float(len(loader.failures))], device
        )
        loader.failures.clear()
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(batch_count, 1.0),  # mean per batch, as reduced by cfg.loss.reduction
            "pairs": pair_count,
            "seconds": time.time() - t0 - val_seconds,  # training only
            "val_curve_seconds": val_seconds,  # rank 0's val-AUPR evaluations of the epoch
            "data_wait_seconds": wait,  # rank 0's time blocked on frames (decode not hidden by the loader)
            "skipped_videos": skipped,
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(metrics)
        ckpt_path = None
        if rank == 0:
            ckpt_path = save_checkpoint(
                out,
                epoch + 1,
                method.state_dict_trainable(),
                optimizer.state_dict(),
                {"history": history, "curve": curve, "method": method_name, "fingerprint": fingerprint},
            )
            log.info(
                "%s epoch %d/%d: loss %.4f (%.1f s)",
                method_name,
                epoch + 1,
                tcfg.epochs,
                metrics["loss"],
                metrics["seconds"],
            )
        _report({"method": method_name, **metrics}, ckpt_path)

    if rank == 0:
        save_weights(method.state_dict_trainable(), out / "final.safetensors", metadata={"method": method_name})
        (out / "history.json").write_text(json.dumps(history, indent=2))
        atomic_write_json(out / "curve.json", curve)
    return {"method": method_name, "history": history, "curve": curve}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _first_readable(batches, inputs_of, loader, collator, data, epoch: int, cache):
    """Inputs of the epoch's first readable batch (a rank without a batch of its own at its first
    step runs them at weight 0, so every DDP rank joins the step's gradient all-reduce)."""
    for b in batches:
        videos, kept = inputs_of(b if cache is not None else next(loader.batches([b], epoch)))
        if kept:
            batch = collator(
                [
                    {"index": torch.tensor(j), "labels": data.labels[i], "video_id": data.video_ids[i]}
                    for j, i in enumerate(kept)
                ]
            )
            return videos, batch["labels"], batch["targets"]
    raise ValueError("train: no readable video in the training split")


def _lr_lambda(warmup: int, total: int):
    """Linear warm-up then cosine decay to 10% (a common schedule for prompt learning)."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _report(metrics: dict[str, Any], ckpt_path: Path | None) -> None:
    """Report an epoch to Ray Train when running under it (no-op in-process)."""
    try:
        import ray.train as rt

        ctx = rt.get_context()
        if ctx is None:
            return
    except Exception:  # not inside a Ray Train worker
        return
    try:
        checkpoint = rt.Checkpoint.from_directory(str(ckpt_path)) if ckpt_path is not None else None
        rt.report(metrics, checkpoint=checkpoint)
    except RuntimeError:
        return


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------
def train_method(cfg: Config, method: str, stop_after_epochs: int | None = None) -> dict[str, Any]:
    """Train one method; see :func:`train_methods`. Returns ``{"method", "history", "curve", "run_dir"}``."""
    return train_methods(cfg, [method], stop_after_epochs)[method]


def train_methods(cfg: Config, methods: list[str], stop_after_epochs: int | None = None) -> dict[str, dict[str, Any]]:
    """Train methods one after another: Ray Train with ``cfg.train.num_workers`` workers (one worker
    group, one ``fit``, for all of them), or in-process when 0.

    Args:
        cfg: the whole config (train, loss, model sections are used).
        methods: names from :data:`TRAINABLE_METHODS`, trained in this order.
        stop_after_epochs: stop each method after this many epochs in total (simulates an interruption; tests).

    Returns:
        ``{method: {"method", "history", "curve", "run_dir"}}``: ``history`` one entry per epoch,
        ``curve`` one row per optimizer step and step 0 (:mod:`ovc.evaluate.curves`).
    """
    unknown = [m for m in methods if m not in TRAINABLE_METHODS]
    if unknown:
        raise ValueError(f"method {unknown[0]!r} is not trainable; trainable: {', '.join(TRAINABLE_METHODS)}")
    jobs = []
    for method in dict.fromkeys(methods):  # each once, in order
        fingerprint = run_fingerprint(cfg, method)
        out = run_dir(cfg, method)
        ckpt = latest_checkpoint(out)
        if out.exists() and (ckpt is None or checkpoint_state(ckpt).get("fingerprint") != fingerprint):
            log.info("%s: %s holds no checkpoint of these params/data; starting afresh", method, out)
            shutil.rmtree(out)  # another configuration's run (or debris): never resume it
        jobs.append({"method": method, "fingerprint": fingerprint})
    payload = {
        "cfg": asdict(_absolute_paths(cfg)),
        "methods": jobs,
        "stop_after_epochs": stop_after_epochs,
        "ray": cfg.train.num_workers > 0,
    }
    if cfg.train.num_workers <= 0:
        train_worker(payload)
    else:
        _fit_with_ray(payload, cfg)
    summary = {}
    for job in jobs:  # rank 0 wrote each method's history.json and curve.json beside its weights
        method = job["method"]
        history = json.loads((run_dir(cfg, method) / "history.json").read_text())
        curve_file = run_dir(cfg, method) / "curve.json"
        curve = json.loads(curve_file.read_text()) if curve_file.exists() else []  # runs finished before curves
        summary[method] = {"method": method, "history": history, "curve": curve, "run_dir": str(run_dir(cfg, method))}
    return summary


def _absolute_paths(cfg: Config) -> Config:
    """The config with its data root and a relative CLIP weights path made absolute: Ray workers run
    in their own working directories, where relative paths would point nowhere."""
    import dataclasses

    pretrained = cfg.clip.pretrained
    prefix = "local-dir:" if pretrained.startswith("local-dir:") else ""
    local = pretrained[len(prefix) :]
    if local and not os.path.isabs(local) and os.path.exists(local):
        pretrained = prefix + str(Path(local).resolve())
    return dataclasses.replace(
        cfg,
        paths=dataclasses.replace(cfg.paths, data=str(DataLayout.of(cfg).root.resolve())),
        clip=dataclasses.replace(cfg.clip, pretrained=pretrained),
    )


def _fit_with_ray(payload: dict[str, Any], cfg: Config) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        init_kwargs: dict[str, Any] = {
            "runtime_env": {"env_vars": env},
            "include_dashboard": False,
            "log_to_driver": True,
        }
        if not address:
            # a local single-node cluster sized for the workers (+1 CPU for Ray Train's controller)
            init_kwargs["num_cpus"] = max(os.cpu_count() or 1, cfg.train.num_workers + 1)
        ray.init(address=address or None, **init_kwargs)
    use_gpu = torch.cuda.is_available() and cfg.train.use_gpu
    trainer = TorchTrainer(
        _ray_train_loop,
        train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name="ovc-" + "-".join(j["method"] for j in payload["methods"]),
            storage_path=str(DataLayout.of(cfg).ray_storage.resolve()),
        ),
    )
    trainer.fit()


_WORKER_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "OVC_PARAMS",
    "PYTHONPATH",
)
