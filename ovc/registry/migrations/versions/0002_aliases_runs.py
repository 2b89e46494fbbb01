"""Model aliases (production, candidate), their promotion history, and batch prediction runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_model_aliases_model_version_id_model_versions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model_aliases")),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_version_id", sa.Integer(), nullable=True),
        sa.Column("to_version_id", sa.Integer(), nullable=True),
        sa.Column("from_figures", sa.JSON(), nullable=True),
        sa.Column("to_figures", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("action IN ('set', 'promote', 'rollback', 'rejected')", name=op.f("ck_promotions_action")),
        sa.ForeignKeyConstraint(["from_version_id"], ["model_versions.id"],
                                name=op.f("fk_promotions_from_version_id_model_versions"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["to_version_id"], ["model_versions.id"],
                                name=op.f("fk_promotions_to_version_id_model_versions"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
    )
    op.create_table(
        "prediction_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("vocabulary", sa.String(length=200), nullable=False),
        sa.Column("vocabulary_version", sa.String(length=64), nullable=False),
        sa.Column("threshold", sa.String(length=32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_prediction_runs_model_version_id_model_versions"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_runs")),
        sa.UniqueConstraint("run_id", name=op.f("uq_prediction_runs_run_id")),
    )


def downgrade() -> None:
    op.drop_table("prediction_runs")
    op.drop_table("promotions")
    op.drop_table("model_aliases")
