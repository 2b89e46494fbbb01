"""``ovc serve``: classify videos over HTTP (FastAPI app, run by uvicorn).

    POST /classify      multipart field ``file`` (an upload) or ``path`` (under ``serve.media_root``);
                        ``vocab``, ``top_k``, ``threshold`` (calibrated | number | none), ``segments``
                        (true: label intervals over time) as form or query fields -> JSON
    GET  /vocabularies  registry vocabularies (size, version, loaded here or not)
    GET  /healthz       model version, loaded vocabularies
    GET  /metrics       Prometheus text format (requests, latency, vocabulary loads)

Why FastAPI + uvicorn and not Ray Serve: the model is one small CPU/GPU process whose state (the
published model, one label matrix per vocabulary) loads once and is shared by every request; a
single uvicorn process serves it with no cluster to run, starts in seconds in tests and CI, and
scales out behind any load balancer (several ``ovc serve`` processes). Ray Serve would add a Ray
cluster, a controller and proxy actors for replica autoscaling this project does not need at
serving time; batch work over collections is where Ray is used (``ovc predict``, Ray Data).

State: the model is loaded at start (alias ``production`` by default). A vocabulary's
:class:`~ovc.infer.classifier.Classifier` (its label matrix, thresholds) is built on first use and
reused; every ``serve.vocab_check_s`` seconds its registry version
(:func:`ovc.registry.collections.vocabulary_version`) is re-read and a changed vocabulary is
reloaded — ``ovc vocab add`` and vocab-refresh are picked up without a restart.

Errors: 4xx with ``{"detail": message}`` — 400 bad field / empty upload, 403 path outside the media
root, 404 unknown vocabulary or missing file, 411 a form without Content-Length (chunked: it would
be spooled whole before the size check), 413 upload or video too large/long, 422 not a readable video. The model runs one request at a time (a lock: torch already uses every core).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import (
    Request,  # module level: FastAPI resolves the handlers' (string) annotations here
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

    from ovc.config import Config
    from ovc.infer.classifier import Classifier
    from ovc.infer.published import PublishedModel

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A client error: HTTP status + message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Loaded:
    clf: Classifier
    version: str
    checked_at: float


class ServiceState:
    """The loaded model, one Classifier per vocabulary (reloaded when its registry version changes).

    Args:
        cfg: config (``serve``, ``classify``, ``segments`` sections).
        engine: open registry.
        model: the published model, loaded once.
    """

    def __init__(self, cfg: Config, engine: Engine, model: PublishedModel):
        self.cfg = cfg
        self.engine = engine
        self.model = model
        self.started = time.time()
        self._vocabs: dict[str, _Loaded] = {}
        self._load_lock = threading.Lock()
        self.model_lock = threading.Lock()  # one request at a time in the model (torch uses every core)
        self.reloads = 0

    def classifier(self, vocab: str) -> Classifier:
        """The vocabulary's Classifier: cached, re-checked against the registry every vocab_check_s."""
        from ovc.infer.classifier import Classifier
        from ovc.registry.collections import vocabulary_version
        from ovc.registry.store import NotFoundError

        now = time.monotonic()
        cur = self._vocabs.get(vocab)
        if cur is not None and now - cur.checked_at < self.cfg.serve.vocab_check_s:
            return cur.clf
        with self._load_lock:
            cur = self._vocabs.get(vocab)
            try:
                version = vocabulary_version(self.engine, vocab)
            except NotFoundError as e:
                self._vocabs.pop(vocab, None)
                raise RequestError(404, str(e)) from None
            if cur is not None and cur.version == version:
                cur.checked_at = now
                return cur.clf
            try:
                clf = Classifier.from_registry(
                    self.model.name, vocab, cfg=self.cfg, engine=self.engine, model=self.model
                )
            except NotFoundError as e:
                raise RequestError(404, str(e)) from None
            if cur is not None:
                self.reloads += 1
                log.info("vocabulary %r changed in the registry (%s -> %s): reloaded", vocab, cur.version, version)
            self._vocabs[vocab] = _Loaded(clf, clf.vocab_version or version, now)
            return clf

    def loaded(self) -> dict[str, str]:
        return {name: v.version for name, v in self._vocabs.items()}


