"""``ovc bench gpu_smoke``: the paper's setting on GPUs, end to end, with random weights.

With CUDA: a synthetic project with ``params-paper.yaml``'s model settings, a random-weight
ViT-B/16 (open_clip local dir) and a tiny T5 saved to disk (the real-weights loading path), then

1. ``train`` every trainable method for a few steps with 2 Ray Train workers on GPUs (DDP, NCCL),
   interrupted after one epoch and resumed; a straight run must give identical weights;
2. every parameter of every method and the activations of one step are on the worker's GPU, the
   losses finite;
3. ``evaluate`` on the GPU, ``publish`` to a temporary registry, ``classify`` (load the published
   version on the GPU and embed videos);
4. clips/s per GPU of the training epochs.

Without CUDA it prints one JSON object saying so and exits 0 (CPU checks of the same code paths:
``tests/models/test_device.py`` on the meta device and the slow ``test_paper_params_train``).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


def paper_project(
    root: Path, *, n_train: int = 16, num_frames: int = 2, image_size: int = 224, extra: tuple[str, ...] = ()
) -> list[str]:
    """A synthetic-world project under ``root`` run with ``params-paper.yaml``'s models: random-weight
    ViT-B/16 and a tiny T5 saved to disk (so they load exactly as real weights do). Returns the
    overrides to load ``params-paper.yaml`` with; ingest and clean have run.

    Args:
        image_size: the ViT-B/16's input size. 224 is the paper's; a CPU test passes 32 (the same
            tower, 12 layers of width 768 with 16-pixel patches, on 2x2 patches instead of 14x14:
            ~50x less compute per frame, the same code paths).
    """
    import json

    import open_clip

    from ovc.config import load_config
    from ovc.models.clip import CONFIG_FILENAME, save_clip_local_dir
    from ovc.models.llm import tiny_t5
    from ovc.pipeline import run_stage

    torch.manual_seed(0)
    vit = open_clip.create_model("ViT-B-16", pretrained=None, force_image_size=image_size)
    clip_dir = save_clip_local_dir(vit, "ViT-B-16", root / "vit-b-16")
    if image_size != 224:  # the saved config must describe the resized position embedding
        cfg_file = clip_dir / CONFIG_FILENAME
        meta = json.loads(cfg_file.read_text())
        meta["model_cfg"]["vision_cfg"]["image_size"] = image_size
        meta["preprocess_cfg"]["size"] = [image_size, image_size]
        cfg_file.write_text(json.dumps(meta, indent=2))
    model, tokenizer = tiny_t5()
    model.save_pretrained(root / "t5-tiny")
    tokenizer.save_pretrained(root / "t5-tiny")
    overrides = [
        f"paths.data={root / 'data'}",
        "ingest.source=synthworld",
        f"world.n_train={n_train}",
        "world.n_val=6",
        "world.n_test=3",
        "world.workers=1",
        "clean.min_count=1",
        f"clip.pretrained=local-dir:{clip_dir}",
        f"llm.name={root / 't5-tiny'}",
        f"reader.num_frames={num_frames}",
        f"reader.image_size={image_size}",
        "train.batch_size=2",
        "train.epochs=1",
        "train.max_steps_per_epoch=1",
        "train.progress=false",
        "train.warmup_steps=0",
        "evaluate.batch_size=4",
        "publish.batch_size=64",
        f"registry.url=sqlite:///{root / 'registry.db'}",
        *extra,
    ]
    cfg = load_config(REPO / "params-paper.yaml", overrides)
    run_stage("ingest", cfg)
    run_stage("clean", cfg)
    return overrides


def bench_gpu_smoke(quick: bool = False) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {
            "ran": False,
            "message": "no CUDA device visible: gpu_smoke needs GPUs (2 for the 2-worker DDP run); nothing was run. "
            "On CPU the same code paths are checked by tests/models/test_device.py (meta device) and "
            "tests/train/test_paper_params.py (params-paper.yaml, random ViT-B/16 + tiny T5, in-process and 2 Ray workers).",
        }
    return _run_on_gpus(quick)


def _run_on_gpus(quick: bool) -> dict[str, Any]:
    import shutil

    from ovc.config import load_config
    from ovc.infer import load_published
    from ovc.models.methods import TRAINABLE_METHODS, load_method, load_weights, run_dir
    from ovc.pipeline import run_stage
    from ovc.train.loop import train_methods

    n_gpus = torch.cuda.device_count()
    workers = min(2, n_gpus)
    methods = list(TRAINABLE_METHODS)
    steps = 2 if quick else 4
    out: dict[str, Any] = {
        "ran": True,
        "gpus": n_gpus,
        "gpu": torch.cuda.get_device_name(0),
        "ray_workers": workers,
        "methods": methods,
    }
    with tempfile.TemporaryDirectory(prefix="ovc-gpu-smoke-") as tmp:
        root = Path(tmp)
        overrides = paper_project(
            root,
            n_train=8 * workers * steps // 2,
            num_frames=8,
            extra=(
                f"train.num_workers={workers}",
                "train.use_gpu=true",
                "train.epochs=2",
                f"train.max_steps_per_epoch={steps}",
                f"train.methods=[{','.join(methods)}]",
                "evaluate.methods=[ours,clip_classname]",
                "publish.method=ours",
                "synth_labels.provider=clip-tagger",
            ),
        )
        cfg = load_config(REPO / "params-paper.yaml", overrides)
        run_stage("synth_labels", cfg)  # ours_synth trains on its labels (clip-tagger on the GPU)
        t = time.perf_counter()
        train_methods(cfg, methods, stop_after_epochs=1)  # interrupted after epoch 1 ...
        resumed = train_methods(cfg, methods)  # ... and resumed
        train_s = time.perf_counter() - t
        clips = (
            len(methods) * cfg.train.epochs * steps * workers * cfg.train.batch_size
        )  # clips stepped over, all workers
        losses = {m: [h["loss"] for h in r["history"]] for m, r in resumed.items()}
        assert all(math.isfinite(x) for ls in losses.values() for x in ls), losses
        # resume == uninterrupted, per method
        exact = {}
        for m in methods:
            d = run_dir(cfg, m)
            a = load_weights(d / "final.safetensors")
            shutil.rmtree(d)
            train_methods(cfg, [m])
            b = load_weights(d / "final.safetensors")
            exact[m] = all(torch.equal(a[k], b[k]) for k in a)
        # every parameter and one step's activations on the GPU
        devices = {}
        for m in methods:
            method = load_method(cfg, m, device="cuda")
            seen: set[str] = set()
            hooks = [
                mod.register_forward_hook(
                    lambda _m, _i, o, seen=seen: seen.add(o.device.type) if isinstance(o, torch.Tensor) else None
                )
                for mod in method.modules()
            ]
            with torch.no_grad():
                method(torch.zeros(1, cfg.reader.num_frames, 3, 224, 224, device="cuda"), ["dog", "cat"])
            for h in hooks:
                h.remove()
            devices[m] = sorted({p.device.type for p in method.parameters()} | seen)
        assert all(v == ["cuda"] for v in devices.values()), devices
        ev = run_stage("evaluate", cfg)
        receipt = run_stage("publish", cfg)
        model = load_published(receipt["model_version"], cfg.registry.url, device="cuda")
        videos = sorted(str(p) for p in (root / "data" / "raw" / "videos").glob("*.mp4"))[:8]
        emb = model.embed_videos(videos)
        out.update(
            losses=losses,
            resume_equals_uninterrupted=exact,
            devices=devices,
            train_seconds=round(train_s, 2),
            clips_per_s_per_gpu=round(clips / train_s / workers, 2),
            evaluate_seconds=ev["seconds"],
            published=receipt["model_version"],
            classified=int(emb.ok.sum()),
            classify_errors=[e for e in emb.errors if e],
        )
        out["ok"] = all(exact.values())
    return json.loads(json.dumps(out, default=str))
