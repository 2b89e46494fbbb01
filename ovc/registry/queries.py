"""Registry queries: model versions, vocabularies, labels and embedding matrices (read-only).

Every function takes an ``Engine`` (own read session, no lock) or a ``Session`` (the caller's).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ovc.registry.errors import NotFoundError, RegistryError
from ovc.registry.labels import LabelSpec
from ovc.registry.models import (
    Label,
    LabelEmbedding,
    ModelVersion,
    Threshold,
    Vocabulary,
    VocabularyLabel,
)
from ovc.registry.transactions import Target, chunks, read_session, text_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelVersionInfo:
    id: int
    name: str
    checkpoint_digest: str
    encoder_digest: str
    embed_dim: int
    dvc_rev: str | None
    params: dict[str, Any] | None
    metrics: dict[str, Any] | None
    created_at: datetime | None


@dataclass(frozen=True)
class VocabularyInfo:
    name: str
    n_labels: int
    created_at: datetime | None


def model_version_info(mv: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        id=mv.id,
        name=mv.name,
        checkpoint_digest=mv.checkpoint_digest,
        encoder_digest=mv.encoder_digest,
        embed_dim=mv.embed_dim,
        dvc_rev=mv.dvc_rev,
        params=mv.params,
        metrics=mv.metrics,
        created_at=mv.created_at,
    )


def resolve_model_version(session: Session, ref: str | ModelVersionInfo) -> ModelVersionInfo:
    """Resolve ``"latest"`` (highest id) or a name; NotFoundError if absent."""
    if isinstance(ref, ModelVersionInfo):
        ref = ref.name
    if ref == "latest":
        mv = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()
        if mv is None:
            raise NotFoundError("no model version is published yet (run the publish stage first)")
    else:
        mv = session.scalars(select(ModelVersion).where(ModelVersion.name == ref)).first()
        if mv is None:
            names = session.scalars(select(ModelVersion.name).order_by(ModelVersion.id)).all()
            raise NotFoundError(f"unknown model version {ref!r}; published: {list(names) or 'none'}")
    return model_version_info(mv)


def find_vocabulary_id(session: Session, name: str) -> int:
    vid = session.scalar(select(Vocabulary.id).where(Vocabulary.name == name))
    if vid is None:
        raise NotFoundError(f"unknown vocabulary {name!r}")
    return vid


def find_label_ids(session: Session, texts: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in chunks(list(texts)):
        out.update(session.execute(select(Label.text, Label.id).where(Label.text.in_(chunk))).tuples().all())
    return out


def embedded_texts(session: Session, mv: ModelVersionInfo, texts: Sequence[str]) -> set[str]:
    """Texts that already have an embedding for ``mv`` made by ``mv``'s label encoder."""
    found: set[str] = set()
    for chunk in chunks(list(texts)):
        stmt = (
            select(Label.text)
            .join(LabelEmbedding, LabelEmbedding.label_id == Label.id)
            .where(
                LabelEmbedding.model_version_id == mv.id,
                LabelEmbedding.encoder_digest == mv.encoder_digest,
                Label.text.in_(chunk),
            )
        )
        found.update(session.scalars(stmt))
    return found


def reusable_vectors(
    session: Session, texts: Sequence[str], encoder_digest: str, dim: int | None, exclude_mv: int | None = None
) -> dict[str, bytes]:
    """Vectors of ``texts`` produced by the same label encoder under any other model version.

    Same encoder digest = same weights and config, so f_t(ℓ) is the same vector: copy, don't encode.
    """
    found: dict[str, bytes] = {}
    for chunk in chunks(list(texts)):
        stmt = (
            select(Label.text, LabelEmbedding.vector, LabelEmbedding.dim)
            .join(LabelEmbedding, LabelEmbedding.label_id == Label.id)
            .where(LabelEmbedding.encoder_digest == encoder_digest, Label.text.in_(chunk))
        )
        if exclude_mv is not None:
            stmt = stmt.where(LabelEmbedding.model_version_id != exclude_mv)
        for text, vector, d in session.execute(stmt):
            if dim is None or d == dim:
                found.setdefault(text, bytes(vector))
    return found


