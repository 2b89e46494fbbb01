"""ActivityNet adapter (paper §4.1: open-vocabulary *action* evaluation; a video often has several
actions, so it is multi-label).

Annotation format (activity-net.org/download.html, ``activity_net.v1-3.min.json``; read by the
official evaluation code github.com/activitynet/ActivityNet ``Evaluation/eval_classification.py``)::

    {"version": "VERSION 1.3",
     "taxonomy": [{"nodeId", "nodeName", "parentId", "parentName"}, ...],
     "database": {"<youtube id>": {"subset": "training"|"validation"|"testing", "url", "duration",
                                   "resolution", "annotations": [{"label", "segment": [start, end]}]}}}

A video's labels = the distinct ``label`` of its annotations (segments ignored: video-level
multi-label). The vocabulary (``open_activitynet``, kind ``action``) = every label of the used
subset; vertical = the label's top-level taxonomy node (e.g. "Sports, Exercise, and Recreation"),
``Actions`` without a taxonomy.

Layout under the root (``ingest.roots.activitynet``)::

    activity_net.v1-3.min.json (or activity_net.v1-2.min.json, annotations/...)
    **/v_<youtube id>.mp4  or  **/<youtube id>.mp4     (the crawler's naming; .mkv/.webm too)

Subsets ``ingest.activitynet_subsets`` (default ``[validation]``) -> split ``open_activitynet``
(``testing`` has no public labels; ``training`` is not used by default since ActivityNet is a test set
here). Entries of the other subsets are counted per subset in the ingest notes (``skipped_subsets``)
and logged, never silently dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
from ovc.data.adapters.tao import load_json

log = logging.getLogger(__name__)

SOURCE = "activitynet"
SPLIT = "open_activitynet"
SUBSET = "validation"  # when ingest.activitynet_subsets is empty
ANNOTATION_FILES = [
    "activity_net.v1-3.min.json",
    "activity_net.v1-2.min.json",
    "annotations/activity_net.v1-3.min.json",
]


def top_level_verticals(taxonomy: list[dict]) -> dict[str, str]:
    """{node name: its ancestor just below the root} from ActivityNet's taxonomy list."""
    by_id = {n.get("nodeId"): n for n in taxonomy}
    roots = {n.get("nodeId") for n in taxonomy if n.get("parentId") is None}
    out = {}
    for n in taxonomy:
        node, hops = n, 0
        while node.get("parentId") not in roots and node.get("parentId") in by_id and hops < 50:
            node, hops = by_id[node["parentId"]], hops + 1
        if node.get("parentId") is not None:
            out[str(n.get("nodeName"))] = str(node.get("nodeName"))
    return out


def read(cfg: Config, root: Path, out_dir: Path) -> AdapterOutput:
    out = AdapterOutput()
    path = find_file(root, ANNOTATION_FILES, "ActivityNet annotation JSON")
    data = load_json(path, ("database",))
    if not isinstance(data["database"], dict):
        raise DatasetFormatError(f"{path}: 'database' must map video ids to entries")
    verticals = top_level_verticals(data.get("taxonomy", []) or [])
    videos = index_videos(root)
    subsets = list(cfg.ingest.activitynet_subsets) or [SUBSET]
    entries: list[tuple[str, Any]] = []
    skipped: dict[str, int] = {}  # reason / subset -> count of skipped videos
    for k, v in data["database"].items():
        if not isinstance(v, dict):
            log.warning("activitynet: %s: database[%r] is not an object; skipped", path, k)
            skipped["<not an object>"] = skipped.get("<not an object>", 0) + 1
        elif v.get("subset") in subsets:
            entries.append((k, v))
        else:
            skipped[str(v.get("subset"))] = skipped.get(str(v.get("subset")), 0) + 1
    if skipped:
        log.warning(
            "activitynet: skipped %s entries of subsets not in ingest.activitynet_subsets=%s",
            ", ".join(f"{n} {s!r}" for s, n in sorted(skipped.items())),
            subsets,
        )
    used: list[str] = []
    for yid, entry in capped(entries, cfg.ingest.max_videos_per_split):
        labels: list[str] = []
        for a in entry.get("annotations", []):
            label = a.get("label") if isinstance(a, dict) else None
            if not isinstance(label, str) or not label.strip():
                raise DatasetFormatError(f"{path}: database[{yid!r}]: annotation {a!r} has no label")
            if label.strip() not in labels:
                labels.append(label.strip())
        used += labels
        video = lookup_video(videos, f"v_{yid}", yid)
        if video is None:
            out.missing.append(yid)
            continue
        out.rows.append({"video_id": yid, "path": str(video), "labels": labels, "split": SPLIT, "source": SOURCE})
    for label in sorted(set(used)):
        out.vocab.append(
            {"label": label, "vertical": verticals.get(label, "Actions"), "kind": "action", "vocab": SPLIT}
        )
    out.notes.update(
        {
            "annotation_file": str(path),
            "version": data.get("version"),
            "subsets": subsets,
            "annotated_videos": len(entries),
            "skipped_subsets": skipped,
        }
    )
    return out


def ingest_activitynet(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """``ingest.source: activitynet``."""
    return ingest_source(cfg, out_dir, SOURCE)
