"""Run records of ``ovc predict`` (table ``prediction_runs``, migration 0002)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ovc.registry.models import ModelVersion, PredictionRun
from ovc.registry.store import NotFoundError


def start_run(
    engine: Engine,
    run_id: str,
    model_version: str,
    vocab: str,
    vocab_version: str,
    threshold: str,
    source: str,
    output: str,
) -> None:
    """Insert a ``running`` record."""
    with Session(engine) as s, s.begin():
        mv_id = s.scalar(select(ModelVersion.id).where(ModelVersion.name == model_version))
        if mv_id is None:
            raise NotFoundError(f"unknown model version {model_version!r}")
        s.add(
            PredictionRun(
                run_id=run_id,
                model_version_id=mv_id,
                vocabulary=vocab,
                vocabulary_version=vocab_version,
                threshold=threshold,
                source=source,
                output=output,
                status="running",
                counts={},
            )
        )


def finish_run(engine: Engine, run_id: str, status: str, counts: dict[str, Any]) -> None:
    """Set the final status (done | failed) and counts."""
    with Session(engine) as s, s.begin():
        run = s.scalar(select(PredictionRun).where(PredictionRun.run_id == run_id))
        if run is None:
            raise NotFoundError(f"unknown prediction run {run_id!r}")
        run.status = status
        run.counts = counts
        run.finished_at = datetime.now(UTC)


def list_runs(engine: Engine) -> list[dict[str, Any]]:
    """Every run record, oldest first."""
    with Session(engine) as s:
        names = dict(s.execute(select(ModelVersion.id, ModelVersion.name)).all())
        return [
            {
                "run_id": r.run_id,
                "model_version": names.get(r.model_version_id) if r.model_version_id is not None else None,
                "vocabulary": r.vocabulary,
                "vocabulary_version": r.vocabulary_version,
                "threshold": r.threshold,
                "source": r.source,
                "output": r.output,
                "status": r.status,
                "counts": r.counts,
                "started_at": str(r.started_at),
                "finished_at": str(r.finished_at) if r.finished_at else None,
            }
            for r in s.scalars(select(PredictionRun).order_by(PredictionRun.id))
        ]
