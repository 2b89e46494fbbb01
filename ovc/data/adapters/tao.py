"""TAO (Tracking Any Object) adapter (paper §4.1: open-vocabulary *entity* evaluation; the
localisation annotations are ignored, as for multi-label classification on COCO).

Annotation format (github.com/TAO-Dataset/tao, ``docs/download.md`` / ``tao/toolkit/tao/tao.py``):
COCO-style JSON per split, ``annotations/train.json`` and ``annotations/validation.json``, with

* ``videos``: ``[{id, name ("val/ArgoVerse/<seq>"), width, height, neg_category_ids,
  not_exhaustive_category_ids, metadata}]``
* ``images``: ``[{id, video_id, file_name ("val/ArgoVerse/<seq>/frame0001.jpg"), frame_index, ...}]``
  — the annotated frames (about 1 fps)
* ``annotations``: ``[{id, image_id, video_id, track_id, category_id, bbox, area, iscrowd}]``
* ``tracks``: ``[{id, video_id, category_id}]``
* ``categories``: LVIS categories ``[{id, name ("baseball_bat", "bow_(weapon)"), synset, synonyms, ...}]``

A video's labels = the categories of its annotations and tracks, names made readable
(``baseball_bat`` -> ``baseball bat``). The vocabulary (``open_tao``, kind ``entity``, vertical
``Objects``) = every category annotated somewhere in the file.

Videos: TAO is distributed as JPEG frame folders. Under the root (``ingest.roots.tao``)::

    annotations/validation.json             -> split open_tao  (train.json is not used: TAO is test-only here)
    videos/**/<last part of name>.mp4        pre-encoded clips, if you have them, else
    frames/<image file_name>                 the annotated frames, encoded here into <raw>/videos/
                                             (at ingest.segment_fps, short side ingest.segment_short_side)
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from ovc.config import Config
from ovc.data.adapters.common import (
    AdapterOutput,
    DatasetFormatError,
    capped,
    encode_frames,
    find_file,
    index_videos,
    ingest_source,
    lookup_video,
    safe_name,
)

SOURCE = "tao"
SPLIT = "open_tao"
ANNOTATION_FILES = ["annotations/validation.json", "validation.json", "annotations/val.json"]


def readable(name: str) -> str:
    """LVIS category name -> label: ``baseball_bat`` -> ``baseball bat``, ``bow_(weapon)`` -> ``bow (weapon)``."""
    return " ".join(name.replace("_", " ").split())


def load_json(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise DatasetFormatError(f"{path}: expected a JSON object with keys {', '.join(keys)}")
    return data


def read(cfg: Config, root: Path, out_dir: Path) -> AdapterOutput:
    out = AdapterOutput()
    path = find_file(root, ANNOTATION_FILES, "TAO annotation JSON")
    data = load_json(path, ("videos", "annotations", "categories"))
    categories = {}
    for c in data["categories"]:
        if "id" not in c or "name" not in c:
            raise DatasetFormatError(f"{path}: category {c!r} has no id/name")
        categories[c["id"]] = readable(str(c["name"]))
    labels_of: dict[Any, list[str]] = defaultdict(list)
    used: set[str] = set()
    unknown = 0
    for a in list(data["annotations"]) + list(data.get("tracks", [])):
        cat = categories.get(a.get("category_id"))
        if cat is None:
            unknown += 1
            continue
        used.add(cat)
        if cat not in labels_of[a.get("video_id")]:
            labels_of[a.get("video_id")].append(cat)
    frames_of: dict[Any, list[tuple[int, str]]] = defaultdict(list)
    for im in data.get("images", []):
        frames_of[im.get("video_id")].append((int(im.get("frame_index", 0)), str(im.get("file_name", ""))))

    videos = index_videos(root, exclude=("frames",))
    frames_root = root / "frames"
    encoded = 0
    for v in capped(list(data["videos"]), cfg.ingest.max_videos_per_split):
        name = str(v.get("name", v.get("id")))
        vid = safe_name(name)
        path_ = lookup_video(videos, vid, Path(name).name)
        rel = None
        if path_ is None and frames_root.is_dir() and frames_of.get(v.get("id")):
            images = [frames_root / f for _, f in sorted(frames_of[v["id"]])]
            if all(p.is_file() for p in images):
                dst = out_dir / "videos" / f"{vid}.mp4"
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    encode_frames(images, dst, cfg.ingest.segment_short_side, cfg.ingest.segment_fps)
                    rel, encoded = f"videos/{vid}.mp4", encoded + 1
                except ValueError as e:
                    out.failed[vid] = str(e)
                    continue
        if path_ is None and rel is None:
            out.missing.append(vid)
            continue
        out.rows.append(
            {
                "video_id": vid,
                "path": rel or str(path_),
                "labels": list(labels_of.get(v.get("id"), [])),
                "split": SPLIT,
                "source": SOURCE,
            }
        )
    for label in sorted(used):
        out.vocab.append({"label": label, "vertical": "Objects", "kind": "entity", "vocab": SPLIT})
    out.notes.update({"annotation_file": str(path), "encoded_from_frames": encoded, "unknown_category_refs": unknown})
    return out


def ingest_tao(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """``ingest.source: tao``."""
    return ingest_source(cfg, out_dir, SOURCE)
