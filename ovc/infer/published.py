"""A published model version, rebuilt from the registry: label and video embeddings for inference.

``publish`` (:mod:`ovc.stages.publish`) stores, with every model version, the full config it was
trained and evaluated with and the artifacts it loads from (content-addressed copies of the trained
weights and of the CLIP directory). :func:`load_published` rebuilds the method from exactly those,
checks the weights' sha256 against the version's ``checkpoint_digest`` and (by default) the label
encoder against its ``encoder_digest``, so new label embeddings land in the same space as the
stored ones (paper §3, Fig. 2b: f_t(ℓ) precomputed, classification = one matrix product).

    model = load_published("latest")                       # registry URL: $OVC_REGISTRY_URL or data/
    model.encode_labels(["red car", "running"])           # (2, D) float32, unit norm
    out = model.embed_videos(["a.mp4", "b.mp4"])           # out.embeddings (2, D), out.errors [None, "..."]

Decoding overlaps encoding (:meth:`PublishedModel.iter_embeddings`): DataLoader worker processes
(:mod:`ovc.data.loader`, the data path every stage shares) decode the next videos while the main
process runs the video encoder on the model's device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ovc.config import Config

if TYPE_CHECKING:
    import torch
    from sqlalchemy import Engine

    from ovc.models.baselines import Method
    from ovc.registry.store import ModelVersionInfo

log = logging.getLogger(__name__)

ARTIFACTS_KEY = "artifacts"  # params[...] of a model version: where its files are


class PublishedModelError(RuntimeError):
    """A published model version cannot be rebuilt (missing artifact, digest mismatch); names the file."""


class MissingArtifactError(PublishedModelError, FileNotFoundError):
    """An artifact a model version loads from is not on disk (the message says what to run)."""


class DigestMismatchError(PublishedModelError):
    """A file or rebuilt encoder does not match the digest recorded at publish time."""


# --------------------------------------------------------------------------------------------------
# Digests
# --------------------------------------------------------------------------------------------------
def _hash_tensors(h: Any, state: dict[str, torch.Tensor], skip: Callable[[str], bool]) -> None:
    import torch

    for name in sorted(state):
        if skip(name):
            continue
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, any dtype (bf16 too)


def _is_vision_key(name: str) -> bool:
    """CLIP's image tower never touches label embeddings: leave it out of the encoder digest."""
    return ".visual." in name or name.startswith("visual.")


def encoder_digest(method: Method, cfg: Config) -> str:
    """sha256 identifying a method's label encoder: its config and every tensor it computes with.

    Covers the method name, the ``llm``/``label_encoder``/``baselines`` sections, the CLIP
    architecture and precision, and all weights of the label encoder (learned prompts, prompt
    transformer, the frozen LLM and CLIP text tower). Two versions with the same digest produce the
    same f_t(ℓ), so the registry copies embeddings between them instead of re-encoding.
    """
    h = hashlib.sha256()
    identity = {
        "method": method.name,
        "llm": dataclasses.asdict(cfg.llm),
        "label_encoder": dataclasses.asdict(cfg.label_encoder),
        "baselines": dataclasses.asdict(cfg.baselines),
        "clip": {"model": cfg.clip.model, "precision": cfg.clip.precision},
    }
    h.update(json.dumps(identity, sort_keys=True).encode())
    _hash_tensors(h, method.label_encoder.state_dict(), _is_vision_key)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    from ovc.registry.store import sha256_file as _sha

    return _sha(path)


