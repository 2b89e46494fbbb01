"""Stage ``clean``: validate the ingested tables and remove the labels that destabilise training
(paper §4.1).

The paper removes YouTube-8M's video-game titles (771 of 3862 labels, a "Games" vertical) and the
least frequent labels from the training vocabulary. Here:

1. Labels of a dropped vertical (``cfg.clean.drop_verticals``, default ``["Games"]``) are removed
   everywhere: from every vocabulary (train and open ones) and from every video's label list.
2. Labels of the *training* vocabulary (``vocab == "train"``) with fewer than ``cfg.clean.min_count``
   positive videos in split ``train`` are removed from the training vocabulary and from the label
   lists of videos whose split does not list them in its own vocabulary. Open-split vocabularies
   are evaluation vocabularies: they keep their (rare) labels, and so do their videos.
3. Labels found in the manifest but in no vocabulary are removed (no vertical/kind to judge them).
4. Videos left without labels are dropped.

Inputs:  ``{data}/raw/manifest.parquet``, ``{data}/raw/vocabulary.parquet``, ``{data}/raw/attributes.json``
(optional). Outputs: ``{data}/clean/manifest.parquet`` (paths rebased to stay valid from clean/),
``vocabulary.parquet``, ``attributes.json`` (entries of remaining labels; ``{}`` if no input) and
``report.json`` (DVC metrics). Same input -> byte-identical outputs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from ovc.config import Config
from ovc.data.manifest import (
    atomic_write_json,
    data_roots,
    normalize_labels,
    read_manifest,
    read_vocabulary,
    rebase_paths,
    write_manifest,
    write_vocabulary,
)
from ovc.data.schemas import (
    MANIFEST_SCHEMA,
    RAW_MANIFEST_SCHEMA,
    TRAIN_VOCAB,
    VOCABULARY_SCHEMA,
    validate,
)

log = logging.getLogger(__name__)

TRAIN_SPLIT = "train"  # split whose positives count towards min_count


def _count(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(values).items())}


def clean_tables(
    manifest_df: pd.DataFrame,
    vocab_df: pd.DataFrame,
    min_count: int,
    drop_verticals: list[str] | tuple[str, ...],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The pure core of ``clean`` (paper §4.1): filter labels and videos, no files involved.

    Args:
        manifest_df: manifest rows (RAW_MANIFEST_SCHEMA: label lists may be empty).
        vocab_df: vocabulary rows (VOCABULARY_SCHEMA).
        min_count: training-vocabulary labels with fewer positive ``train``-split videos are dropped.
        drop_verticals: verticals whose labels are dropped everywhere (e.g. ``["Games"]``).

    Returns:
        (manifest, vocabulary, report): the filtered tables (input row order kept, fresh index) and a
        JSON-able report of counts before/after and of every dropped label by reason.

    Raises:
        ManifestSchemaError: an input table violates its schema.
    """
    manifest_df = validate(normalize_labels(manifest_df), RAW_MANIFEST_SCHEMA, "manifest (clean input)")
    vocab_df = validate(vocab_df, VOCABULARY_SCHEMA, "vocabulary (clean input)")
    drop_verticals = sorted(set(drop_verticals))

    # 1. dropped verticals: every row of a label that is listed under such a vertical anywhere
    vertical_labels = set(vocab_df.loc[vocab_df["vertical"].isin(drop_verticals), "label"])
    vocab_kept = vocab_df[~vocab_df["label"].isin(vertical_labels)]

    # 2. rare labels of the training vocabulary (counted on train-split videos)
    train_lists = manifest_df.loc[manifest_df["split"] == TRAIN_SPLIT, "labels"]
    train_counts = Counter(label for labels in train_lists for label in labels)
    train_vocab = vocab_kept.loc[vocab_kept["vocab"] == TRAIN_VOCAB, "label"]
    rare = {label: int(train_counts.get(label, 0)) for label in train_vocab if train_counts.get(label, 0) < min_count}
    if len(train_lists) == 0 and rare:
        log.warning("clean: no %r videos; min_count filter skipped (%d labels kept)", TRAIN_SPLIT, len(rare))
        rare = {}
    vocab_kept = vocab_kept[~((vocab_kept["vocab"] == TRAIN_VOCAB) & vocab_kept["label"].isin(rare))]

    # 3. labels with no vocabulary row at all
    known = set(vocab_df["label"])
    kept_pairs = set(zip(vocab_kept["vocab"], vocab_kept["label"]))

    removed = Counter()  # label occurrences removed, by reason
    unknown: set[str] = set()
    new_lists = []
    for labels, split in zip(manifest_df["labels"], manifest_df["split"]):
        kept = []
        for label in labels:
            if label in vertical_labels:
                removed["vertical"] += 1
            elif label not in known:
                removed["not_in_vocabulary"] += 1
                unknown.add(label)
            elif label in rare and (split, label) not in kept_pairs:
                removed["min_count"] += 1
            else:
                kept.append(label)
        new_lists.append(kept)

    # 4. videos left without labels
    out = manifest_df.copy()
    out["labels"] = pd.Series(new_lists, index=out.index, dtype=object)
    had_labels = manifest_df["labels"].map(len) > 0
    has_labels = out["labels"].map(len) > 0
    dropped = out[~has_labels]
    out = out[has_labels].reset_index(drop=True)
    vocab_out = vocab_kept.reset_index(drop=True)
    validate(out, MANIFEST_SCHEMA, "manifest (clean output)")

    report = {
        "params": {"min_count": int(min_count), "drop_verticals": drop_verticals},
        "videos": {
            "before": {"total": len(manifest_df), "by_split": _count(manifest_df["split"])},
            "after": {"total": len(out), "by_split": _count(out["split"])},
            "dropped": {
                "total": len(dropped),
                "by_split": _count(dropped["split"]),
                "no_labels_in_input": int((~had_labels).sum()),
                "all_labels_dropped": int((had_labels & ~has_labels).sum()),
            },
        },
        "labels": {
            "before": {"total": int(vocab_df["label"].nunique()), "by_vocab": _count(vocab_df["vocab"])},
            "after": {"total": int(vocab_out["label"].nunique()), "by_vocab": _count(vocab_out["vocab"])},
        },
        "labels_dropped": {
            "vertical": {"count": len(vertical_labels), "names": sorted(vertical_labels)},
            "min_count": {"count": len(rare), "names": sorted(rare), "train_counts": dict(sorted(rare.items()))},
            "not_in_vocabulary": {"count": len(unknown), "names": sorted(unknown)},
        },
        "label_occurrences_removed": {
            k: int(removed.get(k, 0)) for k in ("vertical", "min_count", "not_in_vocabulary")
        },
    }
    return out, vocab_out, report


