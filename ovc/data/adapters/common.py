"""What every real-dataset adapter shares: finding video files, cutting/encoding clips, writing the
raw outputs, reporting missing videos, and mixing several datasets into one ingest (paper §4.1
trains on a YouTube-8M + Kinetics-400 mix and evaluates on TAO, ActivityNet and RareAct).

An adapter module exposes ``read(cfg, root, out_dir) -> AdapterOutput`` (registered in
:data:`READERS`) and a thin ``ingest_<name>(cfg, out_dir)`` wrapper registered in
``ovc.data.ingest.ADAPTERS``. ``ingest.source: "youtube8m,kinetics,..."`` runs :func:`ingest_mix`.

Videos that exist are referenced by absolute path (no copy); clips the adapter has to make (RareAct
segments cut out of long videos, TAO frame folders encoded) are written to ``<raw>/videos`` and
referenced relative to the manifest. A video that cannot be found is *reported* (count + ids in the
summary, full list in ``<raw>/missing_videos.json``) and left out of the manifest; a clip that cannot
be cut/encoded likewise (``failed``).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovc.config import Config

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
SUMMARY_IDS = 50  # ids listed in the summary per category (the full lists go to missing_videos.json)

# source name -> "module:read function"
READERS: dict[str, str] = {
    "youtube8m": "ovc.data.adapters.youtube8m:read",
    "kinetics": "ovc.data.adapters.kinetics:read",
    "tao": "ovc.data.adapters.tao:read",
    "activitynet": "ovc.data.adapters.activitynet:read",
    "rareact": "ovc.data.adapters.rareact:read",
}


class IngestError(ValueError):
    """Bad ingest request (unknown source, ...); the message names the item and the options."""


class DatasetFormatError(ValueError):
    """A dataset file that is missing or not in the expected format; the message names the file
    (and row/key) and what was expected."""


@dataclass
class AdapterOutput:
    """What a reader produces: manifest rows, vocabulary rows and what it could not use.

    Attributes:
        rows: manifest rows (video_id, path, labels, split, source; extra columns allowed).
        vocab: vocabulary rows (label, vertical, kind, vocab).
        missing: ids of annotated videos whose file was not found.
        failed: {id: error} for clips that could not be cut or encoded.
        notes: adapter-specific summary entries.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    vocab: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Roots and files
# --------------------------------------------------------------------------------------------------
def sources_of(cfg: Config) -> list[str]:
    """``ingest.source`` as a list ("youtube8m, kinetics" -> ["youtube8m", "kinetics"])."""
    return [s.strip() for s in str(cfg.ingest.source).split(",") if s.strip()]


def root_for(cfg: Config, source: str) -> Path:
    """The local root of ``source``: ``ingest.roots[source]``, else ``ingest.root``.

    Raises:
        DatasetFormatError: no root configured, or it is not a directory.
    """
    roots = cfg.ingest.roots or {}
    if not isinstance(roots, dict):
        raise DatasetFormatError(f"ingest.roots must be a mapping {{source: dir}}, got {roots!r}")
    root = roots.get(source) or cfg.ingest.root
    if not root:
        raise DatasetFormatError(
            f"ingest source {source!r} needs a dataset directory: set ingest.root or ingest.roots.{source}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetFormatError(f"ingest source {source!r}: dataset directory {path} does not exist")
    return path.resolve()


def find_file(root: Path, candidates: list[str], what: str) -> Path:
    """The first of ``candidates`` (paths relative to root) that exists; DatasetFormatError lists them."""
    for c in candidates:
        p = root / c
        if p.is_file():
            return p
    raise DatasetFormatError(f"{root}: {what} not found; expected one of: {', '.join(candidates)}")


def index_videos(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, Path]:
    """Every video file under ``root`` by file stem (``abc_000010_000020`` for ``.../abc_000010_000020.mp4``).

    Walks once (sorted, so the result is deterministic); with two files of one stem the ``.mp4`` (or
    the first found) wins. Directories named in ``exclude`` are skipped.
    """
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in exclude and not d.startswith("."))
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            if stem not in found or (ext.lower() == ".mp4" and found[stem].suffix.lower() != ".mp4"):
                found[stem] = path
    return found


