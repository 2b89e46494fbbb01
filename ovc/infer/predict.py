"""``ovc predict``: classify a whole collection on Ray Data, resumable, into partitioned parquet.

    ovc predict data/raw/videos --vocab train --out runs/preds          # a directory (recursive)
    ovc predict 'clips/**/*.mp4' --vocab retail --out runs/retail       # a glob
    ovc predict manifest.parquet --vocab train --out runs/m --segments  # a manifest (`path` column)

Pipeline (Ray Data, streaming): the sorted video list is cut into partitions of
``predict.partition_size`` videos; the partitions not written yet go through

1. decode — ``map_batches`` in CPU *tasks* (``TaskPoolStrategy``): each video is decoded like the
   evaluator (``reader`` params), or in sliding windows with ``--segments``; an unreadable file
   becomes an error row (the run goes on);
2. embed + score — ``map_batches`` with a callable class in an *actor pool*
   (``ActorPoolStrategy(size=predict.workers)``): each actor loads the published model and the
   vocabulary's label matrix once, embeds batches of clips (a GPU per actor when GPUs exist) and
   keeps the labels that pass the threshold;
3. the driver collects rows per partition and, once a partition's videos are all back, writes
   ``OUT/predictions/part-NNNNN-<digest>.parquet`` (video, label, score[, start, end]) and
   ``OUT/errors/part-NNNNN-<digest>.parquet`` (video, error) — each to a temp file renamed into place.

A partition's file name carries a digest of its video list, so a re-run skips exactly the
partitions already written; a killed run loses at most the partitions in flight. ``OUT/settings.json``
pins the folder to one model version, vocabulary version, threshold, top-k and window setting: a
re-run with other settings is refused (PredictError) instead of mixing results; partitions of an
earlier source listing (videos added or removed) are deleted once the run is complete. The run is
recorded in the registry (``prediction_runs``: model version, vocabulary version, threshold,
counts, status). ``RAY_ADDRESS`` attaches to a running cluster; otherwise a local Ray starts with
``predict.num_cpus`` CPUs.
"""

from __future__ import annotations

import glob as _glob
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ovc.config import Config

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")


class PredictError(ValueError):
    """Bad source or settings (names the problem)."""


@dataclass
class Partition:
    index: int
    videos: list[str]

    @property
    def name(self) -> str:
        digest = hashlib.sha256("\n".join(self.videos).encode()).hexdigest()[:12]
        return f"part-{self.index:05d}-{digest}"


@dataclass
class PredictSummary:
    """What a run did (also the registry run record's ``counts``)."""

    run_id: str
    model_version: str
    vocabulary: str
    vocabulary_version: str
    threshold: str
    out: str
    videos: int = 0
    partitions: int = 0
    partitions_skipped: int = 0
    partitions_written: int = 0
    partitions_removed: int = 0
    classified: int = 0
    errors: int = 0
    rows: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Sources and partitions
# --------------------------------------------------------------------------------------------------
def list_videos(source: str) -> list[str]:
    """Absolute video paths of a manifest (.parquet/.csv with ``path``; .txt one a line), a directory
    (recursive, by extension) or a glob; sorted, duplicates dropped. PredictError if none."""
    p = Path(source)
    if p.is_file() and p.suffix.lower() in (".parquet", ".csv", ".txt", ".lst"):
        import pandas as pd

        from ovc.data.manifest import resolve_video_path

        if p.suffix.lower() == ".parquet":
            cells = pd.read_parquet(p, columns=["path"])["path"].tolist()
        elif p.suffix.lower() == ".csv":
            df = pd.read_csv(p)
            if "path" not in df.columns:
                raise PredictError(f"{source}: manifest has no `path` column (columns: {list(df.columns)})")
            cells = df["path"].tolist()
        else:
            cells = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        paths = [str(resolve_video_path(p, c)) for c in cells]
    elif p.is_dir():
        paths = [str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]
    elif p.is_file():
        paths = [str(p)]
    else:
        paths = [f for f in _glob.glob(source, recursive=True) if os.path.isfile(f)]
    paths = sorted(dict.fromkeys(os.path.abspath(x) for x in paths))
    if not paths:
        raise PredictError(f"{source}: no videos (a manifest with a `path` column, a directory or a glob)")
    return paths


