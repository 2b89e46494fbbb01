"""Stage ``publish``: register the evaluated model in the SQL registry (paper §3 / Fig. 2b, §4.5).

One run:

1. builds the published method (``publish.method``, default ``evaluate.main_method`` = ``ours``) with
   its trained weights ``<data>/models/<method>/final.safetensors``;
2. copies the files the version loads from into a content-addressed artifact store
   (``publish.artifacts_dir``, default ``<data>/registry_artifacts``): ``weights/<sha256>.safetensors``
   and ``clip/<sha256>/`` (the CLIP ``local-dir``). Retraining overwrites ``final.safetensors``;
   the copies keep every published version loadable. Copies are made before the registry
   transaction; after a failed publish they stay (harmless: same content, same name, reused);
3. registers the model version in ONE transaction (:func:`ovc.registry.store.publish_model_version`):
   the row (``checkpoint_digest`` = sha256 of the weights file, ``encoder_digest`` = label encoder
   weights + LLM/CLIP identity, ``dvc_rev`` = ``git rev-parse HEAD``, ``params`` = full config +
   artifact paths, ``metrics`` = ``<data>/eval/metrics.json``), the label embeddings of every
   vocabulary of ``<data>/clean/vocabulary.parquet`` (registry names: ``publish.vocab_prefix`` +
   the ``vocab`` column: ``train``, ``open_entities``, ``open_actions``, ``open_rare``,
   ``open_synonyms``), and the calibrated global threshold (metrics.json ``calibrated_threshold``,
   paper §4.5). With ``publish.embed_existing`` every other vocabulary already in the registry is
   embedded for the new version too, so user vocabularies keep working with ``latest``. A failure
   or a kill anywhere leaves the registry exactly as it was;
4. writes ``<data>/publish/receipt.json`` (the DVC output) after the commit.

Re-publishing: when a version with the same *fingerprint* (checkpoint digest, encoder digest, method,
model-relevant config, metrics, threshold and pipeline vocabularies) exists — e.g. ``dvc repro``
after a change that did not touch the model — no new version is created; the pipeline vocabularies
are re-synced to that version incrementally (``add_labels``: 0 encoded when nothing changed) and the
receipt names it with ``"created": false``. Anything else that changed makes a new version; label
embeddings are then copied, not recomputed, whenever the encoder digest is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ovc.config import Config
from ovc.errors import OvcError
from ovc.paths import DataLayout

log = logging.getLogger(__name__)

# config that rebuilds the published model from its files (what dvc.yaml's publish stage tracks):
# only these enter the fingerprint. Training, data and evaluation settings reach a version through
# what they produce (weights digest, metrics, threshold, vocabularies), so changing an evaluate-only
# param (plot points, batch size) republishes nothing.
_MODEL_SECTIONS = ("llm", "label_encoder", "video_encoder", "baselines", "clip", "reader")
_MODEL_KEYS = {"loss": ("tau",), "evaluate": ("main_method",)}


class PublishError(OvcError, RuntimeError):
    """The publish stage cannot run (missing input, unsupported method); names the file or method."""


def receipt_path(cfg: Config) -> Path:
    return DataLayout.of(cfg).publish_receipt


def artifacts_root(cfg: Config) -> Path:
    """Where published artifacts are copied (absolute)."""
    root = Path(cfg.publish.artifacts_dir) if cfg.publish.artifacts_dir else DataLayout.of(cfg).registry_artifacts
    return root.expanduser().resolve()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def _finite_json(obj: Any) -> Any:
    """JSON-able copy with NaN/inf -> None (PostgreSQL's json type rejects NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def git_rev(cwd: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of the working directory, or "" (no git / not a repository)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _store_artifact(src: Path, dest: Path) -> Path:
    """Copy a file or directory to ``dest`` (content-addressed: kept if already there), atomically."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        if src.is_dir():
            staged = tmp / "d"
            shutil.copytree(src, staged, ignore=shutil.ignore_patterns("*.tmp", ".*"))
        else:
            staged = tmp / "f"
            shutil.copy2(src, staged)
        try:
            os.replace(staged, dest)
        except OSError:
            if not dest.exists():  # a concurrent publisher may have put the same content there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _clip_artifact(cfg: Config, root: Path) -> tuple[dict[str, Any], str]:
    """Copy the resolved CLIP weights into the store -> (artifact entries, content digest)."""
    from ovc.infer.published import sha256_dir, sha256_file
    from ovc.models.clip import LOCAL_DIR_PREFIX
    from ovc.models.pretrained import resolve_clip_config

    pretrained = resolve_clip_config(cfg).pretrained
    if pretrained.startswith(LOCAL_DIR_PREFIX):
        src = Path(pretrained[len(LOCAL_DIR_PREFIX) :]).expanduser()
        digest = sha256_dir(src)
        _store_artifact(src, root / "clip" / digest)
        return {"clip": f"clip/{digest}", "clip_source": str(src)}, digest
    if pretrained and Path(pretrained).expanduser().is_file():
        src = Path(pretrained).expanduser()
        digest = sha256_file(src)
        _store_artifact(src, root / "clip" / digest / src.name)
        return {"clip": f"clip/{digest}/{src.name}", "clip_source": str(src)}, digest
    # a hub tag ("openai") or random init (""): nothing to copy; loading needs the same tag/cache
    return {"clip": None, "clip_pretrained": pretrained}, hashlib.sha256(
        f"{cfg.clip.model}:{pretrained}".encode()
    ).hexdigest()


def _pipeline_vocabularies(cfg: Config) -> dict[str, list[tuple[str, str]]]:
    from ovc.data.manifest import read_vocabulary

    path = DataLayout.of(cfg).clean_vocabulary
    if not path.is_file():
        raise PublishError(f"vocabulary {path} not found; run `ovc stage clean` first")
    df = read_vocabulary(path)
    out: dict[str, list[tuple[str, str]]] = {}
    for vocab, rows in df.groupby("vocab", sort=True):
        out[f"{cfg.publish.vocab_prefix}{vocab}"] = sorted(zip(rows["label"].astype(str), rows["kind"].astype(str)))
    return out


def _threshold_of(metrics: dict[str, Any], method: str, main_method: str) -> float | None:
    """The method's calibrated threshold (paper §4.5) from metrics.json."""
    if method == main_method and metrics.get("calibrated_threshold") is not None:
        return float(metrics["calibrated_threshold"])
    for entry in metrics.values():
        if isinstance(entry, dict) and isinstance(entry.get(method), dict):
            thr = entry[method].get("calibrated_threshold")
            if thr is not None:
                return float(thr)
    return None


def fingerprint(
    cfg: Config,
    method: str,
    checkpoint_digest: str,
    enc_digest: str,
    clip_digest: str,
    metrics: Any,
    threshold: float | None,
    vocabularies: dict[str, list[tuple[str, str]]],
) -> str:
    """sha256 of everything that defines a published version (see module doc, "Re-publishing").

    File locations do not count, contents do: only the config that rebuilds the model is in
    (``_MODEL_SECTIONS``, ``loss.tau``, ``evaluate.main_method``; not ``clip.pretrained``, a location:
    the CLIP's content digest is in). Training/evaluation settings count through their outputs.
    """
    full = cfg.to_dict()
    config = {k: full[k] for k in _MODEL_SECTIONS}
    config.update({section: {k: full[section][k] for k in keys} for section, keys in _MODEL_KEYS.items()})
    config["clip"] = {k: v for k, v in config["clip"].items() if k != "pretrained"}
    blob = {
        "method": method,
        "checkpoint": checkpoint_digest,
        "encoder": enc_digest,
        "clip": clip_digest,
        "config": config,
        "metrics": _finite_json(metrics),
        "threshold": threshold,
        "vocabularies": vocabularies,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------
def publish(cfg: Config) -> dict[str, Any]:
    """Register the evaluated model, its vocabularies' embeddings and its threshold (one transaction).

    Returns the receipt (also written to ``<data>/publish/receipt.json``).
    """
    from ovc.infer.published import ARTIFACTS_KEY, encoder_digest
    from ovc.models.device import resolve_device
    from ovc.models.methods import load_method, weights_path
    from ovc.registry.db import open_registry, registry_dir
    from ovc.registry.store import (
        add_labels,
        list_labels,
        list_model_versions,
        list_vocabularies,
        publish_model_version,
        sha256_file,
    )

    t0 = time.time()
    method_name = cfg.publish.method or cfg.evaluate.main_method
    if method_name == "clip_fixed_attributes":
        raise PublishError("clip_fixed_attributes depends on an attributes file per label and cannot be published")
    metrics_path = DataLayout.of(cfg).eval_metrics
    if not metrics_path.is_file():
        raise PublishError(f"{metrics_path} not found; run `ovc stage evaluate` first (it calibrates the threshold)")
    metrics = json.loads(metrics_path.read_text())
    threshold = _threshold_of(metrics, method_name, cfg.evaluate.main_method)
    if threshold is None:
        log.warning("publish: %s has no calibrated threshold in %s; none stored", method_name, metrics_path)
    vocabularies = _pipeline_vocabularies(cfg)

    weights = weights_path(cfg, method_name)
    if weights is not None and not weights.is_file():
        raise PublishError(f"{method_name}: trained weights {weights} not found; run `ovc stage train` first")
    method = load_method(
        cfg, method_name, None, device=resolve_device(cfg.compute.device)
    )  # labels encoded on the GPU when there is one
    enc_digest = encoder_digest(method, cfg)
    root = artifacts_root(cfg)
    artifacts, clip_digest = _clip_artifact(cfg, root)
    checkpoint_digest = clip_digest
    if weights is not None:
        checkpoint_digest = sha256_file(weights)
        _store_artifact(weights, root / "weights" / f"{checkpoint_digest}.safetensors")
        artifacts["weights"] = f"weights/{checkpoint_digest}.safetensors"
        artifacts["weights_source"] = str(weights.resolve())
    artifacts["clip_digest"] = clip_digest
    fp = fingerprint(cfg, method_name, checkpoint_digest, enc_digest, clip_digest, metrics, threshold, vocabularies)

    def encode_fn(labels: list[str]):
        return method.embed_vocabulary(labels, batch_size=cfg.publish.batch_size).float().cpu().numpy()

    engine = open_registry(cfg)
    # relative to a file registry: a moved or copied project (registry + artifacts) keeps loading
    base = registry_dir(engine)
    artifacts["dir"] = os.path.relpath(root, base) if base is not None else str(root)
    artifacts["dir_at_publish"] = str(root)
    try:
        same = [
            mv
            for mv in list_model_versions(engine)
            if (mv.params or {}).get("publish", {}).get("fingerprint") == fp
            and (not cfg.publish.model_version or cfg.publish.model_version == mv.name)
        ]
        receipt: dict[str, Any] = {
            "method": method_name,
            "checkpoint_digest": checkpoint_digest,
            "encoder_digest": enc_digest,
            "fingerprint": fp,
            "threshold": threshold,
            "registry": engine.url.render_as_string(hide_password=True),
        }
        if same:
            mv = same[-1]
            synced = {
                name: add_labels(
                    engine,
                    name,
                    labels,
                    encode_fn,
                    mv.name,
                    max_label_chars=cfg.registry.max_label_chars,
                    batch_size=cfg.publish.batch_size,
                )
                for name, labels in vocabularies.items()
            }
            log.info("publish: %s already holds this checkpoint/config/metrics; no new version", mv.name)
            receipt.update(
                model_version=mv.name,
                created=False,
                dvc_rev=mv.dvc_rev or "",
                vocabularies={k: r.added + r.already_present for k, r in synced.items()},
                encoded=sum(r.encoded for r in synced.values()),
                reused=sum(r.reused for r in synced.values()),
                issues={k: len(r.issues) for k, r in synced.items() if r.issues},
            )
        else:
            to_publish: dict[str, list[Any]] = dict(vocabularies)
            if cfg.publish.embed_existing:
                for v in list_vocabularies(engine):
                    if v.name not in to_publish and v.n_labels:
                        to_publish[v.name] = list_labels(engine, v.name)
            rev = git_rev()
            params = {
                "config": _finite_json(cfg.to_dict()),
                "method": method_name,
                ARTIFACTS_KEY: artifacts,
                "publish": {"fingerprint": fp, "vocabularies": sorted(vocabularies)},
            }
            result = publish_model_version(
                engine,
                cfg.publish.model_version or None,
                checkpoint_digest,
                encoder_digest=enc_digest,
                encode_fn=encode_fn,
                vocabularies=to_publish,
                calibrated_threshold=threshold,
                dvc_rev=rev,
                params=params,
                metrics=_finite_json(metrics),
                max_label_chars=cfg.registry.max_label_chars,
                batch_size=cfg.publish.batch_size,
            )
            receipt.update(
                model_version=result.model_version,
                created=True,
                dvc_rev=rev,
                vocabularies=result.vocabularies,
                labels_embedded=result.labels_embedded,
                encoded=result.encoded,
                reused=result.reused,
                issues={k: len(v) for k, v in result.issues.items()},
            )
    finally:
        engine.dispose()
    receipt["artifacts"] = {k: v for k, v in artifacts.items() if v}
    _atomic_write_json(receipt_path(cfg), receipt)
    log.info(
        "publish: model version %s (%s) in %.1fs",
        receipt["model_version"],
        "new" if receipt["created"] else "unchanged",
        time.time() - t0,
    )
    return receipt
