"""Prefect flow ``vocab-refresh``: embed new or changed labels of vocabulary files into the registry.

    prefect deployment run vocab-refresh/hourly --watch        # also runs hourly from its cron schedule

Vocabulary source: a directory of label files, one file per vocabulary — ``vocabularies/retail.txt``
is vocabulary ``retail`` (file stem = vocabulary name). The format is the registry's label file
(:func:`ovc.registry.read_label_file`): one label per line, optionally ``label<TAB>entity|action``;
blank lines and ``#`` comment lines are skipped. A directory of plain files fits how application
teams work (edit a file, commit it, let the schedule pick it up) and is what ``ovc vocab add`` reads.

Each run pins one model version (the ``production`` alias — the latest while none is promoted —
resolved at the start of the run, or a name) and, per file, calls :func:`ovc.registry.sync_vocabulary`
(what ``ovc vocab add`` runs: :func:`ovc.registry.add_labels`, the registry's incremental path, paper §3, Fig. 2b):

* only labels without an embedding for that version are encoded (a changed line is a new label);
  a re-run with unchanged files encodes nothing and does not even load the model;
* idempotent and safe when two runs overlap: the registry encodes outside its write transaction and
  inserts with ``ON CONFLICT DO NOTHING`` inside it, so concurrent runs never duplicate or lose a
  label (a label both runs saw is at worst encoded twice, stored once);
* labels are normalised and validated by the registry; bad lines are reported per file, the rest
  is added. With ``prune=True`` labels no longer in a file are unlinked from its vocabulary
  (off by default: labels added by ``ovc vocab add`` survive).

Before any model is published, a run registers the labels without embeddings; the first run after
``publish`` embeds them. A file that cannot be read is reported and skipped; a database that stays
unreachable after the retries fails the run (after the other vocabularies were processed).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from ovc.config import load_config
from ovc.errors import InputError, OvcError, markdown_cell
from ovc.infer.published import load_published
from ovc.paths import anchored
from ovc.registry import (
    open_registry,
    read_label_file,
    resolve_url,
    sync_vocabulary,
)

PROJECT_DIR = Path(__file__).resolve().parents[1]  # the repository this flow file lives in
DEFAULT_SOURCE_DIR = "vocabularies"  # relative to the project
ARTIFACT_KEY = "vocab-refresh-report"
DB_RETRIES = 3  # retries of one vocabulary on a transient database error (after the registry's own)
RETRY_BACKOFF_S = 5.0  # 5 s, 10 s, 20 s (±50% jitter)

_ENCODERS: dict[tuple[str, str], Any] = {}  # (registry url, model version) -> PublishedModel, per process
_ENCODERS_LOCK = threading.Lock()


class VocabularyInputError(InputError):
    """A vocabulary file that cannot be used (unreadable, bad name); names the file."""


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def resolve_registry_url(project_dir: Path, url: str = "", params_file: str | None = None) -> str:
    """The registry URL: ``url`` > params ``registry.url`` > ``$OVC_REGISTRY_URL`` > ``<project>/<data>/registry.db``."""
    params = Path(params_file) if params_file else project_dir / "params.yaml"
    cfg = load_config(params if params.exists() else None)
    cfg = anchored(cfg, project_dir)  # the default SQLite file lives under the project, whatever the cwd
    return resolve_url(cfg, url=url)


def safe_url(url: str) -> str:
    """The URL without its password (for logs, results and artifacts)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def find_sources(source_dir: Path, pattern: str = "*.txt") -> list[dict[str, str]]:
    """``[{"vocab": stem, "path": file}]`` for the label files in ``source_dir``, sorted by name."""
    if not source_dir.is_dir():
        return []
    return [{"vocab": p.stem, "path": str(p)} for p in sorted(source_dir.glob(pattern)) if not p.is_dir()]


def published_encoder(url: str, model_version: str):
    """``encode_fn`` of a published model version, loaded once per process and only when first called."""

    def encode(labels: list[str]) -> np.ndarray:
        key = (url, model_version)
        with _ENCODERS_LOCK:
            if key not in _ENCODERS:
                _ENCODERS[key] = load_published(model_version, registry_url=url)
            model = _ENCODERS[key]
        return model.encode_labels(labels)  # (n, D) float32

    return encode