def _filter_attributes(path: Path, keep: set[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Entries of ``attributes.json`` for kept labels; malformed entries are skipped and counted."""
    if not path.is_file():
        return {}, {"present": 0, "kept": 0, "dropped": 0, "invalid": 0}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{label: [descriptions]}}, got {type(data).__name__}")
    out, invalid = {}, []
    for label, descs in data.items():
        if not (isinstance(descs, list) and all(isinstance(d, str) for d in descs)):
            invalid.append(label)
        elif label in keep:
            out[label] = descs
    if invalid:
        log.warning("%s: skipped %d malformed entries: %s", path, len(invalid), sorted(invalid)[:10])
    stats = {"present": 1, "kept": len(out), "dropped": len(data) - len(out) - len(invalid), "invalid": len(invalid)}
    return dict(sorted(out.items())), stats


def clean(cfg: Config) -> dict[str, Any]:
    """Stage ``clean``: ``{data}/raw`` -> ``{data}/clean`` (see the module docstring).

    Returns the report (also written to ``{data}/clean/report.json``) plus the output paths.
    """
    data = Path(cfg.paths.data)
    raw, out_dir = data / "raw", data / "clean"
    manifest = read_manifest(raw / "manifest.parquet", allow_empty_labels=True, roots=data_roots(cfg))
    vocab = read_vocabulary(raw / "vocabulary.parquet")

    manifest_out, vocab_out, report = clean_tables(
        manifest, vocab, cfg.clean.min_count, list(cfg.clean.drop_verticals)
    )
    manifest_out["path"] = rebase_paths(manifest_out["path"], raw, out_dir)
    attributes, attr_stats = _filter_attributes(raw / "attributes.json", set(vocab_out["label"]))
    report["attributes"] = attr_stats

    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest_out, out_dir / "manifest.parquet")
    write_vocabulary(vocab_out, out_dir / "vocabulary.parquet")
    atomic_write_json(out_dir / "attributes.json", attributes)
    atomic_write_json(out_dir / "report.json", report)

    v, d = report["videos"], report["labels_dropped"]
    log.info(
        "clean: videos %d -> %d; labels dropped: %d vertical, %d under min_count=%d, %d unknown",
        v["before"]["total"], v["after"]["total"], d["vertical"]["count"], d["min_count"]["count"],
        cfg.clean.min_count, d["not_in_vocabulary"]["count"],
    )
    return {
        **report,
        "outputs": {
            name: str(out_dir / name)
            for name in ("manifest.parquet", "vocabulary.parquet", "attributes.json", "report.json")
        },
    }
