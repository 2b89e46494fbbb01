"""YouTube-8M adapter (paper §4.1: the entity half of the training mix; closed-set eval on the
human-verified YouTube-8M Segments validation set).

Files (research.google.com/youtube8m/download.html; google/youtube-8m ``readers.py``):

* ``vocabulary.csv`` — columns ``Index, TrainVideoCount, KnowledgeGraphId, Name, WikiUrl,
  Vertical1, Vertical2, Vertical3, WikiDescription``; label index -> name and verticals. Video-game
  titles sit in the ``Games`` vertical, which ``clean`` drops (paper §4.1: 771 of 3862 labels).
* video-level TFRecords (``train*.tfrecord``) — ``tf.train.Example`` with ``id`` (bytes; the
  dataset's 4-character pseudo id, ``video_id`` in the 2017 release), ``labels`` (int64 label
  indices), ``mean_rgb``, ``mean_audio``. Read without TensorFlow (:mod:`ovc.data.adapters.tfrecord`).
* Segments validation TFRecords (frame-level, ``validate*.tfrecord`` of the ``3/frame/validate``
  partition) — ``tf.train.SequenceExample`` whose context has ``id``, ``segment_labels``,
  ``segment_start_times`` (seconds; 5-second segments) and ``segment_scores`` (1.0 = a rater
  confirmed the label in that segment, 0.0 = rejected). A video's closed-set labels are the labels
  confirmed in at least one of its segments (human verified; 1000 classes).

TFRecords need no TensorFlow here; a CSV export is accepted too (e.g. written with TensorFlow
elsewhere): columns ``video_id`` (or ``id``), ``labels`` with ``labels`` the space-separated label *indices*.

YouTube-8M ships features, not videos: the clips must be downloaded separately (YouTube ids come
from the pseudo ids through the dataset's lookup service) and placed under the root named by the
pseudo id (``**/<id>.mp4``) or by YouTube id listed in an optional ``youtube_ids.csv`` (``id,
youtube_id``). Expected layout::

    vocabulary.csv
    video/train*.tfrecord           or train_labels.csv     -> split train (vocab "train")
    segments/validate*.tfrecord     or val_labels.csv       -> split val (human-verified positives)
    youtube_ids.csv                 optional pseudo id -> YouTube id
    videos/**/<id or youtube_id>.mp4

Every vocabulary row becomes a ``train``-vocabulary label (kind ``entity``, vertical = Vertical1,
``Other`` when empty). Label indices missing from the vocabulary are counted and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ovc.config import Config
from ovc.data.adapters.common import (
    AdapterOutput,
    DatasetFormatError,
    capped,
    find_file,
    index_videos,
    ingest_source,
    lookup_video,
)
from ovc.data.adapters.tfrecord import TFRecordError, read_tfrecord_features

SOURCE = "youtube8m"
VOCAB_COLUMNS = (
    "Index",
    "TrainVideoCount",
    "KnowledgeGraphId",
    "Name",
    "WikiUrl",
    "Vertical1",
    "Vertical2",
    "Vertical3",
    "WikiDescription",
)
TRAIN_GLOBS = ("video/train*.tfrecord", "train*.tfrecord")
VAL_GLOBS = ("segments/validate*.tfrecord", "frame/validate*.tfrecord")
TRAIN_CSV = "train_labels.csv"
VAL_CSV = "val_labels.csv"


def read_vocabulary_csv(path: Path) -> pd.DataFrame:
    """vocabulary.csv -> DataFrame (Index int, Name, Vertical1..3); DatasetFormatError names bad columns/rows."""
    try:
        df = pd.read_csv(path, dtype={"Name": str, "Vertical1": str, "Vertical2": str, "Vertical3": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: cannot read CSV ({e})") from None
    missing = [c for c in ("Index", "Name", "Vertical1") if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing}; YouTube-8M vocabulary.csv has {', '.join(VOCAB_COLUMNS)}"
        )
    bad = df.index[df["Name"].isna() | pd.to_numeric(df["Index"], errors="coerce").isna()].tolist()
    if bad:
        raise DatasetFormatError(f"{path}: rows {bad[:10]} have no Name or a non-integer Index")
    df["Index"] = df["Index"].astype(int)
    return df


def _video_id(features: dict, path: Path, i: int) -> str:
    raw = features.get("id") or features.get("video_id")
    if not raw:
        raise DatasetFormatError(f"{path}: record {i} has no 'id' (or 'video_id') feature")
    return raw[0].decode("utf-8")


def iter_video_level(paths: list[Path]) -> Iterator[tuple[str, list[int]]]:
    """(id, label indices) of video-level Examples."""
    for path in paths:
        for i, f in enumerate(read_tfrecord_features(path)):
            yield _video_id(f, path, i), [int(x) for x in f.get("labels", [])]


def iter_segment_rated(paths: list[Path]) -> Iterator[tuple[str, list[int]]]:
    """(id, label indices confirmed by raters in >= 1 segment) of Segments SequenceExamples."""
    for path in paths:
        for i, f in enumerate(read_tfrecord_features(path)):
            labels, scores = f.get("segment_labels", []), f.get("segment_scores", [])
            if len(labels) != len(scores):
                raise DatasetFormatError(
                    f"{path}: record {i}: {len(labels)} segment_labels but {len(scores)} segment_scores"
                )
            confirmed = sorted({int(lab) for lab, s in zip(labels, scores) if s >= 0.5})
            yield _video_id(f, path, i), confirmed


def iter_csv(path: Path) -> Iterator[tuple[str, list[int]]]:
    """(video_id, label indices) of the CSV export (``labels`` = space-separated indices)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as e:
        raise DatasetFormatError(f"{path}: cannot read CSV ({e})") from None
    id_col = "video_id" if "video_id" in df.columns else "id"  # the 2017 release says video_id, later ones id
    if not {id_col, "labels"} <= set(df.columns):
        raise DatasetFormatError(
            f"{path}: expected columns video_id (or id), labels (space-separated label indices); got {list(df.columns)}"
        )
    for i, (vid, labels) in enumerate(zip(df[id_col], df["labels"])):
        try:
            yield vid, [int(x) for x in str(labels).replace(",", " ").split()]
        except ValueError:
            raise DatasetFormatError(
                f"{path}: row {i} (video_id={vid!r}): labels {labels!r} are not integer indices"
            ) from None


