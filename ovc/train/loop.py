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
from ovc.train.checkpoint import checkpoint_state, latest_checkpoint

log = logging.getLogger(__name__)

# methods trained by the `train` stage; the frozen baselines have nothing to train
# (``ours_synth`` = ``ours`` trained with the synthetic labels merged in, paper §4.4)
TRAINABLE_METHODS = ("ours", "ours_no_temporal", "coop", "dualcoop", "vificlip", "ours_synth")


def run_dir(cfg: Config, method: str) -> Path:
    """Where a method's checkpoints and final weights live (``data/models/trained/<method>``)."""
    return Path(cfg.paths.data) / "models" / "trained" / method


# config that does not change what a run computes (may differ between an interrupted run and its resume)
_NOT_IN_FINGERPRINT = {"train": ("methods", "progress", "threads_per_worker", "use_gpu"), "paths": ("data",)}


def run_fingerprint(cfg: Config, method: str) -> str:
    """Digest of everything a training run's result depends on: the method, the model/loss/train
    params, whether (and in which dtype) it trains from the feature cache, and the bytes of the clean training manifest and CLIP weights. A checkpoint is resumed only
    when its fingerprint matches, so `dvc exp run -S train.lr=...` never resumes a stale run."""
    import hashlib

    from ovc.models.pretrained import training_inputs_digest

    d = asdict(cfg)
    parts: dict[str, Any] = {"method": method}
    for section in ("train", "loss", "llm", "label_encoder", "video_encoder", "baselines", "reader", "clip", "synth_labels"):
        if section in d:
            parts[section] = {k: v for k, v in d[section].items() if k not in _NOT_IN_FINGERPRINT.get(section, ())}
    # training from the feature cache sees fixed uniform frames stored in features.dtype, not the
    # decoded frames: a run started one way must never resume the other way
    parts["features"] = {"enabled": cfg.features.enabled, "dtype": cfg.features.dtype if cfg.features.enabled else None}
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


