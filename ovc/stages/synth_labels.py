"""Stage ``synth_labels``: extra training labels from a multimodal model (paper §4.4, "+ Synthetic
Labels" rows of Tables 1-2), with provenance.

Inputs: ``<data>/clean/manifest.parquet`` (videos of ``synth_labels.splits``, default ``train``),
``<data>/clean/vocabulary.parquet`` (the training vocabulary = the candidate labels), and for the
``clip-tagger`` provider the CLIP every stage resolves (bootstrapped or real weights). Outputs:
``<data>/synth_labels/{labels,vocabulary}.parquet`` and ``summary.json``. The table's rules
(normalisation, thresholds, merge into training) are :mod:`ovc.synth.table`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from ovc.config import Config
from ovc.data.manifest import read_clean, resolve_video_path, write_vocabulary
from ovc.data.schemas import validate
from ovc.fileio import atomic_write_json
from ovc.paths import DataLayout
from ovc.synth.labels import (
    LABEL_COLUMNS,
    SYNTH_LABELS_SCHEMA,
    SYNTHETIC_VERTICAL,
    guess_kind,
)
from ovc.synth.table import (
    SUMMARY_IDS,
    LabelNormalizer,
    SynthLabelsError,
    answer_rows,
    write_synth_labels,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
def _decode_ahead(cfg: Config, provider: Any, items: list) -> Any:
    """For a provider that takes the stage's frames (clip-tagger: its CLIP's input size), answers in
    item order with the clips decoded by the one video data path (DataLoader workers ahead,
    ``reader.max_pixels``, bad files warned by name); None for providers that decode themselves
    (the VLM providers look their replies up in a cache before decoding anything)."""
    size = getattr(provider, "frame_size", None)
    if size is None:
        return None
    from ovc.data.loader import ClipDataset, ClipLoader

    ds = ClipDataset([it.path for it in items], cfg.synth_labels.num_frames, size, "uniform", cfg.reader.max_pixels)
    loader = ClipLoader(ds, cfg.reader.loader_workers, getattr(provider, "device", "cpu"), stage="synth_labels")

    def answers():
        from ovc.synth.providers import ProviderAnswer

        for batch in loader.batches([[i] for i in range(len(items))]):
            for f in batch.failures:
                yield ProviderAnswer(error=f.message)
            if batch.frames is not None:
                it = items[batch.indices[0]]
                yield provider.label_video(dataclasses.replace(it, frames=batch.frames[0]))

    return answers()


def synth_labels(cfg: Config) -> dict[str, Any]:
    """Label ``synth_labels.splits`` videos with the configured provider; write labels + summary."""
    from ovc.synth.providers import VideoItem, create_provider

    sc = cfg.synth_labels
    t0 = time.time()
    layout = DataLayout.of(cfg)
    manifest_path = layout.clean_manifest
    manifest, vocab_df = read_clean(cfg)  # paths confined to the data roots
    vocabulary = sorted(vocab_df.loc[vocab_df["vocab"] == "train", "label"].tolist())
    videos = manifest[manifest["split"].isin(sc.splits)]
    if sc.max_videos > 0:
        videos = videos.head(sc.max_videos)
    if len(videos) == 0:
        raise SynthLabelsError(f"{manifest_path}: no videos in split(s) {sc.splits}")

    cache = Path(sc.cache_dir) if sc.cache_dir else layout.cache / "synth_labels"
    provider = create_provider(cfg, vocabulary, cache)
    norm = LabelNormalizer(vocabulary, sc.keep_unknown, sc.max_label_chars)
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    cached = requests = 0
    from tqdm.auto import tqdm

    items = [
        VideoItem(vid, str(resolve_video_path(manifest_path, path)))
        for vid, path in zip(videos["video_id"], videos["path"])
    ]
    decoded = _decode_ahead(cfg, provider, items)
    for item, existing in tqdm(
        list(zip(items, videos["labels"])), desc=f"synth_labels ({sc.provider})", leave=False, disable=None
    ):
        vid = item.video_id
        answer = next(decoded) if decoded is not None else provider.label_video(item)
        cached += int(answer.cached)
        requests += answer.requests
        if answer.error is not None:
            failed[vid] = answer.error
            log.warning("synth_labels: %s: %s", vid, answer.error)
            continue
        rows += answer_rows(
            vid, list(existing), answer.labels, norm, provider.name, provider.model, sc.threshold, sc.top_k
        )
    if failed and len(failed) == len(videos):
        first = next(iter(failed.items()))
        raise SynthLabelsError(
            f"synth_labels: all {len(videos)} videos failed with provider {sc.provider!r}; first: {first[0]}: {first[1]}"
        )

    out = layout.synth_labels
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows, columns=LABEL_COLUMNS).astype(
        {
            "score": float,
            "in_vocabulary": bool,
            "already_labelled": bool,
            "video_id": "str",
            "label": "str",
            "provider": "str",
            "model": "str",
        }
    )
    write_synth_labels(table, layout.synth_labels_table)
    new_labels = sorted(set(table.loc[~table["in_vocabulary"], "label"]))
    additions = pd.DataFrame(
        [
            {"label": lab, "vertical": SYNTHETIC_VERTICAL, "kind": guess_kind(lab), "vocab": "train"}
            for lab in new_labels
        ],
        columns=["label", "vertical", "kind", "vocab"],
    ).astype("str")  # typed even when empty
    write_vocabulary(additions, layout.synth_vocabulary)
    validate(table, SYNTH_LABELS_SCHEMA, str(layout.synth_labels_table))
    summary = {
        "provider": sc.provider,
        "model": provider.model,
        "videos": len(videos),
        "videos_labelled": int(table["video_id"].nunique()),
        "failed": len(failed),
        "failed_ids": sorted(failed)[:SUMMARY_IDS],
        "failed_errors": dict(sorted(failed.items())[:SUMMARY_IDS]),
        "cache_hits": cached,
        "requests": requests,
        "labels": len(table),
        "labels_new_to_video": int((~table["already_labelled"]).sum()),
        "labels_in_vocabulary": int(table["in_vocabulary"].sum()),
        "labels_added_to_vocabulary": new_labels[:SUMMARY_IDS],
        "dropped": dict(sorted(norm.dropped.items())),
        "unknown_labels_seen": dict(norm.unknown_seen.most_common(20)),
        "top_labels": dict(Counter(table["label"]).most_common(20)),
        "merge_into_train": sc.merge_into_train,
    }
    atomic_write_json(layout.synth_summary, summary)  # no wall clock in it: DVC outputs are deterministic
    log.info(
        "synth_labels: %d labels on %d/%d videos (%d failed, %d cached)",
        len(table),
        summary["videos_labelled"],
        len(videos),
        len(failed),
        cached,
    )
    return {**summary, "seconds": round(time.time() - t0, 2)}
