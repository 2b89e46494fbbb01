"""Video reading with decord: F frames per clip as a uint8 tensor, with typed errors and a
Dataset/DataLoader pattern that skips unreadable files and reports them.

    frames = read_frames("clip.mp4", num_frames=8, image_size=224)        # (8, 3, 224, 224) uint8
    x = normalize_frames(frames, CLIP_MEAN, CLIP_STD)                      # (8, 3, 224, 224) float32

Sampling (TSN-style, paper §3.2 samples F frames per video): the clip's n frames are cut into F
equal segments; ``uniform`` takes each segment's centre (deterministic; eval/inference),
``random`` a random frame inside each segment (training). With n < F frames, segments are
shorter than one frame, so frames repeat (a warning names the file).

Resizing: short side -> ``image_size`` (aspect kept), done by decord's decoder-side scaler
(FFmpeg ``scale``, bicubic), then a centre crop to ``image_size x image_size`` - the CLIP
preprocessing recipe, without decoding full-resolution frames into Python. ``image_size=None``
returns frames at native resolution (bit-exact with PyAV for H.264, see tests).

Robustness: before decord sees a file it is checked on disk and probed with PyAV (header only):
missing -> :class:`VideoNotFoundError`; 0 bytes or 0 frames -> :class:`EmptyVideoError`;
not a video / no video stream / undecodable / fewer decodable frames than the container index
lists (a text file named .mp4, an mp4 cut in half) -> :class:`CorruptVideoError`; width*height
above ``max_pixels`` -> :class:`VideoTooLargeError` (refused without decoding).

A truncated file is an error, not a partial read: its decodable prefix would silently bias
sampling towards the start of the clip. decord itself either fails on a cut file or, depending on
where the cut falls, quietly reports only the frames before it - hence the frame-count check
against the header (a cut inside the last packet can still pass: FFmpeg conceals it). The PyAV
probe keeps garbage away from decord, whose FFmpeg error paths are less hardened (tests run every
bad input in a subprocess to check the interpreter never crashes).

Skipping bad files in a DataLoader (works with ``num_workers > 0``)::

    ds = VideoDataset("data/clean/manifest.parquet", num_frames=8, image_size=64)
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=collate_videos)
    for batch in iter_batches(loader):        # batches without failed items; failures -> ds.errors
        batch["frames"]                         # (B, F, 3, H, W) uint8
    # iter_batches logs "skipped N of M videos ..." at the end; ds.errors = [(path, message), ...]

A failed item comes back from the worker as a :class:`VideoFailure` sentinel (not an exception,
which would kill the loader); :func:`collate_videos` drops it and lists it under
``batch["failures"]``, and :func:`iter_batches` copies those into ``dataset.errors`` in the main
process (a worker's own copy of ``errors`` never reaches the parent).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, get_worker_info

from ovc.errors import OvcError

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP pixel mean (RGB, 0..1 scale)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP pixel std
DEFAULT_MAX_PIXELS = 4096 * 4096  # same default as cfg.reader.max_pixels
# Frames wider (or taller) than this many times the other side are refused before decoding: a short-side
# resize would blow a 16000x2 clip up to 512000x64 per frame (GBs). Real footage stays under 4:1
# (32:9 ultra-wide = 3.6:1); 16:1 leaves room for letterboxed strips and banners.
MAX_ASPECT_RATIO = 16.0
SAMPLINGS = ("uniform", "random")


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
class VideoReadError(OvcError):
    """A video that cannot be read; ``path`` is the file, the message names it."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class VideoNotFoundError(VideoReadError):
    """The file does not exist (or is not a regular file)."""


class EmptyVideoError(VideoReadError):
    """The file has 0 bytes or the video stream has no frames."""


class CorruptVideoError(VideoReadError):
    """Not a video, no video stream, or undecodable (e.g. truncated) data."""


class VideoTooLargeError(VideoReadError):
    """Frame resolution above the ``max_pixels`` guard; refused before decoding."""


# --------------------------------------------------------------------------------------------------
# Probing and sampling
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    codec: str
    frames: int  # frame count from the container index (0 = unknown, e.g. some mkv/webm)