def sha256_dir(path: str | os.PathLike) -> str:
    """sha256 over a directory's regular files (relative names + contents, sorted)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Config stored with a version
# --------------------------------------------------------------------------------------------------
def config_from_params(data: dict[str, Any]) -> Config:
    """A typed Config from a stored config dict, tolerating keys this code no longer knows.

    A version published by an older/newer ovc may carry fields that were added or removed since;
    unknown keys are dropped with a warning, missing ones take their defaults.
    """
    from ovc.config import config_from_dict

    def prune(cls: type, d: dict[str, Any], where: str) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        out = {}
        for k, v in d.items():
            if k not in names:
                log.warning("published config: ignoring unknown key %s%s", where, k)
                continue
            tp = hints[k]
            # cast: is_dataclass narrows the hint to a DataclassInstance union; it is always a class here
            out[k] = (
                prune(typing.cast(type, tp), v, f"{where}{k}.")
                if dataclasses.is_dataclass(tp) and isinstance(v, dict)
                else v
            )
        return out

    return config_from_dict(prune(Config, dict(data), ""))


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
@dataclass
class VideoEmbeddings:
    """Embeddings of a list of videos; a video that could not be read has a NaN row and an error.

    Attributes:
        videos: the inputs (paths as strings; ``"frames[i]"`` for a frames tensor).
        embeddings: (n, D) float32; row i is NaN where ``errors[i]`` is set.
        errors: per input, None or the message naming the file.
    """

    videos: list[str]
    embeddings: np.ndarray
    errors: list[str | None]

    @property
    def ok(self) -> np.ndarray:
        """(n,) bool: which rows hold an embedding."""
        return np.array([e is None for e in self.errors], dtype=bool)


def resolve_device(device: str) -> str:
    """``"auto"`` -> this process's CUDA device when a GPU is visible, else ``"cpu"``; anything else
    as given (:func:`ovc.models.device.resolve_device`, the one rule every stage uses)."""
    if device != "auto":
        return device
    from ovc.models.device import resolve_device as _resolve

    return str(_resolve("auto"))


def _clip_of(method: Method) -> Any:
    from ovc.models.clip import ClipModel

    for m in method.modules():
        if isinstance(m, ClipModel):
            return m
    raise PublishedModelError(f"method {method.name} has no CLIP model")


class PublishedModel:
    """A method ready for inference, with the settings it was evaluated with (paper §3).

    Args:
        method: the built method (weights loaded).
        cfg: its config (``reader`` gives frame count/size/sampling, ``loss.tau`` the score scale).
        info: the registry's model version row (None for an unpublished model, e.g. in benchmarks).
        device: where ``method`` lives.
    """

    def __init__(self, method: Method, cfg: Config, info: ModelVersionInfo | None = None, device: str = "cpu"):
        self.method = method.eval()
        self.cfg = cfg
        self.info = info
        self.device = device
        clip = _clip_of(method)
        self.image_mean = tuple(clip.image_mean)
        self.image_std = tuple(clip.image_std)
        self.tau = float(cfg.loss.tau)

    @property
    def name(self) -> str:
        return self.info.name if self.info is not None else "(unpublished)"

    @property
    def embed_dim(self) -> int:
        return int(_clip_of(self.method).embed_dim)

    # ------------------------------------------------------------------ labels
    def encode_labels(self, labels: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """f_t(ℓ) for each label, exactly as given (the registry passes normalised texts): (n, D) float32."""
        if len(labels) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        emb = self.method.embed_vocabulary(list(labels), batch_size=batch_size)  # (n, D)
        return emb.detach().float().cpu().numpy()

    # ------------------------------------------------------------------ videos
    def read_video(self, path: str | os.PathLike) -> torch.Tensor:
        """Decode one video like the evaluator does: (F, 3, H, W) uint8 (raises VideoReadError)."""
        from ovc.data.video import read_frames

        r = self.cfg.reader
        return read_frames(path, r.num_frames, r.image_size, sampling=r.eval_sampling, max_pixels=r.max_pixels)

    def embed_frames(self, frames: torch.Tensor) -> np.ndarray:
        """(B, F, 3, H, W) frames -> (B, D) float32 video embeddings.

        uint8 frames are normalised with the CLIP's mean/std; float frames are taken as normalised.
        """
        return self.encode_frames(frames).float().cpu().numpy()

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """:meth:`embed_frames` as a tensor on the model's device (frames are moved there first)."""
        import torch

        from ovc.data.loader import to_model_input
        from ovc.models.device import autocast

        if frames.dim() != 5:
            raise ValueError(f"frames must be (B, F, 3, H, W), got {tuple(frames.shape)}")
        device = torch.device(self.device)
        with torch.inference_mode(), autocast(device, self.cfg.compute.amp):
            if frames.dtype == torch.uint8:
                x = to_model_input(frames, device, self.image_mean, self.image_std)  # moved as uint8, normalised there
            else:
                x = frames.to(device)
            return self.method.encode_videos(x)  # (B, D)

    def iter_decoded(
        self, paths: Sequence[str | os.PathLike], workers: int = 2, prefetch: int = 0
    ) -> Iterator[tuple[int, torch.Tensor | None, str | None]]:
        """Decode videos in input order, ``workers`` DataLoader processes ahead of the consumer
        (the one video data path, :mod:`ovc.data.loader`; ``reader.max_pixels`` honoured).

        Yields ``(index, frames or None, error or None)``; a bad file yields its error and the run
        goes on. At most ``prefetch`` (default ``4 * workers``) decoded clips wait in memory.
        """
        from ovc.data.loader import ClipLoader

        if len(paths) == 0:
            return
        window = max(prefetch or 4 * workers, 1)
        loader = ClipLoader.from_config(
            self.cfg, [str(p) for p in paths], stage="classify", num_workers=workers, device=self.device
        )
        loader.prefetch = max(1, window // max(workers, 1))
        for batch in loader.batches([[i] for i in range(len(paths))]):  # one clip per item: yields keep input order
            for f in batch.failures:
                yield f.index, None, f.message
            if batch.frames is not None:
                yield batch.indices[0], batch.frames[0], None

    def iter_embeddings(
        self, paths: Sequence[str | os.PathLike], batch_size: int = 16, workers: int = 2
    ) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str]]]]:
        """Embed videos batch by batch while the next ones decode.

        Yields ``(indices, embeddings (len(indices), D), errors [(index, message)])`` per batch of
        up to ``batch_size`` readable videos (the errors met while filling it).
        """
        import torch

        idx: list[int] = []
        clips: list[torch.Tensor] = []
        errors: list[tuple[int, str]] = []
        # two batches in flight: the next batch decodes completely while the current one encodes
        for i, frames, err in self.iter_decoded(paths, workers=workers, prefetch=2 * batch_size):
            if err is not None:
                errors.append((i, err))
                log.info("skipping %s", err)
            elif frames is not None:  # iter_decoded yields frames exactly when there is no error
                idx.append(i)
                clips.append(frames)
            if len(clips) == batch_size:
                yield idx, self.embed_frames(torch.stack(clips)), errors  # B x (F, 3, H, W) -> (B, F, 3, H, W)
                idx, clips, errors = [], [], []
        if clips or errors:
            emb = self.embed_frames(torch.stack(clips)) if clips else np.zeros((0, self.embed_dim), np.float32)
            yield idx, emb, errors

    def embed_videos(
        self, videos: Sequence[str | os.PathLike] | torch.Tensor, batch_size: int = 16, workers: int = 2
    ) -> VideoEmbeddings:
        """Embed video files (bad files -> NaN row + error) or a (B, F, 3, H, W) frames tensor."""
        import torch

        if isinstance(videos, torch.Tensor):
            emb = (
                np.concatenate(
                    [self.embed_frames(videos[i : i + batch_size]) for i in range(0, len(videos), batch_size)]
                )
                if len(videos)
                else np.zeros((0, self.embed_dim), np.float32)
            )
            return VideoEmbeddings([f"frames[{i}]" for i in range(len(videos))], emb, [None] * len(videos))
        paths = [str(p) for p in videos]
        out = np.full((len(paths), self.embed_dim), np.nan, dtype=np.float32)
        errors: list[str | None] = [None] * len(paths)
        for idx, emb, errs in self.iter_embeddings(paths, batch_size=batch_size, workers=workers):
            out[idx] = emb
            for i, msg in errs:
                errors[i] = msg
        return VideoEmbeddings(paths, out, errors)


