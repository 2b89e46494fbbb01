"""Which labels, when: sliding-window classification of long videos into label intervals.

A long or untrimmed video is cut into windows of ``window_s`` seconds every ``stride_s`` seconds
(the last window is moved back to end at the video's end, so the tail is covered). Each window is
decoded and embedded like a whole clip of the evaluator (``reader.num_frames`` frames sampled
uniformly inside the window), then scored against the vocabulary: ``p = σ(⟨f_v, f_t⟩/τ)`` per
(window, label), the score the threshold was calibrated on (paper §3, §4.5).

Windows overlap, so a window does not own its whole span: window i owns the time between the
midpoints of its centre and its neighbours' centres (the first from 0, the last to the end). A
label's interval is a run of consecutive windows whose score passes the label's threshold; it
spans the owned time of those windows, and its ``score`` is the peak window score in the run.

    segs = merge_windows(scores, starts, window_s=2, duration=8.0, thresholds=thr, labels=labels)
    # [{"label": "red circle", "start": 0.0, "end": 2.5, "score": 0.91}, ...]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


class SegmentError(ValueError):
    """Bad window settings (non-positive window or stride)."""


@dataclass
class VideoTiming:
    """Frame count and rate of a video (from the container)."""

    frames: int
    fps: float

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


@dataclass
class SegmentResult:
    """Label intervals of one video.

    Attributes:
        video: the input path as given.
        duration: seconds (0 when unreadable).
        windows: how many windows were scored.
        segments: ``{"label", "start", "end", "score"}`` dicts (seconds; score = peak window score),
            ordered by start, then best score first.
        error: why the file could not be read (then ``segments`` is empty), else None.
    """

    video: str
    duration: float = 0.0
    windows: int = 0
    segments: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_window(window_s: float, stride_s: float) -> None:
    if not (math.isfinite(window_s) and window_s > 0):
        raise SegmentError(f"window_s must be > 0 seconds, got {window_s}")
    if not (math.isfinite(stride_s) and stride_s > 0):
        raise SegmentError(f"stride_s must be > 0 seconds, got {stride_s}")


def window_starts(duration: float, window_s: float, stride_s: float) -> np.ndarray:
    """Start times (s) of the windows covering ``[0, duration]``: (W,) float64, increasing.

    Every ``stride_s`` while the window fits; when the last regular window stops short of the end,
    one more window ending exactly at ``duration`` is added. A video shorter than a window is one
    window (its whole length).
    """
    check_window(window_s, stride_s)
    if duration <= window_s:
        return np.zeros(1)
    n = int(math.floor((duration - window_s) / stride_s + 1e-9)) + 1
    starts = np.arange(n) * stride_s
    if starts[-1] + window_s < duration - 1e-6:
        starts = np.append(starts, duration - window_s)
    return starts


def owned_spans(starts: np.ndarray, window_s: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the time each window owns: midpoints between neighbouring window centres."""
    ends = np.minimum(starts + window_s, duration)
    centres = (starts + ends) / 2
    mids = (centres[:-1] + centres[1:]) / 2
    lo = np.concatenate([[0.0], mids])
    hi = np.concatenate([mids, [duration]])
    return lo, hi


def merge_windows(
    scores: np.ndarray,
    starts: Sequence[float] | np.ndarray,
    *,
    window_s: float,
    duration: float,
    thresholds: np.ndarray | float,
    labels: Sequence[str],
    decimals: int = 3,
) -> list[dict[str, Any]]:
    """Per-window scores -> label intervals (see module doc).

    Args:
        scores: (W, L) probabilities per window and label.
        starts: (W,) window start times, increasing.
        window_s: window length (s).
        duration: video length (s).
        thresholds: (L,) per-label thresholds or one number; a window passes when ``p >= t``.
        labels: the L label texts.
        decimals: rounding of start/end seconds.

    Returns:
        ``{"label", "start", "end", "score"}`` dicts ordered by start, then best score first.
    """
    scores = np.asarray(scores, dtype=np.float32)
    starts = np.asarray(starts, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(starts) or scores.shape[1] != len(labels):
        raise ValueError(f"scores must be (len(starts)={len(starts)}, len(labels)={len(labels)}), got {scores.shape}")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        return []
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (scores.shape[1],))
    lo, hi = owned_spans(starts, window_s, duration)
    passing = scores >= thr[None, :]  # (W, L)
    out: list[dict[str, Any]] = []
    for col in np.flatnonzero(passing.any(axis=0)).tolist():
        p = passing[:, col]
        # runs of consecutive passing windows: +1 where a run starts, -1 one past where it ends
        edges = np.diff(np.concatenate([[0], p.astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()):
            out.append(
                {
                    "label": labels[col],
                    "start": round(float(lo[a]), decimals),
                    "end": round(float(hi[b - 1]), decimals),
                    "score": float(scores[a:b, col].max()),
                }
            )
    out.sort(key=lambda s: (s["start"], -s["score"], s["label"]))
    return out


def video_timing(path: str | os.PathLike) -> VideoTiming:
    """Frame count and average frame rate from the container (PyAV; decord as a fallback).

    Raises:
        VideoReadError subclasses naming the file.
    """
    from ovc.data.video import CorruptVideoError, EmptyVideoError, VideoNotFoundError

    if not os.path.exists(path):
        raise VideoNotFoundError(path, "no such file")
    frames, fps = 0, 0.0
    try:
        import av

        with av.open(str(path)) as c:
            if not c.streams.video:
                raise EmptyVideoError(path, "no video stream")
            s = c.streams.video[0]
            frames = int(s.frames or 0)
            rate = s.average_rate or s.guessed_rate
            fps = float(rate) if rate else 0.0
            if frames == 0 and s.duration and s.time_base and fps:
                frames = int(round(float(s.duration * s.time_base) * fps))
    except (EmptyVideoError, VideoNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 - try decord before calling the file corrupt
        pyav_error = f"{type(e).__name__}: {e}"
        try:
            from decord import VideoReader, cpu

            vr = VideoReader(str(path), ctx=cpu(0))
            frames, fps = len(vr), float(vr.get_avg_fps())
            del vr
        except Exception as e2:  # noqa: BLE001
            raise CorruptVideoError(
                path, f"cannot read the container ({pyav_error}; decord: {type(e2).__name__})"
            ) from None
    if frames <= 0 or not fps > 0:
        raise EmptyVideoError(path, f"no frame count / frame rate in the container (frames={frames}, fps={fps})")
    return VideoTiming(frames, fps)


def window_frame_indices(starts: np.ndarray, window_s: float, timing: VideoTiming, num_frames: int) -> np.ndarray:
    """(W, F) frame indices: F frames sampled uniformly inside each window (as the evaluator samples a clip)."""
    from ovc.data.video import sample_indices

    out = np.empty((len(starts), num_frames), dtype=np.int64)
    for i, t0 in enumerate(starts.tolist()):
        f0 = min(int(round(t0 * timing.fps)), timing.frames - 1)
        f1 = min(max(f0 + 1, int(round((t0 + window_s) * timing.fps))), timing.frames)
        out[i] = f0 + sample_indices(f1 - f0, num_frames, "uniform")
    return out