def lookup_video(index: dict[str, Path], *stems: str) -> Path | None:
    """The first indexed video among ``stems`` (naming conventions differ between downloaders)."""
    for s in stems:
        if s in index:
            return index[s]
    return None


def safe_name(text: str) -> str:
    """A file-name-safe version of an id (TAO video names contain slashes)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def capped(items: list, cap: int) -> list:
    return items[:cap] if cap and cap > 0 else items


# --------------------------------------------------------------------------------------------------
# Making clips (PyAV)
# --------------------------------------------------------------------------------------------------
def _resize(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Resize (H, W, 3) so the short side is ``short_side`` (0 = keep), then crop to even H, W (yuv420p)."""
    from PIL import Image

    h, w = frame.shape[:2]
    if short_side and min(h, w) != short_side:
        scale = short_side / min(h, w)
        nw, nh = max(2, round(w * scale)), max(2, round(h * scale))
        frame = np.asarray(Image.fromarray(frame).resize((nw, nh), Image.Resampling.BICUBIC))
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def cut_clip(src: Path, dst: Path, start: float, end: float | None, short_side: int, fps: int) -> int:
    """Decode ``src`` between ``start`` and ``end`` seconds, keep at most ``fps`` frames per second,
    resize, and write an H.264 mp4 to ``dst`` (atomically). Returns the number of frames written.

    Raises:
        ValueError: no frame in the window (the video is shorter than ``start``, or undecodable).
    """
    import av

    from ovc.data.synthworld import write_mp4

    frames: list[np.ndarray] = []
    with av.open(str(src)) as container:
        if not container.streams.video:
            raise ValueError(f"{src}: no video stream")
        stream = container.streams.video[0]
        tb = stream.time_base
        if start > 0 and tb:
            container.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
        next_t = start
        for frame in container.decode(stream):
            if frame.pts is None or tb is None:
                continue
            t = float(frame.pts * tb)
            if t < start - 1e-6 or t + 1e-6 < next_t:
                continue
            if end is not None and t >= end:
                break
            while next_t <= t + 1e-6:  # next frame kept is >= 1/fps later
                next_t += 1.0 / fps
            frames.append(_resize(frame.to_ndarray(format="rgb24"), short_side))
    if not frames:
        raise ValueError(f"{src}: no frame between {start}s and {end}s")
    write_mp4(np.stack(frames), dst, fps=fps)
    return len(frames)


def encode_frames(image_paths: list[Path], dst: Path, short_side: int, fps: int) -> int:
    """Encode a list of image files (a TAO frame folder) as an mp4 at ``fps``; returns the frame count.

    Raises:
        ValueError: no images, or an image cannot be read.
    """
    from PIL import Image

    from ovc.data.synthworld import write_mp4

    if not image_paths:
        raise ValueError("no frames to encode")
    frames = []
    for p in image_paths:
        try:
            with Image.open(p) as im:
                frames.append(_resize(np.asarray(im.convert("RGB")), short_side))
        except OSError as e:
            raise ValueError(f"{p}: cannot read image ({e})") from None
    h, w = frames[0].shape[:2]
    frames = [f if f.shape[:2] == (h, w) else np.asarray(_resize_to(f, w, h)) for f in frames]
    write_mp4(np.stack(frames), dst, fps=fps)
    return len(frames)


def _resize_to(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BICUBIC))


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def _read_attributes(cfg: Config) -> dict[str, list[str]]:
    path = cfg.ingest.attributes
    if not path:
        return {}
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetFormatError(f"ingest.attributes {p}: cannot read JSON ({e})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data.values()
    ):
        raise DatasetFormatError(f"ingest.attributes {p}: expected {{label: [descriptions]}}")
    return data


def merge_outputs(outputs: dict[str, AdapterOutput]) -> AdapterOutput:
    """One output from several sources: rows concatenated (a video id seen twice is prefixed with its
    source), vocabulary rows deduplicated by (vocab, label) — the first source's vertical/kind win."""
    merged = AdapterOutput()
    seen_ids: set[str] = set()
    seen_vocab: set[tuple[str, str]] = set()
    for source, out in outputs.items():
        for row in out.rows:
            if row["video_id"] in seen_ids:
                row = {**row, "video_id": f"{source}:{row['video_id']}"}
            seen_ids.add(row["video_id"])
            merged.rows.append(row)
        for v in out.vocab:
            key = (v["vocab"], v["label"])
            if key not in seen_vocab:
                seen_vocab.add(key)
                merged.vocab.append(v)
        merged.missing += [f"{source}:{m}" for m in out.missing]
        merged.failed.update({f"{source}:{k}": e for k, e in out.failed.items()})
        merged.notes[source] = out.notes
    return merged