# --------------------------------------------------------------------------------------------------
# Loading from the registry
# --------------------------------------------------------------------------------------------------
def _artifact(params: dict[str, Any], key: str, artifacts_dir: str | os.PathLike | None, version: str) -> Path | None:
    arts = params.get(ARTIFACTS_KEY) or {}
    rel = arts.get(key)
    if not rel:
        return None
    root = Path(artifacts_dir) if artifacts_dir is not None else Path(arts.get("dir", ""))
    path = root / rel
    if not path.exists():
        raise MissingArtifactError(
            f"model version {version!r}: {key} artifact {path} is missing; artifacts are looked up relative to "
            f"the registry file (copy a project together with its registry_artifacts/ directory), or re-run "
            f"`ovc stage publish` (or `dvc repro publish`) to publish again"
        )
    return path


def build_published(
    info: ModelVersionInfo,
    *,
    device: str = "auto",
    artifacts_dir: str | os.PathLike | None = None,
    verify_encoder: bool = True,
) -> PublishedModel:
    """Rebuild a registry model version: config and artifacts from ``info.params``, digests checked.

    Args:
        info: the model version (``params`` as written by ``publish``).
        device: torch device (``"auto"``: CUDA when available).
        artifacts_dir: where the version's artifacts are if they moved (default: the stored dir).
        verify_encoder: recompute the label encoder's digest and require it to equal
            ``info.encoder_digest`` (new label embeddings then share the stored ones' space).

    Raises:
        MissingArtifactError: a file is missing (names it and what to run).
        DigestMismatchError: weights or label encoder differ from what was published.
    """
    from ovc.models.clip import create_clip
    from ovc.models.methods import create_method, load_weights

    params = info.params or {}
    if "config" not in params or ARTIFACTS_KEY not in params:
        raise PublishedModelError(
            f"model version {info.name!r} has no stored config/artifacts (not published by `ovc stage publish`)"
        )
    cfg = config_from_params(params["config"])
    arts = params[ARTIFACTS_KEY]
    method_name = params.get("method", cfg.evaluate.main_method)
    device = resolve_device(device)

    clip_path = _artifact(params, "clip", artifacts_dir, info.name)
    if clip_path is not None:
        pretrained = f"local-dir:{clip_path}" if clip_path.is_dir() else str(clip_path)
    else:
        pretrained = arts.get("clip_pretrained", "")
        if not pretrained:
            raise PublishedModelError(
                f"model version {info.name!r}: no CLIP artifact and no clip_pretrained tag stored"
            )
    clip = create_clip(dataclasses.replace(cfg.clip, pretrained=pretrained), device=device)
    method = create_method(method_name, clip, cfg)

    weights = _artifact(params, "weights", artifacts_dir, info.name)
    if weights is not None:
        digest = sha256_file(weights)
        if digest != info.checkpoint_digest:
            raise DigestMismatchError(
                f"model version {info.name!r}: weights {weights} have sha256 {digest[:12]}…, but the version was "
                f"published with {info.checkpoint_digest[:12]}…; the file was modified: re-run `ovc stage publish`"
            )
        method.load_state_dict_trainable(load_weights(weights))
    method.to(device).eval()
    if verify_encoder:
        got = encoder_digest(method, cfg)
        if got != info.encoder_digest:
            raise DigestMismatchError(
                f"model version {info.name!r}: the rebuilt label encoder has digest {got[:12]}…, the stored embeddings "
                f"were made by {info.encoder_digest[:12]}… (the LLM {cfg.llm.name!r} or CLIP files differ from publish "
                f"time); new labels would not match the stored vectors. Re-publish, or pass verify_encoder=False"
            )
    log.info("loaded model version %s (%s, %s)", info.name, method_name, device)
    return PublishedModel(method, cfg, info, device)


