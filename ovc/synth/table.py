"""The synthetic-label table (paper §4.4, "+ Synthetic Labels" rows of Tables 1-2): provider answers
-> normalised rows with provenance, its I/O, and its merge into the training data. The stage that
asks the provider is :mod:`ovc.stages.synth_labels`.

Inputs: ``<data>/clean/manifest.parquet`` (videos of ``synth_labels.splits``, default ``train``),
``<data>/clean/vocabulary.parquet`` (the training vocabulary = the candidate labels), and for the
``clip-tagger`` provider the CLIP every stage resolves (bootstrapped or real weights).

Outputs (``<data>/synth_labels/``)::

    labels.parquet       one row per kept (video_id, label): provider, model, score, in_vocabulary,
                         already_labelled (the label was already one of the video's clean labels)
    vocabulary.parquet   labels the provider invented that were kept (``keep_unknown``): vocab
                         "train", vertical "Synthetic" (empty table otherwise)
    summary.json         counts, cache hits, failed videos (ids + errors), dropped labels

Normalisation: every raw label is lower-cased (NFKC, ``_`` -> space, single spaces, surrounding
punctuation stripped) and matched against the vocabulary normalised the same way; a match becomes
the vocabulary's own spelling. Others are dropped unless ``keep_unknown`` (then kept in normalised
form and added to the vocabulary), and so are labels longer than ``max_label_chars``. Labels are
deduplicated per video, filtered by ``threshold``, capped at ``top_k`` (best first).

Merging (:func:`merged_train_labels`, :func:`merged_train_vocabulary`): the train stage unions the
synthetic labels into the *train* split's label lists (never val/open splits) when
``synth_labels.merge_into_train`` is on, or for the ``ours_synth`` method (``ours`` trained with
them: the ablation row).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from ovc.config import Config
from ovc.paths import DataLayout
from ovc.synth.labels import LABEL_COLUMNS, SYNTH_LABELS_SCHEMA, normalize_label

log = logging.getLogger(__name__)

SYNTH_METHOD = "ours_synth"  # method key of the "+ synthetic labels" ablation row: `ours` trained with merged labels
BASE_OF_SYNTH_METHOD = "ours"
TRAIN_SPLIT = "train"
SUMMARY_IDS = 50


class SynthLabelsError(RuntimeError):
    """The stage cannot produce labels (every video failed, inputs missing); names the cause."""


class LabelNormalizer:
    """Maps raw labels onto the vocabulary (see module docstring); counts what it drops."""

    def __init__(self, vocabulary: list[str], keep_unknown: bool, max_chars: int):
        self.by_key: dict[str, str] = {}
        for label in vocabulary:
            key = normalize_label(label)
            if key is not None:
                self.by_key.setdefault(key, label)
        self.keep_unknown = keep_unknown
        self.max_chars = max_chars
        self.dropped: Counter = Counter()
        self.unknown_seen: Counter = Counter()

    def __call__(self, raw: str) -> tuple[str, bool] | None:
        """raw -> (label, in_vocabulary), or None when dropped."""
        key = normalize_label(raw)
        if key is None:
            self.dropped["empty"] += 1
            return None
        if key in self.by_key:
            return self.by_key[key], True
        if len(key) > self.max_chars:
            self.dropped["too_long"] += 1
            return None
        self.unknown_seen[key] += 1
        if not self.keep_unknown:
            self.dropped["not_in_vocabulary"] += 1
            return None
        return key, False


def answer_rows(
    video_id: str,
    existing: list[str],
    answer: list[tuple[str, float]],
    norm: LabelNormalizer,
    provider: str,
    model: str,
    threshold: float,
    top_k: int,
) -> list[dict[str, Any]]:
    """Rows of labels.parquet for one video: normalised, deduplicated, thresholded, capped."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw, score in sorted(answer, key=lambda x: -x[1]):
        mapped = norm(raw)
        if mapped is None:
            continue
        label, in_vocab = mapped
        if label in seen:
            continue
        if score < threshold:
            norm.dropped["below_threshold"] += 1
            continue
        seen.add(label)
        rows.append(
            {
                "video_id": video_id,
                "label": label,
                "provider": provider,
                "model": model,
                "score": float(min(max(score, 0.0), 1.0)),
                "in_vocabulary": in_vocab,
                "already_labelled": label in existing,
            }
        )
        if top_k > 0 and len(rows) >= top_k:
            break
    return rows