# --------------------------------------------------------------------------------------------------
# Request handling (plain functions: testable without HTTP)
# --------------------------------------------------------------------------------------------------
def parse_fields(fields: dict[str, Any], default_vocab: str) -> dict[str, Any]:
    """vocab, top_k, threshold, segments from form/query strings; RequestError(400) naming the field."""
    out: dict[str, Any] = {"vocab": (fields.get("vocab") or default_vocab).strip()}
    top_k = fields.get("top_k")
    if top_k in (None, "", "none"):
        out["top_k"] = None
    else:
        try:
            out["top_k"] = int(top_k)
        except ValueError:
            raise RequestError(400, f"top_k must be an integer >= 0, got {top_k!r}") from None
        if out["top_k"] < 0:
            raise RequestError(400, f"top_k must be >= 0, got {top_k}")
    thr = (fields.get("threshold") or "calibrated").strip().lower()
    if thr == "calibrated":
        out["threshold"] = "calibrated"
    elif thr in ("none", "off"):
        out["threshold"] = None
    else:
        try:
            x = float(thr)
        except ValueError:
            raise RequestError(
                400, f"threshold must be 'calibrated', 'none' or a number in [0, 1], got {thr!r}"
            ) from None
        if not 0.0 <= x <= 1.0:
            raise RequestError(400, f"threshold {x} is outside [0, 1]")
        out["threshold"] = x
    seg = str(fields.get("segments") or "false").strip().lower()
    if seg not in ("true", "1", "yes", "false", "0", "no", ""):
        raise RequestError(400, f"segments must be true or false, got {seg!r}")
    out["segments"] = seg in ("true", "1", "yes")
    if out["segments"] and out["threshold"] is None:
        raise RequestError(400, "segments need a threshold ('calibrated' or a number), not 'none'")
    return out


def resolve_media_path(path: str, media_root: str) -> Path:
    """``path`` (relative to the media root, or absolute) resolved with symlinks; 403 if outside the root."""
    if not media_root:
        raise RequestError(
            403, "`path` is disabled: the server has no media root (serve.media_root); upload the file instead"
        )
    root = Path(media_root).resolve()
    try:
        p = Path(path)
        full = (p if p.is_absolute() else root / p).resolve()  # resolves `..` and symlinks
    except (OSError, ValueError) as e:  # a NUL byte, a name too long, a symlink loop: the client's path, not a 500
        raise RequestError(400, f"path {path!r} is not a usable file path ({e})") from None
    if full != root and root not in full.parents:
        raise RequestError(403, f"path {path!r} is outside the media root")
    if not full.is_file():
        raise RequestError(404, f"path {path!r}: no such file under the media root")
    return full


def check_video(path: Path, name: str, max_duration_s: float) -> float:
    """Duration of a readable video; 422 if not a video, 413 if longer than the limit."""
    from ovc.data.video import VideoReadError
    from ovc.infer.segments import video_timing

    try:
        timing = video_timing(path)
    except VideoReadError as e:
        raise RequestError(422, f"{name}: not a readable video ({str(e).split(': ', 1)[-1]})") from None
    if timing.duration > max_duration_s:
        raise RequestError(413, f"{name}: video is {timing.duration:.1f} s long; the limit is {max_duration_s:g} s")
    return timing.duration