def probe_video(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Check a file and read its video header with PyAV, without decoding frames.

    Raises:
        VideoNotFoundError, EmptyVideoError, CorruptVideoError, VideoTooLargeError (naming the file).
    """
    import av  # local: keep `import ovc.data.video` light for code that only needs the errors

    p = Path(path)
    if not p.is_file():
        raise VideoNotFoundError(p, "file not found")
    if p.stat().st_size == 0:
        raise EmptyVideoError(p, "file is empty (0 bytes)")
    try:
        with av.open(str(p), mode="r") as container:
            if not container.streams.video:
                raise CorruptVideoError(p, "no video stream")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            info = VideoInfo(width, height, str(stream.codec_context.name), int(stream.frames or 0))
    except VideoReadError:
        raise
    except Exception as e:  # av.error.FFmpegError and friends: not a (readable) container
        raise CorruptVideoError(p, f"not a readable video ({type(e).__name__}: {e})") from None
    if width <= 0 or height <= 0:
        raise CorruptVideoError(p, f"invalid frame size {width}x{height}")
    if width * height > max_pixels:
        raise VideoTooLargeError(
            p, f"resolution {width}x{height} ({width * height} pixels) exceeds max_pixels={max_pixels}"
        )
    return info


def sample_indices(
    num_available: int, num_frames: int, sampling: str = "uniform", rng: np.random.Generator | None = None
) -> np.ndarray:
    """F frame indices out of ``num_available``: one per equal segment (TSN-style).

    Args:
        num_available: n, frames in the clip (> 0).
        num_frames: F, frames to sample.
        sampling: "uniform" (segment centres) | "random" (uniform random frame within each segment).
        rng: numpy Generator for "random"; None -> a fresh OS-seeded one (distinct per worker).

    Returns:
        (F,) int64, non-decreasing, in [0, n); repeats frames when n < F.
    """
    if num_available <= 0 or num_frames <= 0:
        raise ValueError(f"need num_available > 0 and num_frames > 0, got {num_available}, {num_frames}")
    n, f = num_available, num_frames
    starts = (np.arange(f) * n) // f  # segment i covers [starts[i], ends[i])
    ends = np.maximum((np.arange(1, f + 1) * n) // f, starts + 1)
    if sampling == "uniform":
        idx = ((2 * np.arange(f) + 1) * n) // (2 * f)  # floor((i + 0.5) * n / F)
    elif sampling == "random":
        rng = rng if rng is not None else np.random.default_rng()
        idx = rng.integers(starts, ends)
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return np.minimum(idx, n - 1).astype(np.int64)


def _resize_dims(width: int, height: int, image_size: int) -> tuple[int, int]:
    """(w, h) with the short side = image_size, aspect kept (long side rounded, >= image_size)."""
    if width <= height:
        return image_size, max(image_size, round(height * image_size / width))
    return max(image_size, round(width * image_size / height)), image_size


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
def read_frames(
    path: str | os.PathLike,
    num_frames: int,
    image_size: int | None,
    sampling: str = "uniform",
    rng: np.random.Generator | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    num_threads: int = 1,
    indices: Sequence[int] | None = None,
) -> torch.Tensor:
    """Decode F sampled frames of one video with decord.

    Args:
        path: video file.
        num_frames: F.
        image_size: output height = width (short-side resize + centre crop); None = native size.
        sampling: "uniform" | "random" (see :func:`sample_indices`).
        rng: numpy Generator for random sampling.
        max_pixels: refuse videos whose width*height exceeds this, before and after the resize
            (checked from the header, before decoding). Frames more than :data:`MAX_ASPECT_RATIO`
            times wider than tall (or taller than wide) are refused too. Memory bound: the result
            (F frames of at most ``max_pixels`` pixels) plus the decoder's working frames.
        num_threads: decord decoder threads (keep small; DataLoader workers give the parallelism).
        indices: explicit frame indices instead of sampling (clipped into range).

    Returns:
        (F, 3, H, W) uint8 RGB tensor.

    Raises:
        VideoReadError subclasses, naming the file.
    """
    from decord import VideoReader, cpu

    info = probe_video(path, max_pixels)  # the decoded size: width*height <= max_pixels
    aspect = max(info.width, info.height) / min(info.width, info.height)
    if aspect > MAX_ASPECT_RATIO:
        raise VideoTooLargeError(
            path,
            f"aspect ratio {aspect:.0f}:1 of {info.width}x{info.height} frames exceeds {MAX_ASPECT_RATIO:g}:1 "
            f"(resizing its short side would make huge frames); not a supported video shape",
        )
    size = {}
    if image_size is not None:
        w, h = _resize_dims(info.width, info.height, image_size)
        if w * h > max_pixels:  # max_pixels bounds the resized size too, not only the source's
            raise VideoTooLargeError(
                path,
                f"{info.width}x{info.height} resized to a short side of {image_size} is {w}x{h} "
                f"({w * h} pixels), above max_pixels={max_pixels}",
            )
        size = {"width": w, "height": h}

    def pick(n: int) -> np.ndarray:
        if n == 0:
            raise EmptyVideoError(path, "video stream has no frames")
        if 0 < n < info.frames:  # decord silently stops at a cut; the container index knows better
            raise CorruptVideoError(path, f"truncated: header lists {info.frames} frames, only {n} decodable")
        if indices is None:
            if n < num_frames:
                log.warning("%s: only %d frames < num_frames=%d; sampling with repetition", path, n, num_frames)
            return sample_indices(n, num_frames, sampling, rng)
        return np.clip(np.asarray(indices, dtype=np.int64), 0, n - 1)

    try:
        vr = VideoReader(str(path), ctx=cpu(0), num_threads=num_threads, **size)
        frames = vr.get_batch(pick(len(vr)).tolist()).asnumpy()  # (F, h, w, 3) uint8
        del vr
    except VideoReadError:
        raise
    except Exception as e:  # decord raises RuntimeError / DECORDError on undecodable data
        # decord also fails on some valid small frame sizes (e.g. 48x32: a buffer-size check in its
        # NDArray copy); FFmpeg through PyAV decodes those, so only a file both reject is corrupt
        frames = _read_frames_pyav(path, pick, size, f"{type(e).__name__}: {str(e).strip()[:200]}")
    if image_size is not None:
        top = (frames.shape[1] - image_size) // 2
        left = (frames.shape[2] - image_size) // 2
        frames = frames[:, top : top + image_size, left : left + image_size]  # centre crop
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()  # (F,H,W,3) -> (F,3,H,W)


def _read_frames_pyav(path: str | os.PathLike, pick, size: dict[str, int], decord_error: str) -> np.ndarray:
    """Fallback decoder (PyAV), resized like decord: one pass counts the decodable frames, ``pick(n)``
    chooses indices, a second pass keeps only those (memory stays at F frames for any video length).

    Returns (F, h, w, 3) uint8. Raises CorruptVideoError naming both decoders' errors.
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            n = sum(1 for _ in container.decode(video=0))
        idx = pick(n).tolist()
        wanted, last, kept = set(idx), max(idx), {}
        with av.open(str(path), mode="r") as container:
            for i, f in enumerate(container.decode(video=0)):
                if i in wanted:
                    # resized as it is kept: memory = F resized frames + one decoded frame
                    kept[i] = _resize_rgb(f.to_ndarray(format="rgb24"), size)  # (H, W, 3) -> (h, w, 3)
                if i >= last:
                    break
    except VideoReadError:
        raise
    except Exception as e:  # PyAV raises av.error.* (InvalidDataError, ...) on undecodable data
        raise CorruptVideoError(
            path, f"decoding failed (decord {decord_error}; PyAV {type(e).__name__}: {e})"
        ) from None
    return np.stack([kept[i] for i in idx])  # (F, h, w, 3)


def _resize_rgb(frame: np.ndarray, size: dict[str, int]) -> np.ndarray:
    """One (H, W, 3) uint8 frame resized to ``size`` (bilinear, antialiased) -> (h, w, 3); as is if no size."""
    if not size or (frame.shape[1], frame.shape[0]) == (size["width"], size["height"]):
        return frame
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()  # (H, W, 3) -> (1, 3, H, W)
    x = torch.nn.functional.interpolate(
        x, size=(size["height"], size["width"]), mode="bilinear", antialias=True, align_corners=False
    )
    return x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()  # (1, 3, h, w) -> (h, w, 3)


def normalize_frames(
    frames: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> torch.Tensor:
    """uint8 frames (..., 3, H, W) -> float32 ``(x / 255 - mean) / std`` per channel (CLIP input)."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    return (frames.float() / 255.0 - mean_t) / std_t


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoFailure:
    """Sentinel returned by :class:`VideoDataset` for an unreadable video (picklable, so it travels
    back from DataLoader workers; :func:`collate_videos` drops it)."""

    index: int
    path: str
    message: str
    in_worker: bool  # True: produced in a worker process, whose ``dataset.errors`` the parent never sees


class VideoDataset(Dataset):
    """Frames of every video of a manifest; unreadable videos become :class:`VideoFailure` items.

    Args:
        manifest: a manifest parquet path, or a DataFrame (then ``root`` resolves relative paths).
        num_frames: F frames per clip.
        image_size: output resolution (None = native).
        sampling: "uniform" | "random".
        max_pixels: huge-resolution guard (``cfg.reader.max_pixels``).
        seed: with random sampling, frames depend only on (seed, epoch, index); None = OS entropy.
        root: directory that relative paths are relative to when ``manifest`` is a DataFrame.

    Items: ``{"frames": (F, 3, H, W) uint8, "index": int, "video_id": str, "labels": list[str]}``.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | pd.DataFrame,
        num_frames: int,
        image_size: int | None,
        sampling: str = "uniform",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        seed: int | None = None,
        root: str | os.PathLike | None = None,
    ):
        from ovc.data.manifest import read_manifest, resolve_video_path

        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if isinstance(manifest, pd.DataFrame):
            df = manifest.reset_index(drop=True)
            anchor = Path(root if root is not None else ".") / "manifest.parquet"
        else:
            df = read_manifest(manifest)
            anchor = Path(manifest)
        self.video_ids: list[str] = [str(v) for v in df["video_id"]]
        self.labels: list[list[str]] = [list(v) for v in df["labels"]] if "labels" in df else [[]] * len(df)
        self.paths: list[str] = [str(resolve_video_path(anchor, p)) for p in df["path"]]
        self.num_frames, self.image_size, self.sampling = num_frames, image_size, sampling
        self.max_pixels, self.seed, self.epoch = max_pixels, seed, 0
        self.errors: list[tuple[str, str]] = []  # (path, message) of every skipped video

    @classmethod
    def from_config(cls, cfg: Any, manifest: str | os.PathLike | pd.DataFrame, train: bool, **kw: Any) -> VideoDataset:
        """Build from ``cfg.reader`` (train -> ``train_sampling``, else ``eval_sampling``)."""
        r = cfg.reader
        return cls(
            manifest, r.num_frames, r.image_size, r.train_sampling if train else r.eval_sampling, r.max_pixels, **kw
        )

    def set_epoch(self, epoch: int) -> None:
        """Change the random-sampling stream per epoch (when ``seed`` is set)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any] | VideoFailure:
        path = self.paths[index]
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.seed is not None else None
        try:
            frames = read_frames(path, self.num_frames, self.image_size, self.sampling, rng, self.max_pixels)
        except VideoReadError as e:
            self.errors.append((path, str(e)))
            return VideoFailure(index, path, str(e), in_worker=get_worker_info() is not None)
        return {"frames": frames, "index": index, "video_id": self.video_ids[index], "labels": self.labels[index]}


def collate_videos(items: Iterable[dict[str, Any] | VideoFailure | None]) -> dict[str, Any]:
    """Stack readable items, drop failures (and None).

    Returns:
        ``{"frames": (B, F, 3, H, W) uint8 or None if B == 0, "index": (B,) int64, "video_id": [B],
        "labels": [B lists], "failures": [VideoFailure, ...]}``.
    """
    items = list(items)
    good = [x for x in items if isinstance(x, dict)]
    failures = [x for x in items if isinstance(x, VideoFailure)]
    return {
        "frames": torch.stack([x["frames"] for x in good]) if good else None,  # B x (F,3,H,W) -> (B,F,3,H,W)
        "index": torch.tensor([x["index"] for x in good], dtype=torch.int64),
        "video_id": [x["video_id"] for x in good],
        "labels": [x["labels"] for x in good],
        "failures": failures,
    }


def iter_batches(loader: Iterable[dict[str, Any]], dataset: VideoDataset | None = None) -> Iterator[dict[str, Any]]:
    """Iterate a DataLoader built with :func:`collate_videos`: skip empty batches, copy worker
    failures into ``dataset.errors`` and log the number of skipped videos at the end.

    Args:
        loader: the DataLoader (or any iterable of collated batches).
        dataset: the VideoDataset; default ``loader.dataset``.
    """
    dataset = dataset if dataset is not None else getattr(loader, "dataset", None)
    seen = skipped = 0
    for batch in loader:
        for f in batch["failures"]:
            if f.in_worker and dataset is not None:
                dataset.errors.append((f.path, f.message))
        skipped += len(batch["failures"])
        seen += len(batch["failures"]) + len(batch["video_id"])
        if batch["frames"] is not None:
            yield batch
    if skipped:
        log.warning("skipped %d of %d videos (unreadable); see dataset.errors", skipped, seen)
    else:
        log.info("read %d videos, none skipped", seen)
