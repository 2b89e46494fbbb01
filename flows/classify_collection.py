"""Prefect flow ``classify-collection``: ``ovc predict`` (Ray Data batch inference) as a deployment.

    prefect deployment run classify-collection/on-demand -p source=data/raw/videos -p vocab=train -p output=runs/preds --watch

Parameters: ``source`` (manifest, directory or glob), ``vocab`` (registry vocabulary), ``output``
(folder of parquet partitions); optionally ``model_version`` (alias, default ``production``),
``threshold``, ``segments``. Relative paths are taken relative to the project directory. The run is
resumable exactly like ``ovc predict``: a retry or a re-run skips the partitions already written, so
the task retries once on a transient failure (not on bad settings). ``RAY_ADDRESS`` in the deployment's environment attaches the work
to a Ray cluster; otherwise a local Ray starts in the flow-run process. The run summary is returned
(persisted as JSON) and shown as a markdown artifact; the registry keeps the run record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from ovc.paths import anchored

PROJECT_DIR = Path(__file__).resolve().parents[1]
ARTIFACT_KEY = "classify-collection"


def _under(project: Path, p: str) -> str:
    """``p`` as given if absolute or a glob that exists from here, else relative to the project."""
    return p if Path(p).is_absolute() else str(project / p)


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a lost Ray worker or cluster (the retry resumes from the partitions written), never bad
    settings: an unknown vocabulary, a bad threshold or a resume with other settings fail the same way again."""
    from ovc.errors import OvcError
    from ovc.infer.published import PublishedModelError

    try:
        state.result()
    except OvcError as e:
        return e.retryable
    except (ValueError, PublishedModelError):  # PredictError is a ValueError
        return False
    except Exception:  # noqa: BLE001 - anything else (Ray, I/O) may go away
        return True
    return False


@task(name="predict", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10, retry_condition_fn=_retry_if_transient)
def run_predict(
    project_dir: str,
    source: str,
    vocab: str,
    output: str,
    model_version: str,
    threshold: Any,
    segments: bool,
    overrides: list[str],
) -> dict[str, Any]:
    from ovc.config import load_config
    from ovc.infer.predict import predict

    project = Path(project_dir)
    cfg = load_config(project / "params.yaml", overrides or None)
    cfg = anchored(cfg, project)
    summary = predict(
        _under(project, source),
        vocab,
        _under(project, output),
        cfg=cfg,
        model_version=model_version,
        threshold=threshold,
        segments=segments,
        progress=False,
    )
    return summary.to_dict()


@flow(name="classify-collection", persist_result=True, result_serializer="json", log_prints=True)
def classify_collection(
    source: str,
    vocab: str,
    output: str,
    model_version: str = "production",
    threshold: str = "calibrated",
    segments: bool = False,
    overrides: list[str] | None = None,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Classify every video of ``source`` against ``vocab`` into ``output`` (see module doc).

    Args:
        source: manifest (.parquet/.csv with ``path``, .txt), directory or glob.
        vocab: registry vocabulary.
        output: output folder (predictions/ and errors/ parquet partitions).
        model_version: alias (``production``), ``latest`` or a version name.
        threshold: ``calibrated`` or a number in [0, 1].
        segments: sliding windows -> label intervals (start/end columns).
        overrides: ``section.field=value`` params overrides (e.g. ``predict.workers=4``).
        project_dir: the project (params.yaml, data/); default: the repository holding this flow.
    """
    project = Path(project_dir).resolve() if project_dir else PROJECT_DIR
    try:
        thr: Any = threshold if threshold == "calibrated" else float(threshold)
    except ValueError:
        raise ValueError(f"threshold must be 'calibrated' or a number in [0, 1], got {threshold!r}") from None
    summary = run_predict(str(project), source, vocab, output, model_version, thr, segments, list(overrides or []))
    md = "\n".join(
        [
            f"# classify-collection run {summary['run_id']}",
            "",
            f"- source: `{source}` -> `{summary['out']}`",
            f"- model version {summary['model_version']}, vocabulary `{vocab}` ({summary['vocabulary_version']}), threshold {summary['threshold']}",
            f"- {summary['classified']} classified, {summary['errors']} unreadable of {summary['videos']} videos; "
            f"{summary['partitions_written']} partition(s) written, {summary['partitions_skipped']} already done; {summary['seconds']} s",
        ]
    )
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=md, description="ovc predict summary")
    get_run_logger().info("classify-collection: %s", json.dumps(summary))
    return summary


if __name__ == "__main__":  # python flows/classify_collection.py SOURCE VOCAB OUTPUT
    print(json.dumps(classify_collection(*sys.argv[1:4]), indent=2))