def _allreduce_mean_grads(params: list[torch.nn.Parameter], n_contributing: float) -> None:
    """Sum every trainable gradient across workers in one flat all_reduce, then divide by the number
    of batches that contributed this step (a worker without a batch contributes zeros)."""
    dist = _dist()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # list of (...) -> (P,)
    if dist is not None:
        dist.all_reduce(flat)
    flat /= max(n_contributing, 1.0)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def _allreduce_sum(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    dist = _dist()
    if dist is not None:
        dist.all_reduce(t)
    return t.tolist()


class _TrainData:
    """The training split: video paths, positive labels, the training vocabulary, frame loading."""

    def __init__(self, cfg: Config, method: str = ""):
        from ovc.data.manifest import data_roots, read_manifest, read_vocabulary, resolve_video_path
        from ovc.synth.stage import merged_train_labels, merged_train_vocabulary

        clean = Path(cfg.paths.data) / "clean"
        manifest_path = clean / "manifest.parquet"
        df = read_manifest(manifest_path, roots=data_roots(cfg))  # paths confined to the data roots
        df = df[df["split"] == "train"].reset_index(drop=True)
        if len(df) == 0:
            raise ValueError(f"{manifest_path}: no videos with split 'train'")
        df = merged_train_labels(cfg, df, method)  # + synthetic labels (paper §4.4) when switched on
        vocab = read_vocabulary(clean / "vocabulary.parquet")
        self.vocabulary = merged_train_vocabulary(cfg, sorted(vocab.loc[vocab["vocab"] == "train", "label"].tolist()), method)
        self.video_ids = df["video_id"].tolist()
        self.labels = [list(x) for x in df["labels"]]
        self.paths = [str(resolve_video_path(manifest_path, p)) for p in df["path"]]

    def __len__(self) -> int:
        return len(self.video_ids)


def _batch_videos(data: _TrainData, idx: list[int], cfg: Config, clip, rng: np.random.Generator, cache=None):
    """The batch's video inputs and the dataset indices kept (unreadable videos are dropped).

    Returns (frames (B, F, 3, H, W) CLIP-normalised, kept) or, with a feature cache, (VideoFeatures, kept);
    (None, []) when nothing in the batch could be read.
    """
    from ovc.data.video import VideoReadError, normalize_frames, read_frames

    if cache is not None:
        kept = [i for i in idx if data.video_ids[i] in cache]  # the cache skipped unreadable videos
        return (cache.get([data.video_ids[i] for i in kept]), kept) if kept else (None, [])
    frames, kept = [], []
    for i in idx:
        try:
            f = read_frames(
                data.paths[i], cfg.reader.num_frames, cfg.reader.image_size, sampling=cfg.reader.train_sampling, rng=rng, max_pixels=cfg.reader.max_pixels
            )
        except VideoReadError as e:
            log.warning("skipping training video: %s", e)
            continue
        frames.append(normalize_frames(f, clip.image_mean, clip.image_std))
        kept.append(i)
    if not frames:
        return None, []
    return torch.stack(frames), kept  # B x (F, 3, H, W) -> (B, F, 3, H, W)


def batch_loss(method, videos, labels: list[str], targets: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Paper eq. 2 for one batch; ``videos`` are frames or cached trunk features (VideoFeatures)."""
    from ovc.models.video_encoder import VideoFeatures
    from ovc.train.loss import multilabel_loss_from_scores

    if isinstance(videos, VideoFeatures):
        scores = method.score(method.video_encoder.forward_features(videos), method.encode_labels(labels))
    else:
        scores = method(videos, labels)  # (B, |P_B ∪ N_B|)
    return multilabel_loss_from_scores(scores, targets, tau=cfg.loss.tau, neg_weight=cfg.loss.neg_weight, reduction=cfg.loss.reduction)


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Per-worker loop (called by Ray Train's TorchTrainer, or in-process when num_workers == 0):
    trains each method of the payload in turn, in the same worker processes.

    Args:
        config: ``{"cfg": Config as dict, "methods": [{"method": name, "fingerprint": digest}, ...],
            "stop_after_epochs": int|None}``.
    """
    import functools

    from ovc.train.features import FeatureCache

    cfg = config_from_dict(config["cfg"])
    if cfg.train.threads_per_worker > 0:
        torch.set_num_threads(cfg.train.threads_per_worker)
    load_features = functools.cache(lambda: FeatureCache.load(cfg))  # read once per worker, shared by the methods that use it
    results = {}
    for job in config["methods"]:
        results[job["method"]] = _train_one(cfg, job["method"], job["fingerprint"], config.get("stop_after_epochs"), load_features)
    return results


def _train_one(cfg: Config, method_name: str, fingerprint: str, stop_after: int | None, load_features) -> dict[str, Any]:
    """Train one method in this worker (resuming from its newest checkpoint); rank 0 writes the outputs.
    ``load_features()`` returns the feature cache (called only when the method trains from it)."""
    from ovc.models.build import build_method, method_clip
    from ovc.train.batching import MultiLabelCollator
    from ovc.train.checkpoint import load_checkpoint, save_checkpoint, save_weights
    from ovc.train.features import uses_frozen_trunk

    tcfg = cfg.train
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    world = dist.get_world_size() if dist else 1

    _seed_everything(tcfg.seed, 0x5EED)  # identical init on every worker (prefixes, prompt transformer)
    method = build_method(cfg, method_name)
    clip = method_clip(method)
    data = _TrainData(cfg, method=method_name)
    params = method.trainable_parameters()
    if not params:
        raise ValueError(f"method {method_name!r} has no trainable parameters; nothing to train")
    optimizer = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    # the collator draws each batch's label set P_B ∪ N_B (its "frames" are just row positions)
    collator = MultiLabelCollator(data.vocabulary, cfg.loss.labels_per_video, seed=tcfg.seed, frames_key="index")
    cache = None
    if cfg.features.enabled and uses_frozen_trunk(method):
        cache = load_features()
        if rank == 0:
            log.info("%s: training from the feature cache (fixed %s frames)", method_name, cfg.reader.eval_sampling)

    out = run_dir(cfg, method_name)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    ckpt = latest_checkpoint(out)  # the driver removed runs of other params/data (see train_methods)
    if ckpt is not None:
        weights, opt_state, state = load_checkpoint(ckpt)
        method.load_state_dict_trainable(weights)
        optimizer.load_state_dict(opt_state)
        start_epoch = int(state["epoch"])
        history = state.get("history", [])
        if rank == 0:
            log.info("%s: resuming from %s (epoch %d done)", method_name, ckpt, start_epoch)

    n_batches = math.ceil(len(data) / tcfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / world)
    if tcfg.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, tcfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * tcfg.epochs
    scheduler = _lr_lambda(tcfg.warmup_steps, total_steps)

    show_progress = rank == 0 and tcfg.progress
    for epoch in range(start_epoch, tcfg.epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        method.train()
        collator.set_epoch(epoch)
        order = np.random.default_rng([tcfg.seed, epoch]).permutation(len(data)).tolist()
        batches = [order[i : i + tcfg.batch_size] for i in range(0, len(order), tcfg.batch_size)]
        t0 = time.time()
        loss_sum, pair_count, batch_count = 0.0, 0.0, 0.0
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"{method_name} epoch {epoch + 1}/{tcfg.epochs}", leave=False)
        for step in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            for g in optimizer.param_groups:
                g["lr"] = tcfg.lr * scheduler(global_step)
            _seed_everything(tcfg.seed, epoch, step, rank)
            optimizer.zero_grad(set_to_none=True)
            b = step * world + rank
            contributed = 0.0
            if b < len(batches):
                rng = np.random.default_rng([tcfg.seed, epoch, step, rank, 1])
                videos, kept = _batch_videos(data, batches[b], cfg, clip, rng, cache)
                if kept:
                    batch = collator([{"index": torch.tensor(j), "labels": data.labels[i], "video_id": data.video_ids[i]} for j, i in enumerate(kept)])
                    loss = batch_loss(method, videos, batch["labels"], batch["targets"], cfg)
                    loss.backward()
                    loss_sum += float(loss.detach())
                    pair_count += float(batch["targets"].numel())
                    contributed = 1.0
            n_contrib = _allreduce_sum([contributed])[0]
            _allreduce_mean_grads(params, n_contrib)
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
            optimizer.step()
            batch_count += contributed
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / max(batch_count, 1):.3f}")
        if bar is not None:
            bar.close()
        loss_sum, batch_count, pair_count = _allreduce_sum([loss_sum, batch_count, pair_count])
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(batch_count, 1.0),  # mean per batch, as reduced by cfg.loss.reduction
            "pairs": pair_count,
            "seconds": time.time() - t0,
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(metrics)
        ckpt_path = None
        if rank == 0:
            ckpt_path = save_checkpoint(
                out, epoch + 1, method.state_dict_trainable(), optimizer.state_dict(), {"history": history, "method": method_name, "fingerprint": fingerprint}
            )
            log.info("%s epoch %d/%d: loss %.4f (%.1f s)", method_name, epoch + 1, tcfg.epochs, metrics["loss"], metrics["seconds"])
        _report({"method": method_name, **metrics}, ckpt_path)

    if rank == 0:
        save_weights(method.state_dict_trainable(), out / "final.safetensors", metadata={"method": method_name})
        (out / "history.json").write_text(json.dumps(history, indent=2))
    return {"method": method_name, "history": history}


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
    """Train one method; see :func:`train_methods`. Returns ``{"method", "history", "run_dir"}``."""
    return train_methods(cfg, [method], stop_after_epochs)[method]


def train_methods(cfg: Config, methods: list[str], stop_after_epochs: int | None = None) -> dict[str, dict[str, Any]]:
    """Train methods one after another: Ray Train with ``cfg.train.num_workers`` workers (one worker
    group, one ``fit``, for all of them), or in-process when 0.

    Args:
        cfg: the whole config (train, loss, model sections are used).
        methods: names from :data:`TRAINABLE_METHODS`, trained in this order.
        stop_after_epochs: stop each method after this many epochs in total (simulates an interruption; tests).

    Returns:
        ``{method: {"method", "history", "run_dir"}}``.
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
    payload = {"cfg": asdict(_absolute_paths(cfg)), "methods": jobs, "stop_after_epochs": stop_after_epochs}
    if cfg.train.num_workers <= 0:
        train_worker(payload)
    else:
        _fit_with_ray(payload, cfg)
    summary = {}
    for job in jobs:  # rank 0 wrote each method's history.json beside its weights
        method = job["method"]
        history = json.loads((run_dir(cfg, method) / "history.json").read_text())
        summary[method] = {"method": method, "history": history, "run_dir": str(run_dir(cfg, method))}
    return summary


def _absolute_paths(cfg: Config) -> Config:
    """The config with its data root and a relative CLIP weights path made absolute: Ray workers run
    in their own working directories, where relative paths would point nowhere."""
    import dataclasses

    pretrained = cfg.clip.pretrained
    prefix = "local-dir:" if pretrained.startswith("local-dir:") else ""
    local = pretrained[len(prefix):]
    if local and not os.path.isabs(local) and os.path.exists(local):
        pretrained = prefix + str(Path(local).resolve())
    return dataclasses.replace(
        cfg,
        paths=dataclasses.replace(cfg.paths, data=str(Path(cfg.paths.data).resolve())),
        clip=dataclasses.replace(cfg.clip, pretrained=pretrained),
    )


def _fit_with_ray(payload: dict[str, Any], cfg: Config) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        init_kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "log_to_driver": True}
        if not address:
            # a local single-node cluster sized for the workers (+1 CPU for Ray Train's controller)
            init_kwargs["num_cpus"] = max(os.cpu_count() or 1, cfg.train.num_workers + 1)
        ray.init(address=address or None, **init_kwargs)
    use_gpu = torch.cuda.is_available() and cfg.train.use_gpu
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name="ovc-" + "-".join(j["method"] for j in payload["methods"]),
            storage_path=str((Path(cfg.paths.data) / "ray").resolve()),
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


def train(cfg: Config) -> dict[str, Any]:
    """Stage ``train``: train every method in ``cfg.train.methods`` (resuming where a run stopped)."""
    results = {}
    for method, r in train_methods(cfg, list(cfg.train.methods)).items():
        results[method] = {"final_loss": r["history"][-1]["loss"] if r["history"] else None, "epochs": len(r["history"])}
    summary = {"methods": results}
    out = Path(cfg.paths.data) / "models" / "train_summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return summary