def write_output(cfg: Config, out: AdapterOutput, out_dir: Path) -> dict[str, Any]:
    """Validate and write manifest, vocabulary, attributes (+ missing_videos.json); return the summary."""
    from ovc.data.manifest import atomic_write_json, write_manifest, write_vocabulary

    columns = ["video_id", "path", "labels", "split", "source"]
    rows: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for row in out.rows:  # an id listed twice (duplicate CSV rows): one row, union of labels
        if row["video_id"] in rows:
            duplicates += 1
            kept = rows[row["video_id"]]["labels"]
            kept += [lab for lab in row["labels"] if lab not in kept]
        else:
            rows[row["video_id"]] = {**row, "labels": list(row["labels"])}
    out.rows = list(rows.values())
    manifest = (
        pd.DataFrame(out.rows)
        if out.rows
        else pd.DataFrame({c: pd.Series(dtype=object if c == "labels" else "str") for c in columns})
    )
    vocabulary = pd.DataFrame(out.vocab, columns=["label", "vertical", "kind", "vocab"]).astype("str")
    if len(manifest) == 0:
        log.warning("ingest: no video found for any annotation (%d missing); the manifest is empty", len(out.missing))
    write_manifest(manifest, out_dir / "manifest.parquet", allow_empty_labels=True)
    write_vocabulary(vocabulary, out_dir / "vocabulary.parquet")
    atomic_write_json(out_dir / "attributes.json", _read_attributes(cfg))
    atomic_write_json(
        out_dir / "missing_videos.json", {"missing": sorted(out.missing), "failed": dict(sorted(out.failed.items()))}
    )
    for vid in out.missing[:5]:
        log.warning("ingest: video not found: %s", vid)
    if out.missing:
        log.warning(
            "ingest: %d annotated videos not found (listed in %s)",
            len(out.missing),
            out_dir.name + "/missing_videos.json",
        )
    return {
        "videos": len(manifest),
        "missing_videos": len(out.missing),
        "missing_ids": sorted(out.missing)[:SUMMARY_IDS],
        "failed": len(out.failed),
        "failed_ids": sorted(out.failed)[:SUMMARY_IDS],
        "splits": {str(k): int(v) for k, v in manifest["split"].value_counts(sort=False).items()}
        if len(manifest)
        else {},
        "vocabulary_sizes": {str(k): int(v) for k, v in vocabulary["vocab"].value_counts(sort=False).items()},
        "label_occurrences": int(sum(len(x) for x in manifest["labels"])) if len(manifest) else 0,
        "duplicate_rows_merged": duplicates,
        "videos_without_labels": int(sum(len(x) == 0 for x in manifest["labels"])) if len(manifest) else 0,
        "by_source": {str(k): int(v) for k, v in Counter(manifest["source"]).items()} if len(manifest) else {},
        "notes": out.notes,
    }


def get_reader(source: str):
    if source not in READERS:
        raise IngestError(f"unknown ingest source {source!r} in a mix; dataset sources: {', '.join(sorted(READERS))}")
    module, fn = READERS[source].split(":")
    return getattr(importlib.import_module(module), fn)


def ingest_source(cfg: Config, out_dir: Path, source: str) -> dict[str, Any]:
    """Run one dataset reader and write its outputs (the body of every ``ingest_<name>``)."""
    out = get_reader(source)(cfg, root_for(cfg, source), out_dir)
    return write_output(cfg, out, out_dir)


def ingest_mix(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """``ingest.source: "a,b,..."``: run each dataset reader (own root from ``ingest.roots``) into one
    manifest + vocabulary (paper §4.1: YouTube-8M + Kinetics-400 for training, TAO, ActivityNet and
    RareAct for open-vocabulary evaluation)."""
    outputs = {s: get_reader(s)(cfg, root_for(cfg, s), out_dir) for s in sources_of(cfg)}
    return write_output(cfg, merge_outputs(outputs), out_dir)