def _records(
    root: Path, globs: tuple[str, ...], csv_name: str, segments: bool
) -> tuple[Iterator[tuple[str, list[int]]] | None, str]:
    files = sorted({p for g in globs for p in root.glob(g)})
    if files:
        return (iter_segment_rated(files) if segments else iter_video_level(files)), f"{len(files)} tfrecord file(s)"
    if (root / csv_name).is_file():
        return iter_csv(root / csv_name), csv_name
    return None, ""


def read(cfg: Config, root: Path, out_dir: Path) -> AdapterOutput:
    out = AdapterOutput()
    vocab = read_vocabulary_csv(find_file(root, ["vocabulary.csv"], "YouTube-8M vocabulary.csv"))
    names = dict(zip(vocab["Index"], vocab["Name"]))
    seen: set[str] = set()
    for _, r in vocab.iterrows():
        if r["Name"] in seen:
            continue
        seen.add(r["Name"])
        vertical = r["Vertical1"] if isinstance(r["Vertical1"], str) and r["Vertical1"].strip() else "Other"
        out.vocab.append({"label": r["Name"], "vertical": vertical.strip(), "kind": "entity", "vocab": "train"})

    youtube_ids: dict[str, str] = {}
    if (root / "youtube_ids.csv").is_file():
        ids = pd.read_csv(root / "youtube_ids.csv", dtype=str)
        if not {"id", "youtube_id"} <= set(ids.columns):
            raise DatasetFormatError(f"{root / 'youtube_ids.csv'}: expected columns id, youtube_id")
        youtube_ids = dict(zip(ids["id"], ids["youtube_id"]))
    videos = index_videos(root)

    unknown_indices = 0
    for split, globs, csv_name, segments in (
        ("train", TRAIN_GLOBS, TRAIN_CSV, False),
        ("val", VAL_GLOBS, VAL_CSV, True),
    ):
        try:
            records, origin = _records(root, globs, csv_name, segments)
        except TFRecordError as e:
            raise DatasetFormatError(str(e)) from None
        if records is None:
            if split == "train":
                raise DatasetFormatError(
                    f"{root}: no YouTube-8M training labels: expected {' or '.join(TRAIN_GLOBS)} (video-level TFRecords) or {TRAIN_CSV}"
                )
            out.notes.setdefault("absent_splits", []).append(split)
            continue
        out.notes[f"{split}_from"] = origin
        rows = []
        try:
            for vid, indices in records:
                rows.append((vid, indices))
                if cfg.ingest.max_videos_per_split and len(rows) >= cfg.ingest.max_videos_per_split:
                    break
        except TFRecordError as e:
            raise DatasetFormatError(str(e)) from None
        for vid, indices in capped(rows, cfg.ingest.max_videos_per_split):
            labels = []
            for k in indices:
                if k in names:
                    if names[k] not in labels:
                        labels.append(names[k])
                else:
                    unknown_indices += 1
            path = lookup_video(videos, vid, youtube_ids.get(vid, ""))
            if path is None:
                out.missing.append(vid)
                continue
            out.rows.append({"video_id": vid, "path": str(path), "labels": labels, "split": split, "source": SOURCE})
    out.notes["unknown_label_indices"] = unknown_indices
    return out


def ingest_youtube8m(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """``ingest.source: youtube8m``."""
    return ingest_source(cfg, out_dir, SOURCE)
