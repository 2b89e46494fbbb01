"""Prefect flow ``train-eval``: the DVC pipeline, one task per stage, plus a markdown run report.

    prefect deployment run train-eval/default --watch                         # what changed since last run
    prefect deployment run train-eval/default -p quick=true                   # tiny smoke profile
    prefect deployment run train-eval/default -p 'overrides=["train.lr=0.0005"]'

Design decision — every stage task runs ``dvc repro <stage>`` in the DVC project (not a direct call
of the stage function followed by ``dvc commit``):

* One notion of "what is stale". DVC hashes each stage's deps, params and outs and compares them
  with ``dvc.lock``; a stage whose inputs did not change prints "didn't change, skipping" and does
  not recompute, and a combination seen before is restored from DVC's run-cache instead of re-run.
  ``make run``, ``dvc repro`` and this flow therefore agree byte for byte on what re-runs and all
  update the same ``dvc.lock`` — re-implementing that check around direct calls (``dvc status``,
  run, ``dvc commit``) would duplicate DVC's logic and lose the run-cache.
* Same command as DVC. The stage command is the one in ``dvc.yaml`` (``ovc stage <name>`` ->
  :func:`ovc.pipeline.run_stage`), run in a fresh process per stage: torch threads, Ray and memory
  are released between stages exactly as under ``dvc repro``.
* Prefect adds what DVC lacks: per-stage retries with exponential backoff for the stages that touch
  the outside world (``ingest`` from remote sources, ``publish`` to the registry database), logs
  and timing per stage in the UI, a markdown artifact per run, persisted (JSON) results readable
  through ``run_deployment``, schedules and work pools.

The cost is one ``dvc`` process start per stage (about a second) and stage summaries that are read
from the stages' output files rather than returned in memory.

Parameters map to ``params.yaml`` overrides exactly like ``dvc exp run -S section.field=value``: they
are validated against the typed config (:func:`ovc.config.load_config`) and written into the
project's ``params.yaml`` (comments kept) for the run only, so ``dvc.lock`` records the parameters
the outputs were made with. Per-run overrides never outlive their run: the original ``params.yaml``
is saved first (``.params.yaml.train-eval-backup``) and put back when the run ends, failed or not; a
run that was killed before it could restore is undone by the next run, first thing. Each run's
effective params (the whole resolved config) are recorded in ``<data>/runs/train-eval/<run>/params.yaml``
(not a DVC output) and named in the report. ``paths.*`` cannot be overridden here: DVC's outputs live
at the fixed paths of ``dvc.yaml`` under the project.

Retries: only what can succeed on retry. A stage's ``ovc stage`` exits 2 on a deterministic error
(:class:`ovc.errors.OvcError`: a config error, a read-only registry, a missing input) and 75 on a
retryable one (a registry locked too long); DVC reports that exit status, and a stage exiting 2 is
never retried. A failed run still writes its report artifact (the failed stage and its error in the
table, escaped so a multi-line error stays in its row).

Stages run in :data:`ovc.pipeline.STAGES` order, restricted to the stages ``dvc.yaml`` defines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from ovc.config import QUICK_OVERRIDES, apply_overrides, dump_params, load_config
from ovc.errors import markdown_cell
from ovc.fileio import atomic_write_bytes
from ovc.paths import DataLayout, anchored
from ovc.pipeline import STAGES

PROJECT_DIR = Path(__file__).resolve().parents[1]  # the repository this flow file lives in
# stages that talk to the outside world and may fail transiently -> retries (with exponential backoff)
TRANSIENT_STAGES: dict[str, int] = {"ingest": 3, "publish": 3}
RETRY_BACKOFF_S = 10.0  # first retry after 10 s, then 20 s, 40 s (each ±50% jitter)
ARTIFACT_KEY = "train-eval-report"  # lowercase letters, digits, dashes (Prefect artifact key rules)
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}
_LOG_TAIL_LINES = 40  # output lines quoted in the error of a failed stage

# DVC 3 reports one of these per stage it visits (dvc/stage/__init__.py, run.py, cache.py)
_DVC_STATUS = [
    (re.compile(r"Running stage '(?P<stage>[^']+)'"), "ran"),
    (re.compile(r"Stage '(?P<stage>[^']+)' didn't change, skipping"), "skipped"),
    (re.compile(r"Stage '(?P<stage>[^']+)' is cached - skipping run"), "restored"),
]


_EXIT_STATUS = re.compile(r"exited with (-?\d+)")  # DVC: "failed to run: <cmd>, exited with <status>"
DETERMINISTIC_EXIT = 2  # `ovc stage` on an OvcError that a retry cannot fix (ovc.errors)
BACKUP_SUFFIX = ".train-eval-backup"  # params.yaml saved here while a run's overrides are in place


class StageFailed(RuntimeError):
    """``dvc repro <stage>`` exited non-zero (the message quotes the end of its output).

    ``retryable``: False when the stage command exited with :data:`DETERMINISTIC_EXIT` (bad config,
    read-only registry, missing input: the same run fails the same way), True otherwise.
    """

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


def stage_exit_status(output: str) -> int | None:
    """The stage command's exit status as DVC reports it (last one in ``output``), or None."""
    found = _EXIT_STATUS.findall(output)
    return int(found[-1]) if found else None