def get_model_version(engine: Engine, model_version: str = "latest") -> ModelVersionInfo:
    """The registry row of ``model_version`` (``"latest"`` = highest id); NotFoundError if absent."""
    from ovc.registry import store

    return store.get_model_version(engine, model_version)  # artifacts resolved against the registry's location


def load_published(
    model_version: str = "latest",
    registry_url: str | None = None,
    *,
    cfg: Config | None = None,
    engine: Engine | None = None,
    device: str = "auto",
    artifacts_dir: str | os.PathLike | None = None,
    verify_encoder: bool = True,
) -> PublishedModel:
    """Load a published model version from the registry.

    Args:
        model_version: ``"latest"`` or a version name (``"v3"``).
        registry_url: SQLAlchemy URL; None = ``cfg.registry.url`` / ``$OVC_REGISTRY_URL`` /
            ``sqlite:///<data>/registry.db``.
        cfg: config used only to resolve the registry URL (the model's own config is the stored one).
        engine: an open registry Engine (wins over the URL).
        device, artifacts_dir, verify_encoder: see :func:`build_published`.
    """
    from ovc.registry.db import open_registry

    own = engine is None
    engine = engine if engine is not None else open_registry(cfg, url=registry_url or "")
    try:
        info = get_model_version(engine, model_version)
    finally:
        if own:
            engine.dispose()
    return build_published(info, device=device, artifacts_dir=artifacts_dir, verify_encoder=verify_encoder)