def list_vocabularies(target: Target) -> list[VocabularyInfo]:
    """All vocabularies with their label counts, by name."""

    def run(session: Session) -> list[VocabularyInfo]:
        stmt = (
            select(Vocabulary.name, func.count(VocabularyLabel.label_id), Vocabulary.created_at)
            .outerjoin(VocabularyLabel, VocabularyLabel.vocabulary_id == Vocabulary.id)
            .group_by(Vocabulary.id, Vocabulary.name, Vocabulary.created_at)
            .order_by(Vocabulary.name)
        )
        return [VocabularyInfo(n, int(c), t) for n, c, t in session.execute(stmt)]

    return read_session(target, run)


def list_labels(target: Target, vocab: str) -> list[LabelSpec]:
    """Labels of a vocabulary (normalised text, kind), in code-point order of the text."""

    def run(session: Session) -> list[LabelSpec]:
        vocabulary_id = find_vocabulary_id(session, vocab)
        stmt = (
            select(Label.text, VocabularyLabel.kind)
            .join(VocabularyLabel, VocabularyLabel.label_id == Label.id)
            .where(VocabularyLabel.vocabulary_id == vocabulary_id)
            .order_by(text_order(session))
        )
        return [LabelSpec(t, k) for t, k in session.execute(stmt)]

    return read_session(target, run)


ARTIFACTS_KEY = "artifacts"  # params[...] of a model version: where its files are (see ovc.stages.publish)


def resolve_artifacts(target: Target, info: ModelVersionInfo) -> ModelVersionInfo:
    """``info`` with its artifacts directory made absolute against the registry's own location.

    ``publish`` stores the artifacts directory relative to a file registry (``registry_artifacts``
    next to ``registry.db``), so a moved or copied project keeps working; ``dir_at_publish`` (the
    absolute path at publish time) is the fallback when the relative one does not exist (a registry
    copied without its artifacts, an artifact store outside the project). Absolute entries
    (PostgreSQL registries, versions published before this change) are kept as they are.
    """
    from ovc.registry.db import registry_dir

    params = dict(info.params or {})
    arts = dict(params.get(ARTIFACTS_KEY) or {})
    stored = arts.get("dir")
    if not stored or Path(stored).is_absolute():
        return info
    base = registry_dir(target if isinstance(target, Engine) else target.get_bind())
    candidates = [base / stored] if base is not None else []
    if arts.get("dir_at_publish"):
        candidates.append(Path(arts["dir_at_publish"]))
    found = next((c for c in candidates if c.is_dir()), candidates[0] if candidates else Path(stored))
    arts["dir"] = str(found)
    params[ARTIFACTS_KEY] = arts
    return dataclasses.replace(info, params=params)


def get_model_version(target: Target, model_version: str = "latest") -> ModelVersionInfo:
    """A model version (``"latest"`` = highest id; NotFoundError if absent), artifacts resolved.

    The public way to read one version for loading it (:func:`resolve_artifacts`).
    """
    return resolve_artifacts(target, read_session(target, lambda s: resolve_model_version(s, model_version)))


def list_model_versions(target: Target) -> list[ModelVersionInfo]:
    """All model versions, oldest first."""
    return read_session(
        target, lambda s: [model_version_info(m) for m in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]
    )


def latest_model_version(target: Target) -> ModelVersionInfo | None:
    """The most recently published model version (highest id), or None."""

    def run(session: Session) -> ModelVersionInfo | None:
        mv = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()
        return model_version_info(mv) if mv is not None else None

    return read_session(target, run)