# --------------------------------------------------------------------------------------------------
# Reading / merging (called by the train stage)
# --------------------------------------------------------------------------------------------------
def write_synth_labels(df: pd.DataFrame, path: str | Path) -> None:
    """Validate (SYNTH_LABELS_SCHEMA) and write labels.parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ovc.data.manifest import atomic_write_bytes
    from ovc.data.schemas import validate

    validate(df, SYNTH_LABELS_SCHEMA, f"{path} (synthetic labels to write)")
    schema = pa.schema(
        [
            ("video_id", pa.string()),
            ("label", pa.string()),
            ("provider", pa.string()),
            ("model", pa.string()),
            ("score", pa.float64()),
            ("in_vocabulary", pa.bool_()),
            ("already_labelled", pa.bool_()),
        ]
    )
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df[LABEL_COLUMNS], schema=schema, preserve_index=False), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_synth_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate labels.parquet (FileNotFoundError says which stage writes it)."""
    from ovc.data.schemas import validate

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synthetic labels {path} not found; run `ovc stage synth_labels` first")
    return validate(pd.read_parquet(path), SYNTH_LABELS_SCHEMA, str(path))


def uses_synthetic_labels(cfg: Config, method: str) -> bool:
    """Whether training ``method`` merges the synthetic labels (``ours_synth`` always does)."""
    return method == SYNTH_METHOD or bool(cfg.synth_labels.merge_into_train)


def base_method(method: str) -> str:
    """The model a method key builds: ``ours_synth`` is ``ours`` (trained on merged labels)."""
    return BASE_OF_SYNTH_METHOD if method == SYNTH_METHOD else method


def merged_train_labels(cfg: Config, df: pd.DataFrame, method: str = "") -> pd.DataFrame:
    """``df`` (manifest rows) with the synthetic labels unioned into the label lists of its
    ``train``-split rows, when :func:`uses_synthetic_labels`; otherwise ``df`` unchanged.

    Args:
        cfg: the whole config (``paths.data``, ``synth_labels.merge_into_train``).
        df: manifest rows, e.g. the train split of the clean manifest.
        method: the method being trained (``ours_synth`` forces the merge).
    """
    from ovc.data.manifest import normalize_labels
    from ovc.data.schemas import MANIFEST_SCHEMA, validate

    if not uses_synthetic_labels(cfg, method):
        return df
    synth = read_synth_labels(DataLayout.of(cfg).synth_labels_table)
    extra: dict[str, list[str]] = {}
    for vid, label in zip(synth["video_id"], synth["label"]):
        extra.setdefault(vid, []).append(label)
    out = normalize_labels(df)
    out["labels"] = pd.Series(
        [
            list(ls) + [x for x in extra.get(vid, []) if x not in ls] if split == TRAIN_SPLIT else list(ls)
            for vid, ls, split in zip(out["video_id"], out["labels"], out["split"])
        ],
        index=out.index,
        dtype=object,
    )
    return validate(out, MANIFEST_SCHEMA, "train manifest merged with synthetic labels")


def merged_train_vocabulary(cfg: Config, vocabulary: list[str], method: str = "") -> list[str]:
    """The training vocabulary plus the synthetic vocabulary additions (sorted), when the merge is on."""
    from ovc.data.manifest import read_vocabulary

    if not uses_synthetic_labels(cfg, method):
        return vocabulary
    path = DataLayout.of(cfg).synth_vocabulary
    added = read_vocabulary(path)["label"].tolist() if path.is_file() else []
    return sorted(set(vocabulary) | set(added))
