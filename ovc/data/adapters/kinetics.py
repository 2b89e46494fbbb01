"""Kinetics-400 adapter (paper §4.1: the action half of the training mix, and closed-set eval).

Annotation format (DeepMind's release, documented in its readme and used by the ActivityNet
crawler, github.com/activitynet/ActivityNet/tree/master/Crawler/Kinetics): one CSV per split,
``train.csv``, ``validate.csv``, ``test.csv``, one row per clip with columns
``label, youtube_id, time_start, time_end, split`` (``is_cc`` in later releases; test rows may have no
label). ``split`` is ``train`` / ``val`` / ``test``.

Expected layout under the root (``ingest.roots.kinetics`` or ``ingest.root``)::

    train.csv, validate.csv            (or annotations/train.csv, annotations/validate.csv, val.csv)
    **/<youtube_id>_<start:06d>_<end:06d>.mp4   clips as the common downloaders name them (the
                                       ActivityNet crawler, cvdfoundation/kinetics-dataset), in any
                                       sub-folder (per split, per class, flat); <youtube_id>.mp4
                                       (already trimmed) is accepted too; .mkv/.webm as well

Mapping: ``train`` -> split ``train``, ``val`` -> split ``val`` (test is not used: labels withheld
in the original release). One label per clip (kind ``action``, vertical ``Actions``), all in the
``train`` vocabulary. Video id = the clip's file stem ``<youtube_id>_<start:06d>_<end:06d>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ovc.config import Config
from ovc.data.adapters.common import (
    AdapterOutput,
    DatasetFormatError,
    capped,
    index_videos,
    ingest_source,
    lookup_video,
)

SOURCE = "kinetics"
COLUMNS = ("label", "youtube_id", "time_start", "time_end")
SPLIT_FILES = {  # our split -> candidate CSVs (relative to the root)
    "train": ["train.csv", "annotations/train.csv", "kinetics_400_train.csv", "kinetics400/train.csv"],
    "val": [
        "validate.csv",
        "val.csv",
        "annotations/validate.csv",
        "annotations/val.csv",
        "kinetics_400_validate.csv",
        "kinetics400/validate.csv",
    ],
}


def clip_stem(youtube_id: str, start: float, end: float) -> str:
    """``abc_000010_000020`` — the file stem downloaders give a clip."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def read_csv(path: Path) -> pd.DataFrame:
    """Read and check one Kinetics CSV (DatasetFormatError names the file and missing columns)."""
    try:
        df = pd.read_csv(path, dtype={"youtube_id": str, "label": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: cannot read CSV ({e})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; Kinetics CSVs have {', '.join(COLUMNS)}, split")
    return df


def read(cfg: Config, root: Path, out_dir: Path) -> AdapterOutput:
    out = AdapterOutput()
    videos = index_videos(root)
    labels: list[str] = []
    bad_rows = 0
    for split, candidates in SPLIT_FILES.items():
        path = next((root / c for c in candidates if (root / c).is_file()), None)
        if path is None:
            if split == "train":
                raise DatasetFormatError(
                    f"{root}: Kinetics train CSV not found; expected one of: {', '.join(candidates)}"
                )
            out.notes.setdefault("absent_splits", []).append(split)
            continue
        df = read_csv(path)
        rows = []
        for _, r in df.iterrows():
            label = r["label"]
            if not isinstance(label, str) or not label.strip() or pd.isna(r["time_start"]) or pd.isna(r["time_end"]):
                bad_rows += 1  # e.g. unlabelled test-style rows
                continue
            rows.append((str(r["youtube_id"]), float(r["time_start"]), float(r["time_end"]), label.strip()))
        for yid, start, end, label in capped(rows, cfg.ingest.max_videos_per_split):
            vid = clip_stem(yid, start, end)
            labels.append(label)
            path_ = lookup_video(videos, vid, yid)
            if path_ is None:
                out.missing.append(vid)
                continue
            out.rows.append({"video_id": vid, "path": str(path_), "labels": [label], "split": split, "source": SOURCE})
        out.notes[f"{split}_csv"] = str(path)
    for label in sorted(set(labels)):
        out.vocab.append({"label": label, "vertical": "Actions", "kind": "action", "vocab": "train"})
    out.notes["rows_without_label"] = bad_rows
    return out


def ingest_kinetics(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """``ingest.source: kinetics``."""
    return ingest_source(cfg, out_dir, SOURCE)