def load_embedding_matrix(
    target: Target, vocab: str, model_version: str = "latest", *, strict: bool = True
) -> tuple[list[str], np.ndarray, list[str | None]]:
    """A vocabulary's label embeddings under a model version, for scoring (paper §3, Fig. 2b).

    One query joins memberships, labels and embeddings (model version resolved in a subquery); the
    vectors are concatenated into one buffer and viewed with ``np.frombuffer`` (no per-row numpy).

    Args:
        target: Engine or Session.
        vocab: vocabulary name.
        model_version: ``"latest"`` or a name.
        strict: labels without an embedding for this version raise NotFoundError (True) or are
            skipped with a warning (False).

    Returns:
        (labels, matrix, kinds): normalised texts in code-point order, a writable (n, dim) float32
        matrix whose row i is f_t(labels[i]), and each label's kind (or None).
    """

    def run(session: Session) -> tuple[list[str], np.ndarray, list[str | None]]:
        if model_version == "latest":
            mv_id = select(ModelVersion.id).order_by(ModelVersion.id.desc()).limit(1).scalar_subquery()
        else:
            mv_id = select(ModelVersion.id).where(ModelVersion.name == model_version).scalar_subquery()
        stmt = (
            select(Label.text, VocabularyLabel.kind, LabelEmbedding.dim, LabelEmbedding.vector)
            .select_from(VocabularyLabel)
            .join(Vocabulary, Vocabulary.id == VocabularyLabel.vocabulary_id)
            .join(Label, Label.id == VocabularyLabel.label_id)
            .outerjoin(
                LabelEmbedding,
                (LabelEmbedding.label_id == VocabularyLabel.label_id) & (LabelEmbedding.model_version_id == mv_id),
            )
            .where(Vocabulary.name == vocab)
        )
        # The only query when all is well; Core (not ORM) execution: no per-row ORM wrapping.
        # Sort here, not in SQL: an ORDER BY makes SQLite copy every 2 KiB vector through a temp
        # b-tree (2x slower). Python orders str by code point, like SQLite BINARY / PostgreSQL "C".
        rows = sorted(session.connection().execute(stmt).all(), key=itemgetter(0))
        if not rows:
            find_vocabulary_id(session, vocab)  # raises NotFoundError if unknown
            mv = resolve_model_version(session, model_version)
            return [], np.zeros((0, mv.embed_dim), dtype=np.float32), []
        texts, kinds, dims, vectors = zip(*rows)
        if None in vectors:  # C-level scans (100k rows): no per-row Python on the happy path
            missing = [t for t, v in zip(texts, vectors) if v is None]
            mv = resolve_model_version(session, model_version)  # raises NotFoundError for an unknown version
            msg = (
                f"{len(missing)} label(s) of vocabulary {vocab!r} have no embedding for model version "
                f"{mv.name!r} (e.g. {missing[:3]}); run `ovc vocab add` / vocab-refresh for this version"
            )
            if strict:
                raise NotFoundError(msg)
            log.warning(msg)
            keep = [i for i, v in enumerate(vectors) if v is not None]
            texts, kinds, dims, vectors = (tuple([seq[i] for i in keep]) for seq in (texts, kinds, dims, vectors))
        if not texts:
            return [], np.zeros((0, mv.embed_dim), dtype=np.float32), []
        dim = dims[0]
        if dims.count(dim) != len(dims):
            raise RegistryError(f"vocabulary {vocab!r}: embeddings of mixed dims under {model_version!r}")
        buf = bytearray().join(vectors)  # one copy; bytearray -> writable array
        matrix = np.frombuffer(buf, dtype="<f4").reshape(len(texts), dim)  # (n*dim,) -> (n, dim)
        if sys.byteorder != "little":
            matrix = matrix.astype(np.float32)
        return list(texts), matrix, list(kinds)

    return read_session(target, run)


def counts(target: Target) -> dict[str, int]:
    """Row counts of every registry table (for reports and tests)."""
    tables = {
        "model_versions": ModelVersion,
        "vocabularies": Vocabulary,
        "labels": Label,
        "vocabulary_labels": VocabularyLabel,
        "label_embeddings": LabelEmbedding,
        "thresholds": Threshold,
    }
    return read_session(
        target,
        lambda s: {name: int(s.scalar(select(func.count()).select_from(m)) or 0) for name, m in tables.items()},
    )