def classify_file(state: ServiceState, path: Path, name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Classify one file: the JSON answer of POST /classify."""
    duration = check_video(path, name, state.cfg.serve.max_duration_s)
    clf = state.classifier(opts["vocab"])
    answer: dict[str, Any] = {
        "video": name,
        "model_version": state.model.name,
        "vocab": opts["vocab"],
        "vocab_version": clf.vocab_version,
        "duration": round(duration, 3),
    }
    with state.model_lock:
        if opts["segments"]:
            seg = clf.classify_segments([str(path)], opts["threshold"], progress=False)[0]
            if seg.error:
                raise RequestError(422, seg.error.replace(str(path), name))
            answer.update(windows=seg.windows, segments=seg.segments)
        else:
            res = clf.classify([str(path)], top_k=opts["top_k"], threshold=opts["threshold"], progress=False)[0]
            if res.error:
                raise RequestError(422, res.error.replace(str(path), name))
            answer["labels"] = res.labels
    return answer


# --------------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------------
def create_app(state: ServiceState) -> FastAPI:
    """The FastAPI app over a loaded :class:`ServiceState`."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
    from starlette.datastructures import UploadFile

    reg = CollectorRegistry()
    requests_total = Counter("ovc_requests", "HTTP requests", ["endpoint", "status"], registry=reg)
    latency = Histogram(
        "ovc_request_seconds",
        "request latency",
        ["endpoint"],
        registry=reg,
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    )
    videos_total = Counter("ovc_videos_classified", "videos classified", ["vocab"], registry=reg)
    loaded_g = Gauge("ovc_vocabularies_loaded", "vocabularies with a loaded label matrix", registry=reg)
    reloads_g = Gauge("ovc_vocabulary_reloads", "vocabularies reloaded after a registry change", registry=reg)
    max_bytes = int(state.cfg.serve.max_upload_mb * 2**20)

    app = FastAPI(title="ovc", description="Open-vocabulary video classification", version=state.model.name)

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        endpoint = (
            request.url.path if request.url.path in ("/classify", "/vocabularies", "/healthz", "/metrics") else "other"
        )
        requests_total.labels(endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_version": state.model.name,
            "vocabularies_loaded": state.loaded(),
            "uptime_s": round(time.time() - state.started, 1),
        }

    @app.get("/vocabularies")
    def vocabularies() -> list[dict[str, Any]]:
        from ovc.registry.store import list_vocabularies

        loaded = state.loaded()
        return [
            {"name": v.name, "labels": v.n_labels, "loaded": v.name in loaded, "vocab_version": loaded.get(v.name)}
            for v in list_vocabularies(state.engine)
        ]

    @app.get("/metrics")
    def metrics() -> Response:
        loaded_g.set(len(state.loaded()))
        reloads_g.set(state.reloads)
        return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    @app.post("/classify")
    async def classify(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:
            raise RequestError(
                413, f"upload of {int(length)} bytes exceeds the limit of {max_bytes} bytes (serve.max_upload_mb)"
            )
        fields: dict[str, Any] = dict(request.query_params)
        upload = None
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            if not (length and length.isdigit()):  # chunked: the form parser would spool it all before any check
                raise RequestError(
                    411, f"send a Content-Length with the form (uploads are limited to {max_bytes} bytes)"
                )
            try:
                form = await request.form(max_files=1, max_fields=32)
            except Exception as e:  # noqa: BLE001 - malformed multipart body
                raise RequestError(400, f"cannot parse the form: {e}") from None
            for k, v in form.multi_items():
                if isinstance(v, UploadFile):
                    if k != "file":
                        raise RequestError(400, f"unexpected file field {k!r}; send the video as `file`")
                    upload = v
                else:
                    fields[k] = v
        opts = parse_fields(fields, state.cfg.serve.default_vocab)
        if upload is not None and fields.get("path"):
            raise RequestError(400, "send either `file` or `path`, not both")
        if upload is None and not fields.get("path"):
            raise RequestError(400, "no video: send a multipart field `file`, or `path` under the media root")
        if upload is None:
            path = resolve_media_path(fields["path"], state.cfg.serve.media_root)
            answer = await run_in_threadpool(classify_file, state, path, fields["path"], opts)
        else:
            name = upload.filename or "upload"
            suffix = Path(name).suffix[:16] if Path(name).suffix.isascii() else ""
            fd, tmp = tempfile.mkstemp(prefix="ovc-serve-", suffix=suffix)
            try:
                size = 0
                with os.fdopen(fd, "wb") as f:
                    while chunk := await upload.read(1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise RequestError(
                                413, f"{name}: upload exceeds the limit of {max_bytes} bytes (serve.max_upload_mb)"
                            )
                        f.write(chunk)
                if size == 0:
                    raise RequestError(400, f"{name}: empty upload (0 bytes)")
                answer = await run_in_threadpool(classify_file, state, Path(tmp), name, opts)
            finally:
                await upload.close()
                os.unlink(tmp)
        videos_total.labels(opts["vocab"]).inc()
        return answer

    return app


def build_state(cfg: Config, registry_url: str = "", model_version: str = "production") -> ServiceState:
    """Open the registry and load the model (an alias, 'latest' or a version name)."""
    from ovc.infer.published import build_published, get_model_version
    from ovc.registry.aliases import resolve_version
    from ovc.registry.db import open_registry

    engine = open_registry(cfg, url=registry_url)
    info = get_model_version(engine, resolve_version(engine, model_version))
    model = build_published(info, device=cfg.classify.device)
    return ServiceState(cfg, engine, model)
