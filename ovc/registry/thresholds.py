"""Thresholds of a model version and their precedence — the one implementation (paper §4.5).

A threshold is stored for a model version at one of four scopes; for a label scored against a
vocabulary the most specific one wins: **the label inside that vocabulary > the label in every
vocabulary > the vocabulary > the version's global threshold** (the calibrated one, set by publish).
:func:`label_thresholds` resolves that for a whole vocabulary in one query (the classifier's path);
:func:`get_threshold` is the same resolution for one label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from ovc.registry.errors import NotFoundError, RegistryError
from ovc.registry.labels import normalize_label
from ovc.registry.models import Label, Threshold, Vocabulary, threshold_target
from ovc.registry.queries import (
    find_label_ids,
    find_vocabulary_id,
    resolve_model_version,
)
from ovc.registry.transactions import Target, read_session, write_transaction


def store_threshold(
    session: Session, mv_id: int, value: float, vocabulary_id: int | None, label_id: int | None
) -> None:
    """Insert or overwrite one threshold row inside the caller's transaction (scope from the ids given)."""
    if not math.isfinite(value):
        raise RegistryError(f"threshold must be a finite number, got {value!r}")
    scope = "label" if label_id is not None else "vocabulary" if vocabulary_id is not None else "global"
    target = threshold_target(scope, vocabulary_id, label_id)
    res = cast(
        CursorResult,
        session.execute(  # DML returns a CursorResult (rowcount)
            update(Threshold).where(Threshold.model_version_id == mv_id, Threshold.target == target).values(value=value)
        ),
    )
    if res.rowcount == 0:
        session.execute(
            insert(Threshold),
            [
                {
                    "model_version_id": mv_id,
                    "scope": scope,
                    "vocabulary_id": vocabulary_id,
                    "label_id": label_id,
                    "target": target,
                    "value": float(value),
                }
            ],
        )


def set_threshold(
    target: Target,
    value: float,
    model_version: str = "latest",
    vocab: str | None = None,
    label: str | None = None,
) -> None:
    """Store a threshold for a model version: global, per vocabulary, per label, or per label in a vocabulary."""

    def work(session: Session) -> None:
        mv = resolve_model_version(session, model_version)
        vocabulary_id = find_vocabulary_id(session, vocab) if vocab is not None else None
        label_id = None
        if label is not None:
            text = normalize_label(label)
            label_id = find_label_ids(session, [text]).get(text)
            if label_id is None:
                raise NotFoundError(f"unknown label {label!r}")
        store_threshold(session, mv.id, float(value), vocabulary_id, label_id)

    write_transaction(target, work)


def _resolve(rows: Sequence[Any], labels: Sequence[str], default: float) -> np.ndarray | None:
    """The precedence itself: (scope, vocabulary_id, label text, value) rows -> (n,) float64, or None.

    ``rows`` hold only the version's global row, the vocabulary's row and label rows that apply to
    the vocabulary (its own or vocabulary-independent); None when none apply at all.
    """
    global_thr = next((v for sc, _, _, v in rows if sc == "global"), None)
    vocab_thr = next((v for sc, _, _, v in rows if sc == "vocabulary"), None)
    base = vocab_thr if vocab_thr is not None else global_thr
    any_label = {t: v for sc, vi, t, v in rows if sc == "label" and vi is None}
    in_vocab = {t: v for sc, vi, t, v in rows if sc == "label" and vi is not None}
    if base is None and not any_label and not in_vocab:
        return None
    out = np.full(len(labels), default if base is None else base, dtype=np.float64)
    if any_label or in_vocab:
        for i, text in enumerate(labels):
            if text in in_vocab:
                out[i] = in_vocab[text]
            elif text in any_label:
                out[i] = any_label[text]
    return out


def _applicable_rows(session: Session, mv_id: int, vocabulary_id: int | None) -> list[Any]:
    """One query: the threshold rows of a version that can apply to labels of ``vocabulary_id``."""
    scopes = [Threshold.scope == "global", and_(Threshold.scope == "label", Threshold.vocabulary_id.is_(None))]
    if vocabulary_id is not None:
        scopes += [
            and_(Threshold.scope == "vocabulary", Threshold.vocabulary_id == vocabulary_id),
            and_(Threshold.scope == "label", Threshold.vocabulary_id == vocabulary_id),
        ]
    stmt = (
        select(Threshold.scope, Threshold.vocabulary_id, Label.text, Threshold.value)
        .outerjoin(Label, Label.id == Threshold.label_id)
        .where(Threshold.model_version_id == mv_id, or_(*scopes))
    )
    return list(session.execute(stmt).all())


def label_thresholds(
    target: Target, model_version: str, vocab: str | None, labels: Sequence[str], default: float = 0.5
) -> np.ndarray | None:
    """Per-label thresholds of ``labels`` (normalised texts) scored against ``vocab``, most specific first.

    Args:
        target: Engine or Session.
        model_version: ``"latest"`` or a name (NotFoundError if unknown).
        vocab: the vocabulary the labels are scored against (an unknown name: no vocabulary scopes).
        labels: normalised label texts, e.g. from :func:`~ovc.registry.queries.load_embedding_matrix`.
        default: for labels no stored threshold covers when only some labels have their own.

    Returns:
        (n,) float32, or None when the version stores no threshold that applies.
    """

    def run(session: Session) -> np.ndarray | None:
        mv = resolve_model_version(session, model_version)
        vid = session.scalar(select(Vocabulary.id).where(Vocabulary.name == vocab)) if vocab is not None else None
        out = _resolve(_applicable_rows(session, mv.id, vid), labels, default)
        return None if out is None else out.astype(np.float32)

    return read_session(target, run)


def get_threshold(
    target: Target, model_version: str = "latest", vocab: str | None = None, label: str | None = None
) -> float | None:
    """The most specific threshold: label-in-vocabulary > label > vocabulary > global; None if none.

    Same precedence as :func:`label_thresholds` (one implementation); an unknown ``vocab`` raises
    NotFoundError.
    """

    def run(session: Session) -> float | None:
        mv = resolve_model_version(session, model_version)
        vid = find_vocabulary_id(session, vocab) if vocab is not None else None
        texts = [normalize_label(label)] if label is not None else []
        out = _resolve(_applicable_rows(session, mv.id, vid), texts or [""], math.nan)
        value = None if out is None else float(out[0])
        return None if value is None or math.isnan(value) else value

    return read_session(target, run)
