"""RareAct adapter (paper §4.1: open-vocabulary evaluation on unusual object-action combinations;
"each annotation provides three labels: object, action and the (unusual) object-action combination").

Annotation format (github.com/antoine77340/RareAct, ``README.md`` and ``rareact.csv``): one CSV row
per (clip, class) judgement, columns ``id, video_id, start, end, class_id, verb, noun, annotation``;
``start``/``end`` in seconds of the YouTube video ``video_id``; ``annotation``: 1 positive, 2 hard
negative (only the verb is right), 3 hard negative (only the noun is right), 4 hard negative (verb
and noun are both present but the verb is not applied to the noun), 0 negative.

Mapping: one manifest row per distinct clip (``video_id, start, end``; id
``<video_id>_<start:06d>_<end:06d>``), labels = the union over its rows of
annotation 1 -> ``verb``, ``noun``, ``"verb noun"``; 2 -> ``verb``; 3 -> ``noun``; 4 -> ``verb``,
``noun``; 0 -> nothing (clips left without labels are dropped by ``clean``). Vocabulary
``open_rareact``: verbs (``action``, vertical ``Actions``), nouns (``entity``, ``Objects``) and
verb-noun combinations (``action``, ``Interactions``); a word that is both a verb and a noun (e.g.
"microwave") keeps its first kind.

Layout under the root (``ingest.roots.rareact``)::

    rareact.csv
    **/<video_id>.mp4        the full videos of the RareAct zip ("video names are the YouTube ids");
                             clips are cut here into <raw>/videos/ (PyAV, ingest.segment_fps,
                             ingest.segment_short_side). Pre-cut **/<clip id>.mp4 are used as is.
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
    cut_clip,
    find_file,
    index_videos,
    ingest_source,
    lookup_video,
)

SOURCE = "rareact"
SPLIT = "open_rareact"
COLUMNS = ("id", "video_id", "start", "end", "class_id", "verb", "noun", "annotation")


def labels_for(verb: str, noun: str, annotation: int) -> list[str]:
    """The positive labels one RareAct judgement implies (see module docstring)."""
    if annotation == 1:
        return [verb, noun, f"{verb} {noun}"]
    if annotation == 2:
        return [verb]
    if annotation == 3:
        return [noun]
    if annotation == 4:
        return [verb, noun]
    return []


def read(cfg: Config, root: Path, out_dir: Path) -> AdapterOutput:
    out = AdapterOutput()
    path = find_file(root, ["rareact.csv", "annotations/rareact.csv"], "RareAct annotation CSV")
    try:
        df = pd.read_csv(path, dtype={"video_id": str, "verb": str, "noun": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: cannot read CSV ({e})") from None
    missing_cols = [c for c in COLUMNS if c not in df.columns]
    if missing_cols:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing_cols}; RareAct's rareact.csv has {', '.join(COLUMNS)}"
        )
    bad = df.index[~df["annotation"].isin([0, 1, 2, 3, 4]) | df["verb"].isna() | df["noun"].isna()].tolist()
    if bad:
        raise DatasetFormatError(f"{path}: rows {bad[:10]} have an annotation outside 0-4 or no verb/noun")

    clips: dict[tuple[str, int, int], list[str]] = {}
    for r in df.itertuples(index=False):
        key = (str(r.video_id), int(r.start), int(r.end))
        labels = clips.setdefault(key, [])
        for label in labels_for(str(r.verb).strip(), str(r.noun).strip(), int(r.annotation)):
            if label not in labels:
                labels.append(label)

    vocab: dict[str, tuple[str, str]] = {}
    for verb, noun in sorted(set(zip(df["verb"].str.strip(), df["noun"].str.strip()))):
        vocab.setdefault(verb, ("action", "Actions"))
        vocab.setdefault(noun, ("entity", "Objects"))
    for verb, noun in sorted(set(zip(df["verb"].str.strip(), df["noun"].str.strip()))):
        vocab.setdefault(f"{verb} {noun}", ("action", "Interactions"))

    videos = index_videos(root)
    cut = 0
    for (yid, start, end), labels in capped(list(clips.items()), cfg.ingest.max_videos_per_split):
        cid = f"{yid}_{start:06d}_{end:06d}"
        precut = lookup_video(videos, cid)
        if precut is not None:
            out.rows.append({"video_id": cid, "path": str(precut), "labels": labels, "split": SPLIT, "source": SOURCE})
            continue
        src = lookup_video(videos, yid)
        if src is None:
            out.missing.append(cid)
            continue
        dst = out_dir / "videos" / f"{cid}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            cut_clip(src, dst, float(start), float(end), cfg.ingest.segment_short_side, cfg.ingest.segment_fps)
        except Exception as e:  # noqa: BLE001 - any decode failure of one source video is reported, not fatal
            out.failed[cid] = f"{type(e).__name__}: {e}"
            continue
        cut += 1
        out.rows.append(
            {"video_id": cid, "path": f"videos/{cid}.mp4", "labels": labels, "split": SPLIT, "source": SOURCE}
        )
    for label, (kind, vertical) in vocab.items():
        out.vocab.append({"label": label, "vertical": vertical, "kind": kind, "vocab": SPLIT})
    out.notes.update({"annotation_file": str(path), "judgements": len(df), "clips": len(clips), "clips_cut": cut})
    return out


def ingest_rareact(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """``ingest.source: rareact``."""
    return ingest_source(cfg, out_dir, SOURCE)
