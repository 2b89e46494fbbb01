"""Classify your own videos against any registry vocabulary (paper §3, Fig. 2b; threshold §4.5).

    from ovc import Classifier
    clf = Classifier.from_registry(model_version="latest", vocab="train")
    for r in clf.classify(["a.mp4", "b.mp4"], top_k=5):
        print(r.video, r.error or [(x["label"], round(x["score"], 3)) for x in r.labels])

The vocabulary's label embeddings are loaded ONCE as one (L, D) matrix
(:func:`ovc.registry.store.load_embedding_matrix`); a video is then scored against every label with
one matrix product, ``p = σ(⟨f_v, f_t(ℓ)⟩ / τ)`` with the version's ``loss.tau`` — the score the
evaluator reports and the threshold was calibrated on. Labels with ``p >= threshold`` are returned,
best first. ``threshold="calibrated"`` uses the registry's most specific threshold per label
(label-in-vocabulary > label > vocabulary > the version's global calibrated one); a version without
any threshold falls back to 0.5 (logged).

Labels of the vocabulary that have no embedding for the model version yet (added before that version
was published, or by a concurrent writer) are embedded and stored on load (``refresh=True``,
incremental: only the missing ones are encoded).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ovc.infer.label_matrix import LabelMatrix
from ovc.infer.published import PublishedModel
from ovc.infer.segments import SegmentResult

if TYPE_CHECKING:
    import torch
    from sqlalchemy import Engine

    from ovc.config import Config
    from ovc.registry.store import ModelVersionInfo

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # used when a version has no stored threshold
ThresholdArg = str | float | None


@dataclass
class Result:
    """Classification of one input.

    Attributes:
        video: the input path as given.
        labels: ``{"label", "score", "kind"}`` dicts with score >= threshold, best first (top_k caps).
        error: why the file could not be read (then ``labels`` is empty), else None.
    """

    video: str
    labels: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_thresholds(engine: Engine, model_version: str, vocab: str, labels: Sequence[str]) -> np.ndarray | None:
    """Per-label calibrated thresholds, most specific scope first (one query); None if none stored.

    Order of precedence per label: threshold of the label inside ``vocab`` > the label's threshold in
    every vocabulary > ``vocab``'s threshold > the version's global threshold (paper §4.5) — resolved by
    :func:`ovc.registry.thresholds.label_thresholds`, the registry's one implementation.
    """
    from ovc.registry.thresholds import label_thresholds as resolve

    return resolve(engine, model_version, vocab, labels, default=DEFAULT_THRESHOLD)


class Classifier:
    """Scores videos against one vocabulary with a published model (see module doc).

    Args:
        model: the published model (video encoder, τ).
        vocab: vocabulary name (for messages).
        labels: the vocabulary's normalised label texts, row order of ``matrix``.
        matrix: (L, D) float32 label embeddings f_t(ℓ), or a :class:`LabelMatrix` (e.g. memory-mapped
            from the cache); vocabularies of >= 4096 labels get an int8 pruning copy.
        kinds: per label ``entity`` | ``action`` | None.
        thresholds: calibrated thresholds, per label (L,) or one float; None = 0.5.
        batch_size: videos per encoder call (windows per call in :meth:`classify_segments`).
        decode_workers: threads decoding ahead of the encoder (0 = inline).
        window_s, stride_s: default sliding windows of :meth:`classify_segments` (``segments`` params).
    """

    def __init__(
        self,
        model: PublishedModel,
        vocab: str,
        labels: Sequence[str],
        matrix: np.ndarray | LabelMatrix,
        kinds: Sequence[str | None] | None = None,
        thresholds: np.ndarray | float | None = None,
        *,
        batch_size: int = 16,
        decode_workers: int = 2,
        window_s: float = 2.0,
        stride_s: float = 1.0,
    ):
        scorer = matrix if isinstance(matrix, LabelMatrix) else LabelMatrix.build(np.asarray(matrix, dtype=np.float32))
        if scorer.shape[0] != len(labels):
            raise ValueError(f"matrix must be (len(labels)={len(labels)}, D), got {scorer.shape}")
        if len(labels) and scorer.shape[1] != model.embed_dim:
            raise ValueError(f"label embeddings have dim {scorer.shape[1]}, the model's videos {model.embed_dim}")
        self.model = model
        self.vocab = vocab
        self.labels = list(labels)
        self.kinds = list(kinds) if kinds is not None else [None] * len(self.labels)
        # int8 pruning + exact fp32 rescoring for large vocabularies on CPU (ovc.infer.label_matrix)
        self.scorer = scorer
        self._dense: torch.Tensor | None = None
        self.vocab_version: str | None = None  # set by from_registry
        if thresholds is None:
            thresholds = DEFAULT_THRESHOLD
        self.calibrated = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (len(self.labels),))
        self.batch_size = batch_size
        self._logit_cache: dict[Any, torch.Tensor] = {}
        self.decode_workers = decode_workers
        self.window_s = float(window_s)
        self.stride_s = float(stride_s)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_registry(
        cls,
        model_version: str = "production",
        vocab: str = "train",
        registry_url: str | None = None,
        *,
        cfg: Config | None = None,
        engine: Engine | None = None,
        model: PublishedModel | None = None,
        device: str | None = None,
        refresh: bool = True,
        batch_size: int | None = None,
        decode_workers: int | None = None,
        artifacts_dir: str | os.PathLike | None = None,
    ) -> Classifier:
        """Load a published model version and one vocabulary's embeddings and thresholds.

        Args:
            model_version: an alias (``"production"``: the promoted version, or the latest while none
                is promoted; ``"candidate"``), ``"latest"`` or a version name (resolved once: model
                and embeddings agree).
            vocab: registry vocabulary name.
            registry_url: SQLAlchemy URL (default: ``cfg.registry.url`` / ``$OVC_REGISTRY_URL`` /
                ``sqlite:///<data>/registry.db``).
            cfg: config for the registry URL and the ``classify`` section (batch size, decode
                workers, device); the model's own config comes from the registry.
            engine: an open registry Engine (wins over the URL).
            model: an already loaded model of that version (skips loading it again).
            device: torch device; default ``cfg.classify.device`` ("auto").
            refresh: embed the vocabulary's labels that lack an embedding for this version.
            batch_size, decode_workers: override ``cfg.classify``.
            artifacts_dir: where the version's artifacts are, if they moved.
        """
        from ovc.config import Config
        from ovc.infer.published import build_published, get_model_version
        from ovc.registry.aliases import resolve_version
        from ovc.registry.db import open_registry

        cfg = cfg or Config()
        own = engine is None
        engine = engine if engine is not None else open_registry(cfg, url=registry_url or "")
        try:
            info = get_model_version(engine, resolve_version(engine, model_version))
            if model is None:
                model = build_published(info, device=device or cfg.classify.device, artifacts_dir=artifacts_dir)
            labels, kinds, matrix, vocab_version = _load_vocabulary(engine, vocab, info, model, refresh, cfg)
            thresholds = label_thresholds(engine, info.name, vocab, labels)
        finally:
            if own:
                engine.dispose()
        if thresholds is None:
            log.warning("model version %s has no calibrated threshold; using %.2f", info.name, DEFAULT_THRESHOLD)
        if not labels:
            log.warning("vocabulary %r is empty: every video gets no label", vocab)
        clf = cls(
            model,
            vocab,
            labels,
            matrix,
            kinds,
            thresholds,
            batch_size=batch_size or cfg.classify.batch_size,
            decode_workers=cfg.classify.decode_workers if decode_workers is None else decode_workers,
            window_s=cfg.segments.window_s,
            stride_s=cfg.segments.stride_s,
        )
        clf.vocab_version = vocab_version
        return clf

    # ------------------------------------------------------------------ scoring
    @property
    def label_matrix(self) -> torch.Tensor:
        """(L, D) float32 on the model's device (made on first use: a cached matrix stays on disk till then)."""
        import torch

        if self._dense is None:
            m = self.scorer.matrix
            m = (
                m
                if isinstance(m, np.ndarray) and m.flags.writeable and m.dtype == np.float32
                else np.array(m, dtype=np.float32)
            )
            self._dense = torch.from_numpy(np.ascontiguousarray(m)).to(getattr(self.model, "device", "cpu"))
        return self._dense

    def logits(self, video_embeddings: np.ndarray | torch.Tensor) -> torch.Tensor:
        """s = ⟨f_v, f_t(ℓ)⟩ for every (video, label), on the matrix's device: (B, D) -> (B, L)."""
        import torch

        v = torch.as_tensor(video_embeddings, dtype=torch.float32).to(self.label_matrix.device)
        if v.dim() == 1:
            v = v.unsqueeze(0)  # (D,) -> (1, D)
        return torch.mm(v, self.label_matrix.t())  # (B, D) @ (D, L) -> (B, L)

    def scores(self, video_embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """p = σ(s/τ) for every (video, label): (B, D) -> (B, L) float32 (paper eq. 2)."""
        return self.logits(video_embeddings).div_(self.model.tau).sigmoid_().cpu().numpy()

    def _thresholds(self, threshold: ThresholdArg) -> np.ndarray | None:
        """(L,) probability thresholds, or None for "no threshold"."""
        if threshold is None:
            return None
        if isinstance(threshold, str):
            if threshold == "calibrated":
                return self.calibrated
            try:
                threshold = float(threshold)
            except ValueError:
                raise ValueError(f"threshold must be 'calibrated', a number or None, got {threshold!r}") from None
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        return np.broadcast_to(np.float32(threshold), (len(self.labels),))

    def _logit_thresholds(self, thr: np.ndarray) -> torch.Tensor:
        """Probability thresholds mapped to s: p >= t  <=>  s >= τ·logit(t) (σ is monotone).

        A small margin keeps every label that could pass in float32; the exact ``p >= t`` test runs
        on those candidates only, so the full (B, L) score matrix never goes through σ.
        """
        import torch

        key = id(thr) if thr is self.calibrated else float(thr[0]) if len(thr) else 0.0
        cached = self._logit_cache.get(key)
        if cached is None:
            t = np.clip(thr.astype(np.float64), 1e-12, 1 - 1e-7)
            s_thr = self.model.tau * (np.log(t) - np.log1p(-t)) - 1e-4
            cached = torch.from_numpy(s_thr.astype(np.float32)).to(getattr(self.model, "device", "cpu"))
            if len(self._logit_cache) >= 8:
                self._logit_cache.clear()
            self._logit_cache[key] = cached
        return cached

    def select_batch(
        self, logits: torch.Tensor, top_k: int | None = None, threshold: ThresholdArg = "calibrated"
    ) -> list[list[dict[str, Any]]]:
        """Labels per row of (B, L) logits with p = σ(s/τ) >= threshold, best first, at most ``top_k``."""
        import torch

        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        thr = self._thresholds(threshold)
        n_rows, n_labels = logits.shape
        if n_labels == 0 or top_k == 0:
            return [[] for _ in range(n_rows)]
        if thr is None:
            k = n_labels if top_k is None else min(top_k, n_labels)
            kth = torch.topk(logits, k, dim=1).values[:, -1:]  # (B, 1): the k-th best logit
            out_rows = []
            for b in range(n_rows):
                # every label tied at the k-th value, then best first, ties by label index: deterministic
                cand = torch.nonzero(logits[b] >= kth[b]).squeeze(1)
                vals = logits[b, cand].cpu().numpy()
                cand_np = cand.cpu().numpy()
                order = np.lexsort((cand_np, -vals))[:k]
                probs = torch.sigmoid(torch.from_numpy(vals[order]) / self.model.tau).numpy()
                out_rows.append(self._rows(cand_np[order], probs))
            return out_rows
        rows, cols = (logits >= self._logit_thresholds(thr)).nonzero(as_tuple=True)  # candidates
        probs = torch.sigmoid(logits[rows, cols] / self.model.tau).cpu().numpy()
        rows_np, cols_np = rows.cpu().numpy(), cols.cpu().numpy()
        keep = probs >= thr[cols_np]  # the exact test, as the evaluator's ``score >= threshold``
        rows_np, cols_np, probs = rows_np[keep], cols_np[keep], probs[keep]
        out: list[list[dict[str, Any]]] = []
        for b in range(n_rows):
            sel = rows_np == b
            c, p = cols_np[sel], probs[sel]
            order = np.argsort(-p, kind="stable")
            if top_k is not None:
                order = order[:top_k]
            out.append(self._rows(c[order], p[order]))
        return out

    def _rows(self, cols: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"label": self.labels[c], "score": float(p), "kind": self.kinds[c]}
            for c, p in zip(cols.tolist(), probs.tolist())
        ]

    def classify_embeddings(
        self,
        video_embeddings: np.ndarray | torch.Tensor,
        top_k: int | None = None,
        threshold: ThresholdArg = "calibrated",
    ) -> list[list[dict[str, Any]]]:
        """Labels per video embedding row.

        Small vocabularies (or a GPU model): one (B, D) x (D, L) product, then :meth:`select_batch`.
        Large ones on CPU: the int8 copy bounds every score, only the labels that can pass (or be in
        the top k) are rescored exactly in fp32 — the same decisions, a quarter of the bytes read.
        """
        if not self.scorer.quantized or getattr(self.model, "device", "cpu") != "cpu":
            return self.select_batch(self.logits(video_embeddings), top_k, threshold)
        return self._select_pruned(video_embeddings, top_k, threshold)

    def _select_pruned(
        self, video_embeddings: np.ndarray | torch.Tensor, top_k: int | None, threshold: ThresholdArg
    ) -> list[list[dict[str, Any]]]:
        """:meth:`select_batch`'s decisions from :meth:`LabelMatrix.candidates` (exact scores of candidates)."""
        import torch

        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        thr = self._thresholds(threshold)
        v = np.asarray(torch.as_tensor(video_embeddings, dtype=torch.float32).cpu(), dtype=np.float32)
        if v.ndim == 1:
            v = v[None, :]  # (D,) -> (1, D)
        n_rows = v.shape[0]
        if not self.labels or top_k == 0:
            return [[] for _ in range(n_rows)]
        s_thr = None if thr is None else self._logit_thresholds(thr).cpu().numpy()
        c = self.scorer.candidates(v, s_thr, top_k)
        probs = torch.sigmoid(torch.from_numpy(c.logits) / self.model.tau).numpy()
        rows, cols, logits = c.rows, c.cols, c.logits
        if thr is not None and s_thr is not None:
            keep = (logits >= s_thr[cols]) & (probs >= thr[cols])  # as select_batch: logit pre-test, exact p test
            rows, cols, logits, probs = rows[keep], cols[keep], logits[keep], probs[keep]
        out: list[list[dict[str, Any]]] = []
        for b in range(n_rows):
            sel = rows == b
            c_b, p_b, s_b = cols[sel], probs[sel], logits[sel]
            order = np.lexsort((c_b, -s_b)) if thr is None else np.argsort(-p_b, kind="stable")
            if top_k is not None:
                order = order[:top_k]
            out.append(self._rows(c_b[order], p_b[order]))
        return out

    # ------------------------------------------------------------------ videos
    def classify(
        self,
        videos: Sequence[str | os.PathLike] | str | os.PathLike,
        top_k: int | None = None,
        threshold: ThresholdArg = "calibrated",
        progress: bool | None = None,
    ) -> list[Result]:
        """Classify video files; one :class:`Result` per input, in input order.

        Unreadable files get ``error`` set and no labels; the others are classified. Decoding runs
        ``decode_workers`` threads ahead of the encoder.

        Args:
            videos: paths (or one path).
            top_k: keep at most this many labels per video (None = all above the threshold).
            threshold: ``"calibrated"`` (registry), a number in [0, 1], or None (no threshold: every
                label, best first; use with top_k).
            progress: tqdm bar on stderr; None = when more than one video and stderr is a terminal.
        """
        from tqdm.auto import tqdm

        if isinstance(videos, (str, os.PathLike)):
            videos = [videos]
        paths = [os.fspath(v) for v in videos]
        self._thresholds(threshold)  # validate before any decoding
        results = [Result(video=p) for p in paths]
        # None: tqdm decides (off when stderr is not a terminal); a single video never gets a bar
        disable = (None if len(paths) > 1 else True) if progress is None else not progress
        bar = tqdm(total=len(paths), desc="classify", unit="video", disable=disable, leave=False)
        try:
            for idx, emb, errors in self.model.iter_embeddings(paths, self.batch_size, self.decode_workers):
                for i, msg in errors:
                    results[i].error = msg
                for i, labels in zip(idx, self.classify_embeddings(emb, top_k, threshold)):
                    results[i].labels = labels
                bar.update(len(idx) + len(errors))
        finally:
            bar.close()
        return results

    def classify_segments(
        self,
        videos: Sequence[str | os.PathLike] | str | os.PathLike,
        threshold: ThresholdArg = "calibrated",
        *,
        window_s: float | None = None,
        stride_s: float | None = None,
        progress: bool | None = None,
    ) -> list[SegmentResult]:
        """Which labels, when: label intervals of each video from sliding windows (:mod:`ovc.infer.segments`).

        Each window (``window_s`` long, every ``stride_s``) is decoded with ``reader.num_frames``
        frames sampled uniformly inside it, embedded and scored; consecutive windows passing a
        label's threshold merge into one interval ``{"label", "start", "end", "score"}`` (seconds,
        score = peak window score). Unreadable files get ``error`` set; the others go on.

        Args:
            videos: paths (or one path).
            threshold: ``"calibrated"`` (registry, per label) or a number in [0, 1].
            window_s, stride_s: window length and step in seconds (default: the ``segments`` params).
            progress: tqdm bar over videos (None = when more than one video and stderr is a terminal).
        """
        from tqdm.auto import tqdm

        from ovc.data.video import VideoReadError, read_frames
        from ovc.infer.segments import (
            check_window,
            merge_windows,
            video_timing,
            window_frame_indices,
            window_starts,
        )

        if isinstance(videos, (str, os.PathLike)):
            videos = [videos]
        window_s = self.window_s if window_s is None else float(window_s)
        stride_s = self.stride_s if stride_s is None else float(stride_s)
        check_window(window_s, stride_s)
        thr = self._thresholds(threshold)
        if thr is None:
            raise ValueError(
                "segments need a threshold ('calibrated' or a number): a label's interval is where it passes"
            )
        r = self.model.cfg.reader
        results = []
        disable = (None if len(videos) > 1 else True) if progress is None else not progress
        for v in tqdm(list(videos), desc="segments", unit="video", disable=disable, leave=False):
            res = SegmentResult(video=os.fspath(v))
            results.append(res)
            try:
                timing = video_timing(v)
                starts = window_starts(timing.duration, window_s, stride_s)
                idx = window_frame_indices(starts, window_s, timing, r.num_frames)  # (W, F)
                scores = []
                for b in range(0, len(starts), self.batch_size):  # bounded memory on long videos
                    chunk = idx[b : b + self.batch_size]
                    frames = read_frames(
                        v, r.num_frames, r.image_size, max_pixels=r.max_pixels, indices=chunk.reshape(-1).tolist()
                    )  # (w*F, 3, H, W)
                    frames = frames.reshape(len(chunk), r.num_frames, *frames.shape[1:])  # -> (w, F, 3, H, W)
                    scores.append(self.scores(self.model.embed_frames(frames)))  # (w, L)
            except VideoReadError as e:
                res.error = str(e)
                continue
            except Exception as e:  # noqa: BLE001 - one odd file never stops the run
                res.error = f"{res.video}: cannot read ({type(e).__name__}: {e})"
                continue
            res.duration = round(timing.duration, 3)
            res.windows = len(starts)
            res.segments = merge_windows(
                np.concatenate(scores) if scores else np.zeros((0, len(self.labels)), np.float32),
                starts,
                window_s=window_s,
                duration=timing.duration,
                thresholds=thr,
                labels=self.labels,
            )
        return results


def _load_vocabulary(
    engine: Engine, vocab: str, info: ModelVersionInfo, model: PublishedModel, refresh: bool, cfg: Config
) -> tuple[list[str], list[str | None], LabelMatrix, str]:
    """(labels, kinds, LabelMatrix, vocabulary version); embeds labels missing for the version if ``refresh``.

    The matrix comes from the label-matrix cache (``classify.label_cache_dir``) when the vocabulary
    is unchanged since it was cached, else from the registry (and is cached).
    """
    from ovc.infer.label_matrix import load_cached, resolve_cache_dir
    from ovc.registry.store import NotFoundError, add_labels, list_labels

    cache_dir = resolve_cache_dir(cfg.classify.label_cache_dir)
    try:
        return load_cached(engine, vocab, info, cache_dir)
    except NotFoundError as e:
        if not refresh or "no embedding" not in str(e):
            raise
    log.info("vocabulary %r: embedding labels that have no embedding for %s yet", vocab, info.name)
    res = add_labels(
        engine,
        vocab,
        list_labels(engine, vocab),
        model.encode_labels,
        info.name,
        max_label_chars=cfg.registry.max_label_chars,
    )
    log.info("vocabulary %r: %d label(s) embedded for %s", vocab, res.encoded + res.reused, info.name)
    return load_cached(engine, vocab, info, cache_dir)
