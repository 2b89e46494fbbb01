"""Bootstrapped CLIP: contrastive pre-training of a small open_clip ViT on captioned still frames.

The offline default has no CLIP weights to download, so the pipeline makes its own (DESIGN.md "The
offline default"): single frames of the synthetic world (:func:`ovc.data.synthworld.sample_frame`,
every scene / shape / colour, held-out entities included) paired with their *static* captions
(objects, colours, scene, sometimes partial — "a red object", "a star", "a beach"; never a motion
word) train a CLIP with open_clip's symmetric InfoNCE loss (``ClipLoss``). The result is saved in
open_clip's ``local-dir:`` format, so later stages load it exactly as they would load real weights::

    create_clip(ClipConfig(model=cfg.clip.model, pretrained="local-dir:data/models/bootstrap_clip"))

Like real CLIP it knows the world's entity words, held-out ones included (the open-vocabulary test
entities must be in the captions, only out of the video labels), but not the synonyms
("crimson", "disc") that only the LLM knows, nor any motion word.

Recipe (what fits ≈4-5 minutes on 2 CPU cores; see ``params.yaml: bootstrap``): a pool of frames
rendered once (in ``workers`` processes, deterministic per chunk), random horizontal flips, AdamW
(no decay on gains/biases/embeddings/logit scale), linear warmup + cosine decay in each phase,
logit scale clamped to ``ln(100)`` as in CLIP. Two phases:

1. ``shape_steps`` steps of image <-> *word* contrast on shapes alone: frames whose caption names
   one shape, each image against the prompts of every shape ("a circle", "a star", ...), the
   caption's shape the positive (UniCL-style image-label contrast, Yang et al. 2022; the targets
   are the caption's own words, :func:`caption_words`). The whole CLIP trains.
2. the captions: open_clip's symmetric InfoNCE (``ClipLoss``) over the batch, plus ``word_weight``
   times the same word contrast for every kind of word the caption names (shapes, colours,
   scenes). With ``lock_image_trunk`` (default) the image trunk is frozen and only the text tower,
   the image head (``ln_post``, ``proj``) and the logit scale learn: LiT (Zhai et al. 2022), turned
   around — the locked image features come from phase 1, the text tower learns to read them.

Why, measured on 2 cores with ovc-vit-mini (600 held-out single-object frames; chance: shape and
colour 17%, scene 17%, colour x shape 2.8%):

- plain ``ClipLoss`` (300 steps) gives colour 100%, scene 100%, shape 15%: a linear probe on its
  image features reads shape at 20-22%. Colour and scene already tell a batch's captions apart,
  the text tower collapses the shape words (captions differing only in the shape word: text cosine
  0.997-1.000) and the image tower gets no gradient towards shape. The same holds with a frozen
  random text tower (probe 21%), NegCLIP-style hard negatives (each caption with its shape word
  swapped: 16%), grouped batches of one scene and colour (17%), and the word contrast of all three
  kinds from step 0 (the shape term stays at ln 6 while colour and scene solve theirs).
- the word contrast on shapes *alone* trains the image tower as fast as a supervised linear head
  (probe 41% vs 43% after 150 steps), hence phase 1 (after 200 steps: shape 33% zero-shot, probe 39%).
- what comes after decides whether shape survives. Captions with the whole CLIP training at a
  fresh learning rate erase it (shape 18%, colour 83%); the same at the tail of one shared
  schedule keeps shape (31%) but leaves colour at 38%; shape words *after* the captions never
  leave ln 6. Locking the image trunk (phase 2 above) keeps it: 200 + 150 steps gave colour 91%,
  shape 33%, scene 80%, colour x shape 28%, in 202 s.

What limits shape is the tiny ViT's sample efficiency, not the objective. The vision tower alone with
a supervised linear shape head (cross-entropy on frames naming one shape, same pool and flips; top-1
on the 600 fresh single-object frames, chance 17%), all at ~25.6k training samples (the budget of
phase 1), one seed each on a quiet 2-core machine:

- batch 128, lr 1e-3, 200 steps (phase 1's setting): 45.5% (the loss sits at ln 6 for ~50 steps);
- lr 3e-3: 35.7%; batch 32 x 800 steps: 50.0% (~160 s); batch 64 x 400 steps with the patch
  embedding initialised to PCA-whitening filters of image patches: 50.5%; single-object frames only
  (batch 64, 300 steps): 47.8% (the same run with two-object frames: 46.8%);
- patch 4 (``ovc-vit-mini-p4``): twice the time per step and no faster start (20% after 50 steps).

No variant moves the image features' shape accuracy by more than ~5 points at equal samples, so a
zero-shot shape accuracy of 60% would need several times phase 1's samples — more than the
offline default's 15-minute budget holds; shape stays the weak part of the offline world.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from ovc.config import BootstrapConfig, ClipConfig
from ovc.data.synthworld import WORLD, World
from ovc.data.video import normalize_frames
from ovc.models.clip import ClipModel, create_clip
from ovc.train.bootstrap_data import EVAL_STREAM_OFFSET, render_frames, render_pool  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

METRICS_FILENAME = "zero_shot.json"


# Tasks of the zero-shot evaluation: attribute -> literal prompt template (DESIGN.md: partial
# captions make such prompts work).
PROMPTS: dict[str, str] = {"colour": "a {} object", "shape": "a {}", "scene": "a {}"}


def _vocabulary(world: World) -> dict[str, list[str]]:
    """The world's names of each kind of caption word (the zero-shot tasks' classes)."""
    return {"colour": list(world.colour_names), "shape": list(world.shapes), "scene": list(world.scenes)}


def _prompts(kind: str, names: Sequence[str]) -> list[str]:
    """Literal prompts of one kind, with the right article: "a star", "an orange object"."""
    return [_article({**PROMPTS, "object": "a {}"}[kind].format(n)) for n in names]


def _article(phrase: str) -> str:
    """``"a {}"`` templates with the right article: "an orange object"."""
    return phrase.replace("a ", "an ", 1) if phrase.startswith("a ") and phrase[2:3].lower() in "aeiou" else phrase


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------
def to_model_input(images: np.ndarray | torch.Tensor, clip: ClipModel) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 on the CLIP's device, normalised with its mean/std."""
    device = clip.model.logit_scale.device
    x = (
        torch.as_tensor(images).to(device, non_blocking=True).permute(0, 3, 1, 2)
    )  # (N, H, W, 3) -> (N, 3, H, W), moved as uint8
    return normalize_frames(x, clip.image_mean, clip.image_std)