def _retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry a failed stage only if the failure can go away."""
    try:
        state.result()
    except StageFailed as e:
        return e.retryable
    except Exception:  # noqa: BLE001 - a bug in the flow itself: retrying repeats it
        return False
    return False


# --------------------------------------------------------------------------------------------------
# Helpers (plain functions; tested directly)
# --------------------------------------------------------------------------------------------------
def resolve_overrides(overrides: list[str] | None, quick: bool = False) -> list[str]:
    """The override list a run applies: the quick profile first (if asked), then the caller's.

    Raises:
        ValueError: an override of ``paths.*`` (DVC's outputs are fixed paths in dvc.yaml).
    """
    result = [*(QUICK_OVERRIDES if quick else []), *(overrides or [])]
    for item in result:
        key = item.split("=", 1)[0].strip()
        if key == "paths" or key.startswith("paths."):
            raise ValueError(
                f"override {item!r}: train-eval runs DVC, whose outputs live under the project's data/ "
                "(dvc.yaml); run the flow with another project_dir instead of moving paths.data"
            )
    return result


def pipeline_stages(project_dir: Path) -> list[str]:
    """Stages to run: those of ``dvc.yaml``, in :data:`ovc.pipeline.STAGES` order (unknown ones last)."""
    dvc_yaml = project_dir / "dvc.yaml"
    if not dvc_yaml.exists():
        raise FileNotFoundError(f"{dvc_yaml}: not a DVC project (no dvc.yaml)")
    defined = list((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}) or {})
    return [s for s in STAGES if s in defined] + [s for s in defined if s not in STAGES]


def write_params(params_file: Path, overrides: list[str]) -> bool:
    """Apply ``section.field=value`` overrides to a params file in place, keeping its comments.

    The overrides are first validated against the typed config (:func:`ovc.config.load_config`
    raises ``ConfigError`` naming the key); the file is then rewritten atomically, and only if a
    value changed. Lists are written in flow style (``[a, b]``) like the rest of params.yaml.

    Returns:
        True if the file changed.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    load_config(params_file, overrides)  # typed validation before touching the file
    if not overrides:
        return False
    rt = YAML()  # round-trip: keeps comments, key order and quoting
    rt.width = 4096  # never wrap long lines (a wrapped comment would change the file needlessly)
    original = params_file.read_text()
    data = rt.load(original) or {}
    apply_overrides(data, overrides)

    def flow_lists(node: Any) -> Any:
        if isinstance(node, dict):
            for k, v in node.items():
                node[k] = flow_lists(v)
            return node
        if isinstance(node, list) and not isinstance(node, CommentedSeq):
            seq = CommentedSeq(flow_lists(v) for v in node)
            seq.fa.set_flow_style()
            return seq
        return node

    flow_lists(data)
    tmp = params_file.with_name(f".{params_file.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        rt.dump(data, f)
    if tmp.read_text() == original:
        tmp.unlink()
        return False
    os.replace(tmp, params_file)
    return True


def backup_path(params_file: Path) -> Path:
    return params_file.with_name(f".{params_file.name}{BACKUP_SUFFIX}")


def restore_params(params_file: Path) -> bool:
    """Put back the ``params.yaml`` a run saved before applying its overrides; True if there was one.

    Called at the end of every run, and at the start of the next one (a killed run left it behind).
    """
    backup = backup_path(params_file)
    if not backup.exists():
        return False
    os.replace(backup, params_file)
    return True


def apply_run_overrides(params_file: Path, overrides: list[str]) -> bool:
    """Save ``params_file``, then write the run's overrides into it (:func:`write_params`).

    The backup is taken before the file changes, so a kill at any point leaves either the original
    or the original + its backup (which :func:`restore_params` puts back).
    """
    restore_params(params_file)  # a previous run that died mid-way: undo its overrides first
    load_config(params_file, overrides)  # validate before anything is touched
    if not overrides:
        return False
    atomic_write_bytes(backup_path(params_file), params_file.read_bytes())
    changed = write_params(params_file, overrides)
    if not changed:
        backup_path(params_file).unlink()
    return changed


def record_effective_params(project_dir: Path, run_name: str, overrides: list[str]) -> Path:
    """Write the run's whole resolved config to ``<data>/runs/train-eval/<run>/params.yaml``."""
    params_file = project_dir / "params.yaml"
    cfg = load_config(params_file, overrides)
    out = data_root(project_dir) / "runs" / "train-eval" / run_name / "params.yaml"
    header = f"# effective params of train-eval run {run_name}: {params_file} + overrides {overrides}\n"
    atomic_write_bytes(out, (header + dump_params(cfg)).encode("utf-8"))
    return out


def stage_env() -> dict[str, str]:
    """Environment of the ``dvc repro`` subprocess: this interpreter's bin/ first (``ovc``, ``dvc``),
    telemetry off, and no ``$OVC_PARAMS`` (stages must read the params.yaml DVC tracks)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("OVC_PARAMS", None)
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
    return env


def parse_dvc_status(output: str) -> dict[str, str]:
    """Stage -> ``ran`` | ``skipped`` | ``restored`` (from run-cache), from ``dvc repro`` output."""
    status: dict[str, str] = {}
    for line in output.splitlines():
        for pattern, what in _DVC_STATUS:
            m = pattern.search(line)
            if m:
                status[m.group("stage")] = what
    return status


def data_root(project_dir: Path) -> Path:
    """The project's data root (``paths.data`` of its params.yaml, relative to the project)."""
    return DataLayout.of(anchored(load_config(project_dir / "params.yaml"), project_dir)).root


def report_markdown(
    project_dir: Path,
    stage_results: list[dict[str, Any]],
    overrides: list[str],
    eval_dir: Path,
    effective_params: str | None = None,
) -> str:
    """The run report: stage table (a failed stage with its error), results of ``evaluate``, plots."""
    lines = [
        "# train-eval",
        "",
        f"Project: `{project_dir}`",
        f"Overrides: {', '.join(f'`{markdown_cell(o)}`' for o in overrides) if overrides else 'none (params.yaml as is)'}",
        *([f"Effective params: `{effective_params}`"] if effective_params else []),
        "",
        "## Stages",
        "",
        "| stage | status | seconds |",
        "|---|---|---:|",
    ]
    for r in stage_results:
        status = r["status"] if not r.get("error") else f"{r['status']}: {markdown_cell(r['error'])}"
        seconds = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "–"
        lines.append(f"| {r['stage']} | {status} | {seconds} |")
    lines += ["", "`ran` = recomputed; `skipped` = inputs unchanged (dvc.lock); `restored` = DVC run-cache.", ""]
    results_md = eval_dir / "results.md"
    lines += ["## Results", ""]
    if results_md.exists():
        lines += [f"From `{results_md}`:", "", results_md.read_text().strip(), ""]
    else:
        lines += [f"No results table (`{results_md}` does not exist: evaluate has not run).", ""]
    plots_dir = eval_dir / "plots"
    pngs = sorted(p.name for p in plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    csvs = sorted(p.name for p in plots_dir.glob("*.csv")) if plots_dir.is_dir() else []
    lines += ["## Plots", ""]
    if pngs or csvs:
        lines.append(f"In `{plots_dir}/` ({len(pngs)} PNG, {len(csvs)} CSV; `dvc plots show` renders the CSVs):")
        lines.append("")
        lines += [f"- `{name}`" for name in pngs]
    else:
        lines.append(f"No plots in `{plots_dir}`.")
    metrics = eval_dir / "metrics.json"
    if metrics.exists():
        lines += ["", f"Metrics: `{metrics}` (`dvc metrics show`)."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------
@task(name="apply-params", cache_policy=NO_CACHE)
def apply_params(project_dir: str, overrides: list[str], run_name: str) -> dict[str, Any]:
    """Validate the overrides, record the effective params, write the overrides into params.yaml for this run."""
    params_file = Path(project_dir) / "params.yaml"
    if restore_params(params_file):  # before anything reads params.yaml
        get_run_logger().warning("a previous run left its overrides in %s; restored the saved original", params_file)
    effective = record_effective_params(Path(project_dir), run_name, overrides)  # validates the overrides
    changed = apply_run_overrides(params_file, overrides)
    if changed:
        get_run_logger().info("params.yaml holds %d override(s) for this run: %s", len(overrides), overrides)
    return {
        "params_file": str(params_file),
        "overrides": overrides,
        "changed": changed,
        "effective_params": str(effective),
    }


@task(name="dvc-repro", cache_policy=NO_CACHE)
def repro_stage(stage: str, project_dir: str, force: bool = False) -> dict[str, Any]:
    """``dvc repro <stage>`` in the project: DVC re-runs it only if its deps/params/outs changed.

    Upstream stages are checked too (DVC's own order); they are normally fresh already because the
    flow runs stages in pipeline order. Output lines go to the Prefect log.

    Returns:
        ``{"stage", "status": ran|skipped|restored|unknown, "seconds", "upstream": {stage: status}}``.
    """
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", *(["--force", "--single-item"] if force else []), stage]
    logger.info("$ %s  (cwd %s)", " ".join(cmd[2:]), project_dir)
    t0 = time.perf_counter()
    tail: deque[str] = deque(maxlen=_LOG_TAIL_LINES)
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=project_dir,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            for line in raw.replace("\r", "\n").splitlines():  # progress bars redraw with \r
                if not line.strip():
                    continue
                tail.append(line)
                lines.append(line)
                if "%|" not in line or "100%|" in line:  # progress bars: only their last frame
                    logger.info("%s", line)
        rc = proc.wait()
    seconds = time.perf_counter() - t0
    if rc != 0:
        status = stage_exit_status("\n".join(tail))
        raise StageFailed(
            f"dvc repro {stage} failed (exit {rc}"
            + (f", stage command exited with {status}" if status is not None else "")
            + f") in {project_dir}:\n"
            + "\n".join(tail),
            retryable=status != DETERMINISTIC_EXIT,
        )
    status = parse_dvc_status("\n".join(lines))
    return {
        "stage": stage,
        "status": status.pop(stage, "unknown"),
        "seconds": round(seconds, 2),
        "upstream": status,
    }


@task(name="report", cache_policy=NO_CACHE)
def write_report(
    project_dir: str, stage_results: list[dict[str, Any]], overrides: list[str], effective_params: str | None = None
) -> dict[str, Any]:
    """Create the run's markdown artifact and return the evaluation outputs (metrics, results, plots)."""
    project = Path(project_dir)
    eval_dir = data_root(project) / "eval"
    markdown = report_markdown(project, stage_results, overrides, eval_dir, effective_params)
    artifact_id = create_markdown_artifact(
        markdown=markdown, key=ARTIFACT_KEY, description="train-eval: stages, results table, plots"
    )
    metrics_file = eval_dir / "metrics.json"
    results_md = eval_dir / "results.md"
    plots_dir = eval_dir / "plots"
    return {
        "artifact_id": str(artifact_id),
        "eval_dir": str(eval_dir),
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.exists() else None,
        "results_md": results_md.read_text() if results_md.exists() else None,
        "plots": sorted(str(p) for p in plots_dir.glob("*.png")) if plots_dir.is_dir() else [],
    }


@task(name="promotion-gate", cache_policy=NO_CACHE)
def promotion_gate(project_dir: str) -> dict[str, Any]:
    """The published version becomes ``candidate``; ``production`` only if it beats it (``promote`` params)."""
    from ovc.registry.aliases import gate_published

    project = Path(project_dir)
    cfg = load_config(project / "params.yaml")
    cfg = anchored(cfg, project)
    result = gate_published(cfg)
    get_run_logger().info("promotion gate: %s", result)
    return result


# --------------------------------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------------------------------
@flow(name="train-eval", persist_result=True, result_serializer="json", log_prints=True)
def train_eval(
    overrides: list[str] | None = None,
    quick: bool = False,
    stages: list[str] | None = None,
    force: bool = False,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Run the pipeline's stages through DVC (only what changed recomputes) and report the results.

    Args:
        overrides: ``section.field=value`` params overrides (DVC's ``-S`` syntax), in the project's
            params.yaml for this run only (restored when it ends).
        quick: prepend :data:`ovc.config.QUICK_OVERRIDES` (a tiny end-to-end profile).
        stages: run only these stages (pipeline order kept); None = every stage of dvc.yaml.
        force: re-run the selected stages even if nothing changed (``dvc repro --force``).
        project_dir: the DVC project (default: the repository holding this flow file).

    Returns:
        ``{"project_dir", "overrides", "params_changed", "effective_params", "stages": [per-stage result], "metrics",
        "results_md", "plots", "eval_dir", "artifact_id", "promotion"}`` (persisted as JSON; ``promotion``:
        the gate's decision, see :func:`ovc.registry.aliases.gate`).
    """
    project = Path(project_dir).resolve() if project_dir else PROJECT_DIR
    applied = resolve_overrides(overrides, quick)
    order = pipeline_stages(project)
    if stages:
        unknown = sorted(set(stages) - set(order))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml defines: {', '.join(order)}")
        order = [s for s in order if s in stages]
    missing = [s for s in STAGES if s not in order and not stages]
    if missing:
        get_run_logger().warning("stages in ovc.pipeline.STAGES but not in dvc.yaml (not run): %s", missing)

    run_name = _run_name()
    params = apply_params(str(project), applied, run_name)
    results: list[dict[str, Any]] = []
    failure: BaseException | None = None
    try:
        for name in order:
            retries = TRANSIENT_STAGES.get(name, 0)
            stage_task = repro_stage.with_options(
                name=f"dvc-repro-{name}",
                task_run_name=name,
                retries=retries,
                retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_S) if retries else 0,
                retry_jitter_factor=0.5 if retries else None,
                retry_condition_fn=_retry_if_retryable,
            )
            state = stage_task(name, str(project), force, return_state=True)
            if state.is_completed():
                results.append(state.result())
                continue
            failure = state.result(raise_on_failure=False)
            if not isinstance(failure, BaseException):
                failure = RuntimeError(f"stage {name} ended in state {state.type}")
            results.append({"stage": name, "status": "failed", "seconds": None, "error": str(failure)})
            break
    finally:
        if restore_params(project / "params.yaml"):  # the overrides do not outlive the run
            get_run_logger().info("params.yaml restored (this run's overrides removed)")
    report = write_report(str(project), results, applied, params["effective_params"])  # failed runs too
    if failure is not None:
        raise failure
    gate = promotion_gate(str(project)) if "publish" in order else {"skipped": "publish not run"}
    return {
        "project_dir": str(project),
        "overrides": applied,
        "params_changed": params["changed"],
        "effective_params": params["effective_params"],
        "stages": results,
        "promotion": gate,
        **report,
    }


def _run_name() -> str:
    """A sortable, unique name for this run: UTC time + the Prefect flow run id's first 8 characters."""
    from prefect.runtime import flow_run

    run_id = str(flow_run.get_id() or os.getpid())
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + run_id[:8]


if __name__ == "__main__":  # python flows/train_eval.py [section.field=value ...]: one local run
    print(json.dumps(train_eval(overrides=sys.argv[1:]), indent=2, default=str))