def make_partitions(videos: Sequence[str], size: int) -> list[Partition]:
    if size <= 0:
        raise PredictError(f"predict.partition_size must be > 0, got {size}")
    return [Partition(i, list(videos[a : a + size])) for i, a in enumerate(range(0, len(videos), size))]


SETTINGS_FILE = "settings.json"
# what the rows of OUT depend on: a re-run into OUT must match them, or skipped partitions would mix results
SETTINGS_KEYS = (
    "model_version",
    "vocabulary",
    "vocabulary_version",
    "threshold",
    "top_k",
    "segments",
    "window_s",
    "stride_s",
)


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Pin ``out`` to the settings its partitions are computed with (``OUT/settings.json``).

    The first run writes the file; a later run (a resume) must match it, else PredictError naming
    each difference: skipping "done" partitions made with another model version, vocabulary (or
    vocabulary version), threshold, top-k or window setting would silently mix two results in one table.
    """
    from ovc.fileio import atomic_write_json

    path = out / SETTINGS_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PredictError(f"{path}: unreadable ({e}); delete it (and {out}) to start over") from None
        diff = [
            f"{k} {old.get(k)!r} (this run: {settings.get(k)!r})"
            for k in SETTINGS_KEYS
            if old.get(k) != settings.get(k)
        ]
        if diff:
            raise PredictError(
                f"{out} holds predictions made with {', '.join(diff)}: a resume must use the same "
                f"settings; choose another --out, or delete {out} to start over"
            )
        return
    atomic_write_json(path, {k: settings.get(k) for k in SETTINGS_KEYS})


def remove_stale_partitions(out: Path, parts: Sequence[Partition]) -> int:
    """Delete partition files of ``out`` that are not in this run's plan (the source grew or shrank,
    or ``predict.partition_size`` changed: their videos are in the new partitions); returns how many
    partitions went. Without this the folder would read as a table with duplicate rows."""
    keep = {p.name for p in parts}
    stale = 0
    for sub in ("errors", "predictions"):  # predictions last: a partition is "done" while its file exists
        d = out / sub
        for f in sorted(d.glob("part-*.parquet")) if d.is_dir() else []:
            if f.name[: -len(".parquet")] not in keep:
                f.unlink()
                stale += sub == "predictions"
    return stale


def done_partitions(out: Path) -> set[str]:
    """Names of the partitions whose predictions file exists (written last: the partition is complete)."""
    d = out / "predictions"
    return {f.name[: -len(".parquet")] for f in d.glob("part-*.parquet")} if d.is_dir() else set()


# --------------------------------------------------------------------------------------------------
# Stage 1: decode (CPU tasks)
# --------------------------------------------------------------------------------------------------
def decode_rows(
    batch: dict[str, np.ndarray],
    reader: dict[str, Any],
    window_s: float,
    stride_s: float,
    segments: bool,
    max_clips: int = 16,
) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data UDF: rows (partition, video) -> one row per clip (whole video or window) with frames.

    A generator: it yields batches of ``max_clips`` clips (the last one fewer), and decodes a long video's windows
    ``max_clips`` at a time, so memory stays bounded whatever the video's length (an hour in 1 s
    windows would otherwise be thousands of (F, 3, H, W) clips in one block).

    Columns out: partition, video, n_clips (rows of that video: the driver's completion count), start,
    end, frames (F, 3, H, W) uint8 (zeros for an error row), error ("" when fine), decode_s. Any
    failure is an error row; one in the middle of a long video makes error rows of its remaining
    windows, so the video still has exactly ``n_clips`` rows.
    """
    from ovc.data.video import read_frames
    from ovc.infer.segments import video_timing, window_frame_indices, window_starts

    f, size = reader["num_frames"], reader["image_size"]
    max_clips = max(1, int(max_clips))
    keys = ("partition", "video", "n_clips", "start", "end", "frames", "error", "decode_s")
    out: dict[str, list[Any]] = {k: [] for k in keys}

    def add(
        part: int, video: str, n: int, start: float, end: float, frames: np.ndarray, error: str, sec: float
    ) -> None:
        for k, v in zip(keys, (part, video, n, start, end, frames, error, sec)):
            out[k].append(v)

    def flush() -> Iterator[dict[str, np.ndarray]]:
        if len(out["video"]) >= max_clips:
            yield {k: (np.stack(v) if k == "frames" else np.asarray(v)) for k, v in out.items()}
            for v in out.values():
                v.clear()

    zeros = np.zeros((f, 3, size, size), np.uint8)
    for part, video in zip(batch["partition"].tolist(), batch["video"].tolist()):
        t0 = time.perf_counter()
        n, emitted = 1, 0
        try:
            if segments:
                timing = video_timing(video)
                starts = window_starts(timing.duration, window_s, stride_s)
                idx = window_frame_indices(starts, window_s, timing, f)  # (W, F)
                n = len(starts)
                for a in range(0, n, max_clips):
                    t1 = time.perf_counter()
                    chunk = idx[a : a + max_clips]
                    flat = read_frames(
                        video, f, size, max_pixels=reader["max_pixels"], indices=chunk.reshape(-1).tolist()
                    )
                    frames = flat.reshape(len(chunk), f, *flat.shape[1:]).numpy()  # (w*F, 3, H, W) -> (w, F, 3, H, W)
                    sec = (time.perf_counter() - t1) / len(chunk)
                    for w, s in enumerate(starts[a : a + max_clips].tolist()):
                        add(part, video, n, s, min(s + window_s, timing.duration), frames[w], "", sec)
                        emitted += 1
                        yield from flush()
            else:
                clip = read_frames(video, f, size, sampling="uniform", max_pixels=reader["max_pixels"]).numpy()
                add(part, video, 1, float("nan"), float("nan"), clip, "", time.perf_counter() - t0)
                emitted = 1
        except Exception as e:  # noqa: BLE001 - an unreadable video is an error row, the run goes on
            msg = str(e) if video in str(e) else f"{video}: {type(e).__name__}: {e}"
            if emitted == 0:  # nothing of this video went out yet: one error row closes it
                n = 1
            for _ in range(n - emitted):  # n rows in all for this video, whatever was emitted before the failure
                add(part, video, n, float("nan"), float("nan"), zeros, msg, 0.0)
                yield from flush()
        yield from flush()
    if out["video"]:
        yield {k: (np.stack(v) if k == "frames" else np.asarray(v)) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# Stage 2: embed + score (actors: one model load each)
# --------------------------------------------------------------------------------------------------
def registry_classifier(registry_url: str, model_version: str, vocab: str, device: str, label_cache_dir: str) -> Any:
    """The Classifier of a registry model version and vocabulary (what each predict actor loads)."""
    from ovc.config import Config
    from ovc.infer.classifier import Classifier

    cfg = Config()
    cfg.classify.device = device
    cfg.classify.label_cache_dir = label_cache_dir
    return Classifier.from_registry(model_version, vocab, registry_url=registry_url, cfg=cfg, refresh=False)


class EmbedScore:
    """Ray Data callable class: ``loader()`` (the model and the vocabulary) runs once per actor.

    Per clip it returns the labels passing the threshold as parallel lists (``labels``, ``scores``).
    """

    def __init__(self, loader: Any, threshold: Any, top_k: int | None, torch_threads: int = 1):
        import torch

        torch.set_num_threads(max(1, int(torch_threads)))
        self.clf = loader()  # once per actor: the model and the vocabulary's label matrix
        self.threshold, self.top_k = threshold, top_k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = batch["error"] == ""
        n = len(batch["video"])
        labels: list[list[str]] = [[] for _ in range(n)]
        scores: list[list[float]] = [[] for _ in range(n)]
        t0 = time.perf_counter()
        if ok.any():
            emb = self.clf.model.embed_frames(torch.from_numpy(np.ascontiguousarray(batch["frames"][ok])))  # (b, D)
            t1 = time.perf_counter()
            rows = self.clf.classify_embeddings(emb, self.top_k, self.threshold)
            t2 = time.perf_counter()
            for i, r in zip(np.flatnonzero(ok).tolist(), rows):
                labels[i] = [x["label"] for x in r]
                scores[i] = [x["score"] for x in r]
        else:
            t1 = t2 = t0
        out = {k: batch[k] for k in ("partition", "video", "n_clips", "start", "end", "error", "decode_s")}
        # one JSON string per clip: robust through Arrow blocks whatever the number of labels
        out["labels"] = np.array([json.dumps(list(zip(lab, sc))) for lab, sc in zip(labels, scores)])
        out["encode_s"] = np.full(n, (t1 - t0) / n)
        out["score_s"] = np.full(n, (t2 - t1) / n)
        return out


# --------------------------------------------------------------------------------------------------
# Stage 3: partitions -> parquet (driver)
# --------------------------------------------------------------------------------------------------
def _write_parquet(df: Any, path: Path) -> None:
    """Write-then-rename (a reader never sees half a file), with a fixed schema: an empty partition
    has the same column types as a full one, so the folder reads as one table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "video": pa.string(),
        "label": pa.string(),
        "error": pa.string(),
        "score": pa.float32(),
        "start": pa.float64(),
        "end": pa.float64(),
    }
    schema = pa.schema([(c, types[c]) for c in df.columns])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_partition(
    out: Path, part: Partition, rows: list[dict[str, Any]], segments: bool, window_s: float
) -> tuple[int, int, int]:
    """Write one partition (errors first, predictions last = the "done" marker); (classified, errors, rows)."""
    import pandas as pd

    from ovc.infer.segments import merge_windows

    by_video: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        r = {**r, "passing": json.loads(r["labels"]) if r["labels"] else []}  # [[label, score], ...]
        by_video.setdefault(r["video"], []).append(r)
    preds: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for video in part.videos:
        clips = by_video.get(video, [])
        err = next((c["error"] for c in clips if c["error"]), None)
        if err or not clips:
            errors.append({"video": video, "error": err or "no result"})
            continue
        if not segments:
            preds += [{"video": video, "label": lab, "score": float(s)} for lab, s in clips[0]["passing"]]
            continue
        clips.sort(key=lambda c: c["start"])
        starts = np.array([c["start"] for c in clips])
        duration = max(c["end"] for c in clips)
        names = sorted({lab for c in clips for lab, _ in c["passing"]})
        col = {n: j for j, n in enumerate(names)}
        passing = np.full((len(clips), len(names)), -1.0, dtype=np.float32)  # only passing windows carry a score
        for w, c in enumerate(clips):
            for lab, s in c["passing"]:
                passing[w, col[lab]] = s
        for seg in merge_windows(passing, starts, window_s=window_s, duration=duration, thresholds=0.0, labels=names):
            preds.append({"video": video, **seg})
    cols = ["video", "label", "score"] + (["start", "end"] if segments else [])
    _write_parquet(pd.DataFrame(errors, columns=["video", "error"]), out / "errors" / f"{part.name}.parquet")
    pdf = pd.DataFrame(preds, columns=cols)
    _write_parquet(pdf, out / "predictions" / f"{part.name}.parquet")
    return len(part.videos) - len(errors), len(errors), len(pdf)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------
def init_ray(num_cpus: int, min_cpus: int = 1) -> None:
    """Attach to ``$RAY_ADDRESS``, or start a small local Ray (``num_cpus``; 0 = every core, at least
    ``min_cpus`` logical CPUs so the actors and decode tasks can all be scheduled)."""
    import ray

    if ray.is_initialized():
        return
    env = {
        k: os.environ[k]
        for k in (
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "TOKENIZERS_PARALLELISM",
            "XDG_CACHE_HOME",
            "OVC_REGISTRY_URL",
            "PYTHONPATH",
        )
        if k in os.environ
    }
    address = os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "log_to_driver": False}
    if not address:
        kwargs["num_cpus"] = max(num_cpus or os.cpu_count() or 1, min_cpus)
    ray.init(address=address or None, **kwargs)


def predict(
    source: str,
    vocab: str,
    out: str | os.PathLike,
    *,
    cfg: Config,
    registry_url: str = "",
    model_version: str = "production",
    threshold: Any = "calibrated",
    top_k: int | None = None,
    segments: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> PredictSummary:
    """Classify every video of ``source`` against ``vocab`` on Ray Data; see the module doc.

    Args:
        source: manifest, directory or glob.
        vocab: registry vocabulary.
        out: output folder (``predictions/``, ``errors/``).
        cfg: config (``predict``, ``reader`` of the model's own config is used for decoding).
        registry_url: registry (default: cfg / env / sqlite under data/).
        model_version: alias, 'latest' or a version name (resolved once for the whole run).
        threshold: 'calibrated', a number, or None (with top_k).
        top_k: keep at most k labels per clip.
        segments: sliding windows (``segments`` params) -> label intervals with start/end.
        workers: embedding actors (default ``predict.workers``).
        progress: tqdm bar over partitions.
    """
    from tqdm.auto import tqdm

    from ovc.infer.published import get_model_version
    from ovc.registry.aliases import resolve_version
    from ovc.registry.collections import vocabulary_version
    from ovc.registry.db import open_registry, resolve_url
    from ovc.registry.runs import finish_run, start_run
    from ovc.registry.store import load_embedding_matrix

    if threshold is None:
        if top_k is None:
            raise PredictError("threshold None needs top_k (else every label of the vocabulary is a row)")
    elif threshold != "calibrated":
        try:
            x = float(threshold)
        except (TypeError, ValueError):
            x = float("nan")
        if not 0.0 <= x <= 1.0:  # also NaN
            raise PredictError(
                f"threshold must be 'calibrated', None or a number in [0, 1] (scores are probabilities), got {threshold!r}"
            )
        threshold = x
    t_start = time.perf_counter()
    out = Path(out).resolve()
    pc = cfg.predict
    workers = workers or pc.workers
    url = resolve_url(cfg, url=registry_url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = "sqlite:///" + str(Path(url[len("sqlite:///") :]).resolve())  # workers run elsewhere
    videos = list_videos(source)
    parts = make_partitions(videos, pc.partition_size)
    done = done_partitions(out)
    todo = [p for p in parts if p.name not in done]

    engine = open_registry(cfg, url=url)
    try:
        info = get_model_version(engine, resolve_version(engine, model_version))
        vv = vocabulary_version(engine, vocab)
        load_embedding_matrix(engine, vocab, info.name)  # fail fast: unknown vocabulary / labels not embedded
        thr_text = "none" if threshold is None else str(threshold)
        check_settings(
            out,
            {
                "model_version": info.name,
                "vocabulary": vocab,
                "vocabulary_version": vv,
                "threshold": thr_text,
                "top_k": top_k,
                "segments": segments,
                "window_s": cfg.segments.window_s if segments else None,
                "stride_s": cfg.segments.stride_s if segments else None,
            },
        )
        summary = PredictSummary(
            uuid.uuid4().hex[:16],
            info.name,
            vocab,
            vv,
            thr_text,
            str(out),
            videos=len(videos),
            partitions=len(parts),
            partitions_skipped=len(parts) - len(todo),
        )
        start_run(engine, summary.run_id, info.name, vocab, vv, thr_text, source, str(out))
    finally:
        engine.dispose()
    log.info("predict: %d videos in %d partitions, %d already written", len(videos), len(parts), len(parts) - len(todo))
    status = "failed"
    try:
        if todo:
            _run_ray(todo, summary, out, cfg, url, info, vocab, threshold, top_k, segments, workers, progress, tqdm)
        summary.partitions_removed = remove_stale_partitions(out, parts)  # only after success: OUT is then complete
        if summary.partitions_removed:
            log.info("predict: removed %d partition(s) of an earlier source listing", summary.partitions_removed)
        status = "done"
    finally:
        summary.seconds = round(time.perf_counter() - t_start, 2)
        engine = open_registry(cfg, url=url)
        try:
            finish_run(engine, summary.run_id, status, summary.to_dict())
        finally:
            engine.dispose()
    return summary


def _run_ray(
    todo: list[Partition],
    summary: PredictSummary,
    out: Path,
    cfg: Config,
    url: str,
    info: Any,
    vocab: str,
    threshold: Any,
    top_k: int | None,
    segments: bool,
    workers: int,
    progress: bool,
    tqdm: Any,
) -> None:
    import functools

    import ray

    from ovc.infer.published import config_from_params

    pc = cfg.predict
    init_ray(pc.num_cpus, min_cpus=workers + pc.decode_tasks)
    gpus = ray.cluster_resources().get("GPU", 0) if pc.use_gpu else 0
    loader = functools.partial(
        registry_classifier, url, info.name, vocab, "cuda" if gpus else "cpu", cfg.classify.label_cache_dir
    )
    r = config_from_params((info.params or {}).get("config", {})).reader  # decode like the model was evaluated
    reader = {"num_frames": r.num_frames, "image_size": r.image_size, "max_pixels": r.max_pixels}
    counts = run_collection(
        todo,
        out,
        loader,
        reader,
        cfg,
        threshold=threshold,
        top_k=top_k,
        segments=segments,
        workers=workers,
        gpus=bool(gpus),
        progress=progress,
        tqdm=tqdm,
    )
    for k in ("partitions_written", "classified", "errors", "rows"):
        setattr(summary, k, counts[k])
    summary.timings = counts["timings"]


def run_collection(
    todo: list[Partition],
    out: Path | None,
    loader: Any,
    reader: dict[str, Any],
    cfg: Config,
    *,
    threshold: Any,
    top_k: int | None,
    segments: bool,
    workers: int,
    gpus: bool = False,
    progress: bool = False,
    tqdm: Any = None,
) -> dict[str, Any]:
    """The Ray Data pipeline over ``todo`` partitions (Ray already initialised); writes each partition
    to ``out`` as it completes (``out=None``: nothing written, for benchmarks). Returns counts and the
    summed per-clip task seconds ``timings`` {decode_s, encode_s, score_s}."""
    import ray

    pc = cfg.predict
    items = [{"partition": p.index, "video": v} for p in todo for v in p.videos]
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), len(todo) * 4)))
    ds = ds.map_batches(
        decode_rows,  # type: ignore[arg-type]  # Ray's stub has no room for fn_kwargs' extra parameters batch_size=pc.decode_batch_size, compute=ray.data.TaskPoolStrategy(size=pc.decode_tasks),
        fn_kwargs={
            "reader": reader,
            "window_s": cfg.segments.window_s,
            "stride_s": cfg.segments.stride_s,
            "segments": segments,
            "max_clips": pc.batch_size,
        },
        num_cpus=1,
    )
    ds = ds.map_batches(
        EmbedScore,
        batch_size=pc.batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs={
            "loader": loader,
            "threshold": threshold,
            "top_k": top_k,
            "torch_threads": pc.torch_threads,
        },
        num_gpus=1 if gpus else 0,
        num_cpus=1,
    )
    by_index = {p.index: p for p in todo}
    pending: dict[int, list[dict[str, Any]]] = {p.index: [] for p in todo}
    clips_left: dict[tuple[int, str], int] = {}
    videos_left = {p.index: len(p.videos) for p in todo}
    counts: dict[str, Any] = {"partitions_written": 0, "classified": 0, "errors": 0, "rows": 0}
    timings = {"decode_s": 0.0, "encode_s": 0.0, "score_s": 0.0}
    bar = tqdm(total=len(todo), desc="predict", unit="partition", disable=not progress, leave=False) if tqdm else None
    t0 = time.perf_counter()
    try:
        for row in _iter_rows(ds):
            counts.setdefault("first_row_s", round(time.perf_counter() - t0, 2))  # pipeline + actors' model load
            part, video = int(row["partition"]), str(row["video"])
            pending[part].append(row)
            for k in timings:
                timings[k] += float(row[k])
            key = (part, video)
            clips_left.setdefault(key, int(row["n_clips"]))
            clips_left[key] -= 1
            if clips_left[key] == 0:
                del clips_left[key]
                videos_left[part] -= 1
                if videos_left[part] == 0:
                    rows = pending.pop(part)
                    if out is None:
                        bad = len({r["video"] for r in rows if r["error"]})
                        ok, n = len(by_index[part].videos) - bad, 0
                    else:
                        ok, bad, n = write_partition(out, by_index[part], rows, segments, cfg.segments.window_s)
                    counts["partitions_written"] += 1
                    counts["classified"] += ok
                    counts["errors"] += bad
                    counts["rows"] += n
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    counts["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return counts


def _iter_rows(ds: Any) -> Iterator[dict[str, Any]]:
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        n = len(batch["video"])
        for i in range(n):
            yield {k: v[i] for k, v in batch.items()}
