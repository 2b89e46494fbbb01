"""Initial registry schema: model versions, vocabularies, labels, label embeddings, thresholds.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("checkpoint_digest", sa.String(length=64), nullable=False),
        sa.Column("dvc_rev", sa.String(length=128), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("encoder_digest", sa.String(length=64), nullable=False),
        sa.Column("embed_dim", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("embed_dim > 0", name=op.f("ck_model_versions_embed_dim_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", name=op.f("uq_model_versions_name")),
    )
    op.create_table(
        "vocabularies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vocabularies")),
        sa.UniqueConstraint("name", name=op.f("uq_vocabularies_name")),
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("text", name=op.f("uq_labels_text")),
    )
    op.create_table(
        "vocabulary_labels",
        sa.Column("vocabulary_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "kind IS NULL OR kind IN ('entity', 'action')", name=op.f("ck_vocabulary_labels_kind")
        ),
        sa.ForeignKeyConstraint(
            ["label_id"], ["labels.id"], name=op.f("fk_vocabulary_labels_label_id_labels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["vocabulary_id"],
            ["vocabularies.id"],
            name=op.f("fk_vocabulary_labels_vocabulary_id_vocabularies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vocabulary_id", "label_id", name=op.f("pk_vocabulary_labels")),
    )
    op.create_index(op.f("ix_vocabulary_labels_label_id"), "vocabulary_labels", ["label_id"], unique=False)
    op.create_table(
        "label_embeddings",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("encoder_digest", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("dim > 0", name=op.f("ck_label_embeddings_dim_positive")),
        sa.CheckConstraint("length(vector) = 4 * dim", name=op.f("ck_label_embeddings_vector_length")),
        sa.ForeignKeyConstraint(
            ["label_id"], ["labels.id"], name=op.f("fk_label_embeddings_label_id_labels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_label_embeddings_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_version_id", "label_id", name=op.f("pk_label_embeddings")),
    )
    op.create_index(op.f("ix_label_embeddings_label_id"), "label_embeddings", ["label_id"], unique=False)
    op.create_table(
        "thresholds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("vocabulary_id", sa.Integer(), nullable=True),
        sa.Column("label_id", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "(scope = 'global' AND vocabulary_id IS NULL AND label_id IS NULL)"
            " OR (scope = 'vocabulary' AND vocabulary_id IS NOT NULL AND label_id IS NULL)"
            " OR (scope = 'label' AND label_id IS NOT NULL)",
            name=op.f("ck_thresholds_scope_shape"),
        ),
        sa.CheckConstraint(
            "target = scope || ':' || COALESCE(CAST(vocabulary_id AS VARCHAR), '*')"
            " || ':' || COALESCE(CAST(label_id AS VARCHAR), '*')",
            name=op.f("ck_thresholds_target"),
        ),
        sa.ForeignKeyConstraint(
            ["label_id"], ["labels.id"], name=op.f("fk_thresholds_label_id_labels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_thresholds_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vocabulary_id"],
            ["vocabularies.id"],
            name=op.f("fk_thresholds_vocabulary_id_vocabularies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thresholds")),
        sa.UniqueConstraint("model_version_id", "target", name=op.f("uq_thresholds_model_version_id_target")),
    )


def downgrade() -> None:
    op.drop_table("thresholds")
    op.drop_index(op.f("ix_label_embeddings_label_id"), table_name="label_embeddings")
    op.drop_table("label_embeddings")
    op.drop_index(op.f("ix_vocabulary_labels_label_id"), table_name="vocabulary_labels")
    op.drop_table("vocabulary_labels")
    op.drop_table("labels")
    op.drop_table("vocabularies")
    op.drop_table("model_versions")
