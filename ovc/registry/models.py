"""SQL schema of the label-embedding registry (SQLAlchemy 2 typed ORM).

Paper §3 / Fig. 2b: label embeddings f_t(ℓ) are precomputed into a database, so serving a new
vocabulary costs one text-encoder pass per *new* label and inference is a matrix product against
stored vectors. The schema is created and changed only by the Alembic migrations in
``ovc/registry/migrations`` (``ovc.registry.db.upgrade``); this module is their source of truth and a
test checks that ``alembic upgrade head`` yields exactly these tables.

Tables:
    model_versions     one published checkpoint (digests, DVC revision, params, metrics, embed dim)
    vocabularies       a named label set ("train", "retail", ...)
    labels             normalised label text, shared by all vocabularies (unique)
    vocabulary_labels  membership (vocabulary, label) with an optional kind (entity | action)
    label_embeddings   one float32 little-endian vector per (model version, label)
    thresholds         decision thresholds per model version: global, per vocabulary, per label

Every "no duplicates" rule is a database constraint, so it holds under concurrent writers on both
SQLite and PostgreSQL. Thresholds avoid the NULL-in-UNIQUE trap (NULLs never collide in a unique
constraint on either backend) with a non-null ``target`` key whose value a CHECK ties to the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names: identical on SQLite and PostgreSQL, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LABEL_KINDS = ("entity", "action")  # vocabulary_labels.kind (NULL = unknown)
THRESHOLD_SCOPES = ("global", "vocabulary", "label")
DIGEST_LEN = 64  # sha256 hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def threshold_target(scope: str, vocabulary_id: int | None, label_id: int | None) -> str:
    """The non-null uniqueness key of a threshold row, e.g. ``"vocabulary:3:*"``.

    Must equal the SQL expression in the ``thresholds.ck_..._target`` CHECK (same text on both backends).
    """
    v = "*" if vocabulary_id is None else str(int(vocabulary_id))
    lab = "*" if label_id is None else str(int(label_id))
    return f"{scope}:{v}:{lab}"


class ModelVersion(Base):
    """One published model: what produced the label embeddings and the calibrated threshold."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)  # "v1", "v2", ... or a given name
    checkpoint_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))  # sha256 of the checkpoint file
    dvc_rev: Mapped[str | None] = mapped_column(String(128))  # git/DVC revision it was built from
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # params.yaml tree used
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # evaluation metrics
    encoder_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))  # label encoder weights + config
    embed_dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("embed_dim > 0", name="embed_dim_positive"),)


class Vocabulary(Base):
    __tablename__ = "vocabularies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    members: Mapped[list[VocabularyLabel]] = relationship(
        back_populates="vocabulary", cascade="all, delete-orphan", passive_deletes=True
    )


class Label(Base):
    """A label's normalised text (see ``store.normalize_label``); shared across vocabularies."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, unique=True)


class VocabularyLabel(Base):
    __tablename__ = "vocabulary_labels"

    vocabulary_id: Mapped[int] = mapped_column(ForeignKey("vocabularies.id", ondelete="CASCADE"), primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True, index=True)
    kind: Mapped[str | None] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    vocabulary: Mapped[Vocabulary] = relationship(back_populates="members")
    label: Mapped[Label] = relationship()

    __table_args__ = (CheckConstraint("kind IS NULL OR kind IN ('entity', 'action')", name="kind"),)


class LabelEmbedding(Base):
    """f_t(ℓ) of one label under one model version: ``dim`` float32 values, little-endian bytes."""

    __tablename__ = "label_embeddings"

    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True, index=True)
    encoder_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))  # encoder that produced the vector
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        CheckConstraint("dim > 0", name="dim_positive"),
        # length() counts bytes of a BLOB (SQLite) / bytea (PostgreSQL): a truncated vector cannot land.
        CheckConstraint("length(vector) = 4 * dim", name="vector_length"),
    )


class Threshold(Base):
    """Decision threshold on σ(s/τ) for one model version; most specific scope wins at lookup.

    scope = global (vocabulary_id, label_id NULL) | vocabulary (vocabulary_id set) | label (label_id
    set; vocabulary_id optional: a label's threshold inside one vocabulary or in all of them).
    """

    __tablename__ = "thresholds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))
    vocabulary_id: Mapped[int | None] = mapped_column(ForeignKey("vocabularies.id", ondelete="CASCADE"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    # Non-null uniqueness key "scope:vocabulary_id|*:label_id|*" (NULLs never collide in UNIQUE).
    target: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("model_version_id", "target"),
        CheckConstraint(
            "(scope = 'global' AND vocabulary_id IS NULL AND label_id IS NULL)"
            " OR (scope = 'vocabulary' AND vocabulary_id IS NOT NULL AND label_id IS NULL)"
            " OR (scope = 'label' AND label_id IS NOT NULL)",
            name="scope_shape",
        ),
        CheckConstraint(
            "target = scope || ':' || COALESCE(CAST(vocabulary_id AS VARCHAR), '*')"
            " || ':' || COALESCE(CAST(label_id AS VARCHAR), '*')",
            name="target",
        ),
    )


# --------------------------------------------------------------------------------------------------
# Which model serves, and what batch inference did (migration 0002)
# --------------------------------------------------------------------------------------------------
ALIAS_ACTIONS = ("set", "promote", "rollback", "rejected")


class ModelAlias(Base):
    """A name (``production``, ``candidate``) for the model version predict/serve/classify use by default."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Promotion(Base):
    """History of alias changes (and gate rejections) with both versions' figures."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # set | promote | rollback | rejected
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    from_figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # e.g. {"metric": ..., "value": ...}
    to_figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("action IN ('set', 'promote', 'rollback', 'rejected')", name="action"),)


class PredictionRun(Base):
    """One ``ovc predict`` run: what scored what, with which threshold, and how it went."""

    __tablename__ = "prediction_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    vocabulary: Mapped[str] = mapped_column(String(200))
    vocabulary_version: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[str] = mapped_column(String(32))  # "calibrated" or the number used
    source: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # videos, classified, errors, rows, partitions
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