def _retry_on_db_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what can succeed on retry: transient database trouble, never bad input.

    An :class:`~ovc.errors.OvcError` says so itself (``retryable``: a registry locked too long, yes;
    a config error, a bad file or a read-only registry, no); a raw DBAPIError that the registry did
    not classify (a dropped connection, an unreachable server) is retried.
    """
    from sqlalchemy.exc import DBAPIError

    try:
        state.result()
    except OvcError as e:
        return e.retryable
    except DBAPIError:
        return True
    except Exception:  # noqa: BLE001 - anything else is not worth retrying
        return False
    return False


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------
@task(
    name="pin-model-version",
    cache_policy=NO_CACHE,
    retries=DB_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_S),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_on_db_error,
)
def pin_model_version(url: str, model_version: str) -> str | None:
    """The version name this run embeds with (an alias or ``latest`` resolved now), or None if none is published."""
    from ovc.registry.aliases import pin_version

    engine = open_registry(url=url)
    try:
        name = pin_version(engine, model_version)  # NotFoundError names an unknown version
        if name is None:
            get_run_logger().warning(
                "no model version published in %s yet: labels are registered without embeddings "
                "(the first refresh after `publish` embeds them)",
                safe_url(url),
            )
        return name
    finally:
        engine.dispose()


@task(
    name="refresh-vocabulary",
    cache_policy=NO_CACHE,
    retries=DB_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BACKOFF_S),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_on_db_error,
)
def refresh_vocabulary(
    vocab: str, path: str, url: str, model_version: str | None, prune: bool = False
) -> dict[str, Any]:
    """Add one label file's labels to its vocabulary and embed those the version lacks (incremental).

    Returns:
        :class:`ovc.registry.AddLabelsResult` as a dict plus ``file``, ``labels`` (valid lines),
        ``removed`` (with ``prune``) and ``issues`` as printable strings.
    """
    logger = get_run_logger()
    try:
        specs, issues = read_label_file(path)
    except OSError as e:
        raise VocabularyInputError(f"{path}: cannot read vocabulary file ({e})") from e
    engine = open_registry(url=url)
    try:
        try:  # the registry function `ovc vocab add` runs, plus unlinking with prune
            result, removed = sync_vocabulary(
                engine,
                vocab,
                specs,
                published_encoder(url, model_version) if model_version else None,
                model_version=model_version,
                prune=prune,
            )
        except InputError as e:  # e.g. a file name that is no valid vocabulary name (a type, not a message)
            raise VocabularyInputError(f"{path}: {e}") from e
    finally:
        engine.dispose()
    out = result.to_dict()
    out["issues"] = [str(i) for i in issues]  # read_label_file's issues carry file line numbers
    out.update(file=path, labels=len(specs), removed=removed)
    logger.info(
        "%s: %d labels, %d added, %d encoded, %d reused, %d removed, %d bad line(s)",
        vocab,
        len(specs),
        out["added"],
        out["encoded"],
        out["reused"],
        removed,
        len(issues),
    )
    for issue in issues[:10]:
        logger.warning("%s: %s", path, issue)
    return out


@task(name="report", cache_policy=NO_CACHE)
def write_report(summary: dict[str, Any]) -> str:
    """The run's markdown artifact: one row per vocabulary."""
    lines = [
        "# vocab-refresh",
        "",
        f"Registry: `{summary['registry']}`  ",
        f"Model version: `{summary['model_version'] or 'none published (labels registered, not embedded)'}`  ",
        f"Source: `{summary['source_dir']}`",
        "",
        "| vocabulary | labels | added | encoded | reused | removed | bad lines |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in summary["vocabularies"].items():
        lines.append(
            f"| {markdown_cell(name)} | {r['labels']} | {r['added']} | {r['encoded']} | {r['reused']} | {r['removed']} | {len(r['issues'])} |"
        )
    for what in ("skipped", "failed"):
        for name, reason in summary[what].items():
            lines.append(f"| {markdown_cell(name)} | {what}: {markdown_cell(reason)} | | | | | |")
    if not summary["vocabularies"] and not summary["skipped"] and not summary["failed"]:
        lines.append("| (no vocabulary files) | | | | | | |")
    return str(
        create_markdown_artifact(
            markdown="\n".join(lines) + "\n",
            key=ARTIFACT_KEY,
            description="vocab-refresh: labels added/encoded per vocabulary",
        )
    )


# --------------------------------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------------------------------
@flow(name="vocab-refresh", persist_result=True, result_serializer="json")
def vocab_refresh(
    source_dir: str = DEFAULT_SOURCE_DIR,
    model_version: str = "production",
    registry_url: str = "",
    prune: bool = False,
    pattern: str = "*.txt",
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Embed new/changed labels of every vocabulary file into the registry with one model version.

    Args:
        source_dir: directory of label files (``<vocab>.txt``); relative = under ``project_dir``.
        model_version: an alias (``"production"``: the promoted version, the latest while none is
            promoted), ``"latest"`` (resolved once per run) or a version name.
        registry_url: SQLAlchemy URL; "" = params ``registry.url`` / ``$OVC_REGISTRY_URL`` /
            ``<project>/data/registry.db``.
        prune: also unlink labels that are no longer in their file.
        pattern: which files of ``source_dir`` are vocabularies.
        project_dir: base of relative paths and of params.yaml (default: this repository).

    Returns:
        ``{"registry", "model_version", "source_dir", "vocabularies": {vocab: result},
        "skipped": {vocab: reason}, "failed": {vocab: error}}`` (persisted as JSON).
    """
    logger = get_run_logger()
    project = Path(project_dir).resolve() if project_dir else PROJECT_DIR
    source = Path(source_dir)
    source = source if source.is_absolute() else project / source
    url = resolve_registry_url(project, registry_url)
    sources = find_sources(source, pattern)
    if not sources:
        logger.warning("no vocabulary files (%s) in %s: nothing to refresh", pattern, source)
    version = pin_model_version(url, model_version)
    summary: dict[str, Any] = {
        "registry": safe_url(url),
        "model_version": version,
        "source_dir": str(source),
        "vocabularies": {},
        "skipped": {},
        "failed": {},
    }
    for src in sources:
        state = refresh_vocabulary.with_options(task_run_name=f"refresh-{src['vocab']}")(
            src["vocab"], src["path"], url, version, prune, return_state=True
        )
        if state.is_completed():
            summary["vocabularies"][src["vocab"]] = state.result()
            continue
        error = state.result(raise_on_failure=False)
        if isinstance(error, VocabularyInputError):
            summary["skipped"][src["vocab"]] = str(error)
            logger.warning("skipped %s: %s", src["path"], error)
        else:
            summary["failed"][src["vocab"]] = f"{type(error).__name__}: {error}"
    write_report(summary)
    if summary["failed"]:
        raise RuntimeError(f"vocab-refresh: {len(summary['failed'])} vocabulary(ies) failed: {summary['failed']}")
    return summary


if __name__ == "__main__":  # python flows/vocab_refresh.py [SOURCE_DIR]: one local run
    print(json.dumps(vocab_refresh(*(sys.argv[1:2] or [DEFAULT_SOURCE_DIR])), indent=2, default=str))
