"""Deployments of the ovc flows, defined in code: ``train-eval/default``, ``vocab-refresh/hourly`` and
``classify-collection/on-demand``.

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python flows/deployments.py                          # work pool "ovc-local" (process), created if missing
    prefect worker start --pool ovc-local                # runs the flow runs as local subprocesses
    prefect deployment run train-eval/default --watch

``infra/local-up`` does all of it (server, pool, deployments, worker). Both deployments load their
flow from this project directory (``flow.from_source(<project>, "flows/<file>.py:<flow>")``: the
worker's pull step is ``set_working_directory: <project>``); for a Kubernetes or Docker pool, see
infra/README.md (same entrypoints, code from an image or a git pull step instead of a local path).

* ``train-eval/default``: no schedule (run on demand), at most one run at a time (two runs would
  fight over the same DVC workspace and params.yaml), parameters = the flow's defaults.
* ``vocab-refresh/hourly``: cron ``0 * * * *`` (UTC); ``--refresh-interval SECONDS`` replaces the
  cron with a short interval (tests, demos). Overlapping runs are safe (the registry is concurrency
  safe), so no concurrency limit.
* ``classify-collection/on-demand``: ``ovc predict`` on Ray Data; required parameters ``source``,
  ``vocab``, ``output`` (``prefect deployment run classify-collection/on-demand -p source=... -p
  vocab=train -p output=runs/preds``); resumable, so overlapping or retried runs only redo missing
  partitions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

PROJECT_DIR = Path(__file__).resolve().parents[1]
WORK_POOL = "ovc-local"
TRAIN_EVAL = ("train-eval", "default", "flows/train_eval.py:train_eval")
VOCAB_REFRESH = ("vocab-refresh", "hourly", "flows/vocab_refresh.py:vocab_refresh")
CLASSIFY_COLLECTION = ("classify-collection", "on-demand", "flows/classify_collection.py:classify_collection")
REFRESH_CRON = "0 * * * *"  # hourly, on the hour (UTC)
# environment of every flow-run process: offline hub (the offline default needs no downloads; set
# HF_HUB_OFFLINE=0 in a job variable to allow them) and telemetry off
JOB_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


def ensure_process_pool(name: str = WORK_POOL) -> bool:
    """Create a ``process`` work pool named ``name`` unless it exists. Returns True if created.

    Uses the process worker's own default job template, so no network lookup of worker metadata is
    needed (``prefect work-pool create --type process`` does the same where it is online).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="ovc: local flow runs as subprocesses (infra/local-up)",
            )
        )
        return True


def build_deployments(
    project_dir: Path = PROJECT_DIR,
    *,
    refresh_interval: float | None = None,
    refresh_cron: str = REFRESH_CRON,
    refresh_parameters: dict[str, Any] | None = None,
    train_parameters: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> list[Any]:
    """The three RunnerDeployments, their flows loaded from ``project_dir``.

    Args:
        project_dir: the project the worker runs the flows in (its ``flows/`` files, DVC project,
            ``vocabularies/``).
        refresh_interval: seconds between vocab-refresh runs instead of ``refresh_cron`` (tests).
        refresh_cron: cron of vocab-refresh (default hourly).
        refresh_parameters, train_parameters: default parameters of the deployments (merged over
            the flows' own defaults; ``prefect deployment run -p`` overrides them per run).
        env: extra environment of the flow-run processes (over :data:`JOB_ENV`).
    """
    from prefect import Flow
    from prefect.schedules import Cron, Interval

    project_dir = Path(project_dir).resolve()
    job_variables = {"env": {**JOB_ENV, **(env or {})}}
    te_flow, te_name, te_entry = TRAIN_EVAL
    vr_flow, vr_name, vr_entry = VOCAB_REFRESH
    train_eval = Flow.from_source(source=str(project_dir), entrypoint=te_entry).to_deployment(
        name=te_name,
        parameters=train_parameters or {},
        job_variables=job_variables,
        concurrency_limit=1,
        tags=["ovc", "pipeline"],
        description="The DVC pipeline (ingest -> ... -> publish): only changed stages recompute; markdown report.",
    )
    schedule = (
        Interval(datetime.timedelta(seconds=refresh_interval), slug="refresh-interval")
        if refresh_interval
        else Cron(refresh_cron, timezone="UTC", slug="refresh-cron")
    )
    vocab_refresh = Flow.from_source(source=str(project_dir), entrypoint=vr_entry).to_deployment(
        name=vr_name,
        schedule=schedule,
        parameters=refresh_parameters or {},
        job_variables=job_variables,
        tags=["ovc", "registry"],
        description="Embed new/changed labels of vocabularies/<vocab>.txt into the registry with the production model (the latest while none is promoted).",
    )
    cc_flow, cc_name, cc_entry = CLASSIFY_COLLECTION
    classify_collection = Flow.from_source(source=str(project_dir), entrypoint=cc_entry).to_deployment(
        name=cc_name,
        job_variables=job_variables,
        tags=["ovc", "inference"],
        description="ovc predict on Ray Data: classify a collection (source, vocab, output) into parquet; resumable.",
    )
    assert (
        train_eval.flow_name == te_flow
        and vocab_refresh.flow_name == vr_flow
        and classify_collection.flow_name == cc_flow
    )
    return [train_eval, vocab_refresh, classify_collection]


def register(
    project_dir: Path = PROJECT_DIR,
    work_pool: str = WORK_POOL,
    **kwargs: Any,
) -> list[UUID]:
    """Create the work pool if needed and create/update both deployments on ``$PREFECT_API_URL``."""
    from prefect import deploy

    ensure_process_pool(work_pool)
    deployments = build_deployments(project_dir, **kwargs)
    return deploy(*deployments, work_pool_name=work_pool, print_next_steps_message=False, ignore_warnings=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register the ovc deployments on $PREFECT_API_URL.")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="project the worker runs the flows in")
    parser.add_argument("--pool", default=WORK_POOL, help="process work pool (created if missing)")
    parser.add_argument("--refresh-cron", default=REFRESH_CRON, help="cron of vocab-refresh/hourly (UTC)")
    parser.add_argument(
        "--refresh-interval", type=float, default=None, help="seconds; replaces the cron (tests, demos)"
    )
    parser.add_argument(
        "--refresh-params", type=json.loads, default=None, help="JSON default parameters of vocab-refresh"
    )
    parser.add_argument("--train-params", type=json.loads, default=None, help="JSON default parameters of train-eval")
    args = parser.parse_args(argv)
    ids = register(
        args.project_dir,
        args.pool,
        refresh_interval=args.refresh_interval,
        refresh_cron=args.refresh_cron,
        refresh_parameters=args.refresh_params,
        train_parameters=args.train_params,
    )
    names = [f"{TRAIN_EVAL[0]}/{TRAIN_EVAL[1]}", f"{VOCAB_REFRESH[0]}/{VOCAB_REFRESH[1]}"]
    for name, dep_id in zip(names, ids):
        print(f"{name}\t{dep_id}")


if __name__ == "__main__":
    main(sys.argv[1:])