# --------------------------------------------------------------------------------------------------
# Zero-shot evaluation
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def zero_shot_accuracy(
    clip: ClipModel,
    images: np.ndarray,
    attrs: Sequence[dict[str, Any]],
    world: World = WORLD,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Zero-shot top-1 accuracy of literal prompts on single-object frames.

    Tasks: colour ("a red object" among the world's colours), shape ("a star" among its shapes),
    scene ("a beach" among its scenes) and the coloured object ("a red star", colour × shape).
    Frames with more than one object count for the scene task only.

    Args:
        clip: the model (eval mode is set and restored).
        images: (N, H, W, 3) uint8 frames.
        attrs: per frame ``{"scene": str, "objects": [(colour, shape), ...]}``.
        world: class names come from it.
        batch_size: frames per forward pass.
    Returns:
        ``{task: {"top1", "chance", "n", "per_class": {name: top1}}}``.
    """
    was_training = clip.training
    clip.eval()
    classes = {**_vocabulary(world), "object": [f"{c} {s}" for c in world.colour_names for s in world.shapes]}
    feats = []
    for s in range(0, len(images), batch_size):
        feats.append(clip.encode_image(to_model_input(images[s : s + batch_size], clip), normalize=True))
    img = torch.cat(feats) if feats else torch.empty(0, clip.embed_dim)  # (N, D)
    truth: dict[str, list[str | None]] = {
        "scene": [a["scene"] for a in attrs],
        "colour": [a["objects"][0][0] if len(a["objects"]) == 1 else None for a in attrs],
        "shape": [a["objects"][0][1] if len(a["objects"]) == 1 else None for a in attrs],
        "object": [" ".join(a["objects"][0]) if len(a["objects"]) == 1 else None for a in attrs],
    }
    out: dict[str, Any] = {}
    for task, names in classes.items():
        txt = clip.encode_text(clip.tokenize(_prompts(task, names)))  # (C, D), normalised
        pred = (img @ txt.T).argmax(dim=1).tolist()  # (N, C) -> (N,)
        rows = [(i, names.index(t)) for i, t in enumerate(truth[task]) if t is not None]
        hits = [pred[i] == k for i, k in rows]
        per_class = {}
        for k, name in enumerate(names):
            h = [pred[i] == k for i, kk in rows if kk == k]
            per_class[name] = round(float(np.mean(h)), 4) if h else None
        out[task] = {
            "top1": round(float(np.mean(hits)), 4) if hits else None,
            "chance": round(1.0 / len(names), 4),
            "n": len(hits),
            "per_class": per_class,
        }
    clip.train(was_training)
    return out


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as open_clip's trainer: no decay on gains, biases, embeddings, logit scale."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name or "embedding" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(warmup: int, steps: int, restart: int = 0):
    """Linear warmup then cosine decay to 0 at ``steps``; with ``restart`` > 0 the schedule runs
    once over ``[0, restart)`` and again over ``[restart, steps)`` (each phase of the bootstrap gets
    its own warmup and decay: the caption phase must learn colours and scenes at full rate)."""

    def phase(step: int, length: int) -> float:
        w = min(warmup, max(length // 4, 1))
        if step < w:
            return (step + 1) / w
        return 0.5 * (1.0 + math.cos(math.pi * min((step - w) / max(length - w, 1), 1.0)))

    def f(step: int) -> float:  # step = number of optimizer steps taken so far
        if 0 < restart < steps:
            return phase(step, restart) if step < restart else phase(step - restart, steps - restart)
        return phase(step, steps)

    return f


# Caption words contrasted with the image on their own (kind -> the world's names of that kind).
WORD_KINDS: tuple[str, ...] = ("shape", "colour", "scene")


def caption_words(captions: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    """(N, K) 0/1 matrix: which of ``names`` each caption mentions (whole words; longest first, so
    "snow field" is one name)."""
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b")
    index = {n: k for k, n in enumerate(names)}
    out = torch.zeros(len(captions), len(names))
    for i, caption in enumerate(captions):
        for m in pattern.finditer(caption):
            out[i, index[m.group(1)]] = 1.0
    return out


def word_contrast_loss(
    image_features: torch.Tensor, word_features: torch.Tensor, targets: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Image <-> word contrast (UniCL-style, Yang et al. 2022): each image against every word of one
    kind, the words its caption names being the positives (soft target, 1/n each).

    Args:
        image_features: (B, D) normalised image features.
        word_features: (K, D) normalised text features of the K words' prompts ("a star", ...).
        targets: (B, K) 0/1, from :func:`caption_words`; rows without a word are left out.
        logit_scale: CLIP's (exponentiated) logit scale.
    Returns:
        the mean cross-entropy over the rows with a word (0 when there are none).
    """
    targets = targets.to(image_features.device)
    rows = targets.sum(dim=1) > 0  # (B,)
    if not bool(rows.any()):
        return image_features.new_zeros(())
    t = targets[rows]  # (R, K)
    logp = F.log_softmax(logit_scale * image_features[rows] @ word_features.T, dim=1)  # (R, K)
    return -((t / t.sum(dim=1, keepdim=True)) * logp).sum(dim=1).mean()


def _image_trunk(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The vision tower up to the pooled token (patch embedding, positions, ln_pre, resblocks):
    everything but its head (``ln_post``, ``proj``)."""
    v = model.visual
    assert isinstance(v, torch.nn.Module)
    return [p for n, p in v.named_parameters() if not (n.startswith("ln_post") or n == "proj")]


def train_clip(
    bcfg: BootstrapConfig,
    clip_cfg: ClipConfig,
    *,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[ClipModel, dict[str, Any]]:
    """Train a CLIP from scratch on captioned frames of the synthetic world.

    Args:
        bcfg: the ``bootstrap`` section.
        clip_cfg: architecture (``model``); ``pretrained`` is ignored (random init).
        progress: show a tqdm bar with the loss.
        device: where the CLIP trains (the stage passes `compute.device`, resolved).
    Returns:
        ``(clip, history)``; ``history`` has the per-step loss, lr, logit scale, timing and the
        intermediate zero-shot evaluations (``eval_every``).
    """
    from tqdm.auto import tqdm

    if (
        bcfg.steps < 1
        or bcfg.batch_size < 2
        or bcfg.n_frames < bcfg.batch_size
        or not 0 <= bcfg.shape_steps < bcfg.steps
    ):
        raise ValueError(
            f"bootstrap: need steps >= 1, 0 <= shape_steps < steps, batch_size >= 2 and n_frames >= batch_size "
            f"(got steps={bcfg.steps}, shape_steps={bcfg.shape_steps}, batch_size={bcfg.batch_size}, n_frames={bcfg.n_frames})"
        )
    threads = bcfg.threads if bcfg.threads > 0 else (os.cpu_count() or 1)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(bcfg.seed)
        clip = create_clip(ClipConfig(model=clip_cfg.model, pretrained="", precision="fp32"), device=device, lock=False)
        size = int(clip.image_size[0])
        if bcfg.image_size and bcfg.image_size != size:
            raise ValueError(f"bootstrap.image_size={bcfg.image_size} but {clip_cfg.model} takes {size}x{size} inputs")

        t0 = time.perf_counter()
        workers = bcfg.workers if bcfg.workers > 0 else threads
        images, captions, attrs = render_pool(
            bcfg.n_frames, bcfg.seed, size=size, max_objects=bcfg.max_objects, workers=workers
        )
        eval_images, _, eval_attrs = render_pool(
            bcfg.eval_frames, bcfg.seed, size=size, max_objects=1, workers=1, stream_offset=EVAL_STREAM_OFFSET
        )  # fresh frames (streams no training chunk uses); few, so no process start-up
        render_s = time.perf_counter() - t0
        log.info("bootstrap: rendered %d train + %d eval frames in %.1fs", len(images), len(eval_images), render_s)
        tokens = clip.tokenize(captions)  # (n_frames, ctx) once; captions never change
        pixels = torch.from_numpy(images)  # (n, H, W, 3) uint8, shared, no copy
        vocab = _vocabulary(WORLD)
        words = {k: caption_words(captions, vocab[k]) for k in WORD_KINDS}  # kind -> (n, K)
        prompts = {k: clip.tokenize(_prompts(k, vocab[k])) for k in WORD_KINDS}
        one_shape = torch.nonzero(words["shape"].sum(dim=1) == 1).squeeze(1)  # captions naming one shape
        if bcfg.shape_steps and len(one_shape) < bcfg.batch_size:
            raise ValueError(
                f"bootstrap: only {len(one_shape)} of {len(captions)} captions name one shape; raise n_frames"
            )

        model = clip.model
        model.train()
        opt = torch.optim.AdamW(_param_groups(model, bcfg.weight_decay), lr=bcfg.lr, betas=(0.9, bcfg.beta2), eps=1e-6)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(bcfg.warmup, bcfg.steps, restart=bcfg.shape_steps))
        loss_fn = ClipLoss(cache_labels=True)
        max_scale = math.log(bcfg.max_logit_scale)
        g = torch.Generator().manual_seed(bcfg.seed)

        hist: dict[str, Any] = {
            "loss": [],
            "caption_loss": [],
            "shape_loss": [],
            "lr": [],
            "logit_scale": [],
            "evals": [],
        }
        t1, c1 = time.perf_counter(), time.process_time()
        bar = tqdm(range(bcfg.steps), desc="bootstrap_clip", disable=not progress, mininterval=2.0)
        for step in bar:
            shape_phase = step < bcfg.shape_steps
            if step == bcfg.shape_steps and bcfg.lock_image_trunk:
                for p in _image_trunk(model):  # LiT: the shape features stay; text tower + image head align
                    p.requires_grad_(False)
            if shape_phase:  # frames whose caption names one shape
                idx = one_shape[torch.randint(len(one_shape), (bcfg.batch_size,), generator=g)]  # (B,)
            else:
                idx = torch.randint(len(pixels), (bcfg.batch_size,), generator=g)  # (B,)
            x = to_model_input(pixels[idx], clip)  # (B, 3, H, W)
            if bcfg.hflip:
                flip = torch.rand(bcfg.batch_size, generator=g) < 0.5  # captions have no left/right words
                x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
            img_f = model.encode_image(x, normalize=True)  # (B, D)
            scale = model.logit_scale.exp()
            kinds = ("shape",) if shape_phase else (WORD_KINDS if bcfg.word_weight > 0 else ())
            word = {k: word_contrast_loss(img_f, clip.encode_text(prompts[k]), words[k][idx], scale) for k in kinds}
            if shape_phase:
                loss = word["shape"]
            else:
                txt_f = clip.encode_text(tokens[idx], trim=True)  # (B, D); trim: same result, shorter sequences
                caption = loss_fn(img_f, txt_f, scale)
                loss = caption + bcfg.word_weight * sum(word.values(), torch.zeros(()))
                hist["caption_loss"].append(round(caption.item(), 5))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, max_scale)  # CLIP: temperature capped at 100
            hist["loss"].append(round(loss.item(), 5))
            if "shape" in word:
                hist["shape_loss"].append(round(word["shape"].item(), 5))
            hist["lr"].append(opt.param_groups[0]["lr"])
            hist["logit_scale"].append(round(model.logit_scale.exp().item(), 3))
            bar.set_postfix(
                phase="shape" if shape_phase else "captions",
                loss=f"{loss.item():.3f}",
                scale=f"{hist['logit_scale'][-1]:.1f}",
                refresh=False,
            )
            if bcfg.eval_every and (step + 1) % bcfg.eval_every == 0 and step + 1 < bcfg.steps:
                zs = zero_shot_accuracy(clip, eval_images, eval_attrs)
                hist["evals"].append({"step": step + 1, **{k: v["top1"] for k, v in zs.items()}})
                log.info("bootstrap step %d: %s", step + 1, hist["evals"][-1])
                model.train()
        train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
        clip.eval()
        zs = zero_shot_accuracy(clip, eval_images, eval_attrs)
        hist["evals"].append({"step": bcfg.steps, **{k: v["top1"] for k, v in zs.items()}})
        hist.update(
            render_s=round(render_s, 2),
            train_s=round(train_s, 2),
            train_cpu_s=round(train_cpu_s, 2),
            steps_per_s=round(bcfg.steps / train_s, 3),
            zero_shot=zs,
            threads=threads,
        )
        return clip.lock(), hist
    finally:
        torch.set_num_threads(prev_threads)


def curve_ends(curve: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean of a loss curve's first and last k steps (k = a quarter, at most 20); None for an empty
    curve (e.g. no shape-word loss when ``shape_steps = 0`` and ``word_weight = 0``)."""
    if not curve:
        return None, None
    k = max(1, min(20, len(curve) // 4))
    return float(np.mean(curve[:k])), float(np.mean(curve[-k:]))


# ``ovc stage bootstrap_clip -S ...`` overrides for a < 1 minute smoke run (tests, CI).
QUICK_OVERRIDES: list[str] = [
    "bootstrap.steps=24",
    "bootstrap.shape_steps=8",
    "bootstrap.batch_size=32",
    "bootstrap.n_frames=256",
    "bootstrap.eval_frames=64",
    "bootstrap.warmup=5",
    "bootstrap.eval_every=0",
    "bootstrap.threads=1",  # one thread: no OpenMP spinning on a shared 2-core machine
]
