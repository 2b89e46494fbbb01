"""The one video data path: a ``torch.utils.data`` Dataset + DataLoader every stage reads frames with.

Train, features, evaluate, the synthetic labeller and classify all read clips through
:class:`ClipLoader`:

* **decode ahead**: ``num_workers`` DataLoader worker processes decode (decord / PyAV, through
  :func:`ovc.data.video.read_frames`) while the model runs on the previous batch; 0 decodes inline;
* **pinned memory** when the model is on a CUDA device, so ``frames.to(device, non_blocking=True)``
  overlaps the copy with compute; frames travel as uint8 (4x less than float) and are normalised
  on the device (:func:`to_model_input`);
* **deterministic**: with random frame sampling, clip ``i`` of epoch ``e`` samples its frames from
  ``default_rng((seed, e, i))`` — independent of the worker that decodes it, of the number of
  workers and of the batch it lands in (so a resumed run reads exactly the frames it would have);
* **bad files** become a :class:`ClipFailure` (the worker never raises): each is logged once with
  a warning naming the file and the stage, counted in :attr:`ClipLoader.failures`, and the run
  goes on with the rest;
* ``reader.max_pixels`` (the huge-resolution guard) is honoured by every stage
  (:meth:`ClipLoader.from_config`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ovc.data.video import (
    DEFAULT_MAX_PIXELS,
    SAMPLINGS,
    VideoReadError,
    normalize_frames,
    read_frames,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipFailure:
    """An unreadable video (picklable: it travels back from worker processes)."""

    index: int
    path: str
    message: str


class ClipDataset(Dataset):
    """Frames of a list of video files. Keys are ``index`` or ``(epoch, index)``.

    Args:
        paths: video files (absolute, or relative to the working directory).
        num_frames: F frames per clip.
        image_size: output height = width (None = native size).
        sampling: ``uniform`` | ``random`` (see :func:`ovc.data.video.sample_indices`).
        max_pixels: refuse videos whose width*height exceeds this (``reader.max_pixels``).
        seed: random sampling draws from ``default_rng((seed, epoch, index))``.

    Items: ``(index, frames (F, 3, H, W) uint8)`` or a :class:`ClipFailure`.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        num_frames: int,
        image_size: int | None,
        sampling: str = "uniform",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        seed: int = 0,
    ):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.paths = [str(p) for p in paths]
        self.num_frames, self.image_size, self.sampling = num_frames, image_size, sampling
        self.max_pixels, self.seed = max_pixels, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[int, torch.Tensor] | ClipFailure:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path = self.paths[index]
        rng = np.random.default_rng((self.seed, epoch, index))
        try:
            return index, read_frames(path, self.num_frames, self.image_size, self.sampling, rng, self.max_pixels)
        except VideoReadError as e:
            return ClipFailure(index, path, str(e))
        except Exception as e:  # noqa: BLE001 - one odd file never stops a stage
            return ClipFailure(index, path, f"{path}: cannot read ({type(e).__name__}: {e})")


@dataclass
class ClipBatch:
    """A batch of readable clips and the failures met while building it.

    Attributes:
        indices: dataset indices of the clips in ``frames``, in request order.
        frames: (B, F, 3, H, W) uint8, or None when no clip of the batch was readable.
        failures: the unreadable ones.
    """

    indices: list[int]
    frames: torch.Tensor | None
    failures: list[ClipFailure]

    def pin_memory(self) -> ClipBatch:  # the DataLoader's pin-memory thread calls this
        if self.frames is not None:
            self.frames = self.frames.pin_memory()
        return self


def collate_clips(items: Iterable[tuple[int, torch.Tensor] | ClipFailure]) -> ClipBatch:
    """Stack readable clips (B x (F, 3, H, W) -> (B, F, 3, H, W)); keep failures aside."""
    items = list(items)
    good = [x for x in items if not isinstance(x, ClipFailure)]
    return ClipBatch(
        indices=[i for i, _ in good],
        frames=torch.stack([f for _, f in good]) if good else None,
        failures=[x for x in items if isinstance(x, ClipFailure)],
    )


class ClipLoader:
    """Batches of clips from a :class:`ClipDataset`, decoded by ``num_workers`` processes ahead.

    Args:
        dataset: the clips.
        num_workers: decoding processes (0 = decode in the calling process).
        device: where the consumer's model lives; a CUDA device turns on pinned memory.
        stage: name used in the warnings (``"train"``, ``"evaluate val"``, ...).
        prefetch: batches each worker keeps decoded ahead (DataLoader's ``prefetch_factor``).
    """

    def __init__(
        self, dataset: ClipDataset, num_workers: int = 0, device: Any = "cpu", stage: str = "", prefetch: int = 2
    ):
        self.dataset = dataset
        self.num_workers = max(0, int(num_workers))
        self.pin = torch.device(device).type == "cuda"
        self.stage = stage or "read"
        self.prefetch = max(1, int(prefetch))
        self.failures: list[ClipFailure] = []

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        paths: Sequence[str | os.PathLike],
        *,
        train: bool = False,
        stage: str = "",
        num_workers: int | None = None,
        device: Any = "cpu",
        seed: int | None = None,
    ) -> ClipLoader:
        """A loader with ``cfg.reader``'s frames, sampling (``train_sampling`` if ``train`` else
        ``eval_sampling``), ``max_pixels`` and ``loader_workers`` (``num_workers`` overrides)."""
        r = cfg.reader
        ds = ClipDataset(
            paths,
            r.num_frames,
            r.image_size,
            r.train_sampling if train else r.eval_sampling,
            r.max_pixels,
            seed=cfg.train.seed if seed is None else seed,
        )
        return cls(ds, r.loader_workers if num_workers is None else num_workers, device, stage)

    def batches(self, batches: Sequence[Sequence[int]], epoch: int = 0) -> Iterator[ClipBatch]:
        """One :class:`ClipBatch` per index list, in order (failures logged and counted)."""
        keyed = [[(epoch, i) for i in b] for b in batches]
        if not keyed:
            return
        kw: dict[str, Any] = {}
        if self.num_workers > 0:
            kw = {"prefetch_factor": self.prefetch, "persistent_workers": False}
        loader = DataLoader(
            self.dataset,
            batch_sampler=keyed,
            num_workers=self.num_workers,
            collate_fn=collate_clips,
            pin_memory=self.pin,
            **kw,
        )
        for batch in loader:
            for f in batch.failures:
                self.failures.append(f)
                log.warning(
                    "%s: skipping unreadable video %s",
                    self.stage,
                    f.message if f.path in f.message else f"{f.path}: {f.message}",
                )
            yield batch

    def sequential(self, batch_size: int, indices: Sequence[int] | None = None) -> Iterator[ClipBatch]:
        """Every clip (or ``indices``) in order, ``batch_size`` at a time."""
        idx = list(range(len(self.dataset))) if indices is None else list(indices)
        yield from self.batches([idx[i : i + batch_size] for i in range(0, len(idx), max(1, batch_size))])

    def summary(self) -> dict[str, Any]:
        """``{"skipped_videos": n, "skipped": [{"path", "error"}, ...]}`` for a stage's summary."""
        return {
            "skipped_videos": len(self.failures),
            "skipped": [{"path": f.path, "error": f.message} for f in self.failures],
        }


def to_model_input(frames_u8: torch.Tensor, device: Any, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 clips -> CLIP-normalised float on ``device`` (copied as uint8: 4x less to move).

    (..., 3, H, W) uint8 -> (..., 3, H, W) float32 on ``device``.
    """
    x = frames_u8.to(device, non_blocking=True)
    return normalize_frames(x, mean, std)
