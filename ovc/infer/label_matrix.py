"""Scoring at vocabulary scale: an int8 label matrix that prunes, exact fp32 rescoring that decides.

Scoring one video against L labels is a (1, D) x (D, L) product that reads the whole (L, D) fp32
matrix (205 MB for 100k x 512): memory-bound. Here every row f_t(ℓ) is also stored as int8 with a
per-row scale, ``f_t(ℓ) ≈ scale_ℓ · q_ℓ``, 4x fewer bytes, and a JIT-compiled (numba) kernel
computes ``approx_ℓ = scale_ℓ · ⟨q_ℓ, v⟩`` for all labels. The approximation has a *rigorous* error
bound per (video, label)::

    |⟨v, f_t(ℓ)⟩ - approx_ℓ|  <=  ||v|| · (||f_t(ℓ) - scale_ℓ q_ℓ||  +  slack_ℓ)

(Cauchy-Schwarz on the quantisation residual, whose norm is stored per row, plus ``slack_ℓ`` for
the float32 rounding of the kernel's sum). So:

- threshold: a label can pass ``s >= t_ℓ`` only if ``approx + bound >= t_ℓ``: those candidates are
  rescored exactly in fp32 from the original rows, and the threshold test runs on exact scores;
- top-k: with κ the k-th largest lower bound ``approx - bound``, a label whose upper bound is below κ
  cannot be in the top k (k labels are certainly above it): the rest are rescored exactly.

Decisions are therefore exactly those of fp32 scoring (``tests/infer/test_label_matrix.py`` checks it
on random data with near-ties); only the candidates' rows of the fp32 matrix are read, so it can stay
memory-mapped on disk.

Storage: :func:`load_cached` keeps a vocabulary's matrices as ``.npy`` files in a cache directory,
keyed by (model version, vocabulary version) — :func:`ovc.registry.collections.vocabulary_version` is
a digest of the vocabulary's membership — and memory-maps them on load; a changed vocabulary gets a
new key, so a stale entry is never read. Entries are written to a temp dir and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ovc.registry.store import ModelVersionInfo

log = logging.getLogger(__name__)

MIN_QUANTIZED_LABELS = 4096  # below this the dense fp32 product is as fast: no int8 copy is built
_FORMAT = 1  # bump when the cache layout changes

_KERNEL: Any = None


def have_kernel() -> bool:
    """Whether the int8 kernel is available (numba installed); compiled on first call, cached on disk."""
    global _KERNEL
    if _KERNEL is None:
        try:
            _KERNEL = _compile_kernel()
        except ImportError:  # pragma: no cover - numba is a dependency; without it: dense fp32 (same results)
            log.warning("numba is not installed: large vocabularies are scored with the dense fp32 product")
            _KERNEL = False
    return _KERNEL is not False


def _compile_kernel() -> Any:
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True, boundscheck=False, nogil=True)
    def approx_kernel(q, scale, v, out):  # pragma: no cover - compiled
        # q (L, D) int8, scale (L,) f32, v (B, D) f32 -> out (B, L) f32 = scale_l * <q_l, v_b>.
        # fastmath lets LLVM reorder the sum (SIMD): its rounding is inside quantize_rows' bound.
        n, d = q.shape
        nb = v.shape[0]
        for i in numba.prange(n):
            for b in range(nb):
                acc = np.float32(0.0)
                for j in range(d):
                    acc += np.float32(q[i, j]) * v[b, j]
                out[b, i] = acc * scale[i]

    return approx_kernel


@dataclass
class Candidates:
    """Labels that may pass, with their exact fp32 scores: parallel (n,) arrays."""

    rows: np.ndarray  # video index b
    cols: np.ndarray  # label index ℓ
    logits: np.ndarray  # exact ⟨v_b, f_t(ℓ)⟩, float32


class LabelMatrix:
    """A vocabulary's (L, D) label embeddings for scoring, with an optional int8 pruning copy.

    Args:
        matrix: (L, D) float32 f_t(ℓ) (an array or a read-only memmap).
        q, scale, err: int8 (L, D) rows, (L,) scales and (L,) error bounds per unit ||v|| (see
            module doc); None = no int8 copy (small vocabularies, or numba missing): every decision
            uses the dense fp32 product.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        q: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        err: np.ndarray | None = None,
    ):
        if matrix.ndim != 2:
            raise ValueError(f"label matrix must be (L, D), got {matrix.shape}")
        self.matrix = matrix
        self.q, self.scale, self.err = q, scale, err

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)  # type: ignore[return-value]

    @property
    def quantized(self) -> bool:
        return self.q is not None and have_kernel()

    @classmethod
    def build(cls, matrix: np.ndarray, quantize: bool | None = None) -> LabelMatrix:
        """From a dense (L, D) float32 matrix; ``quantize=None``: when L >= MIN_QUANTIZED_LABELS."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if quantize is None:
            quantize = matrix.shape[0] >= MIN_QUANTIZED_LABELS
        if not quantize or matrix.shape[0] == 0 or not have_kernel():
            return cls(matrix)
        return cls(matrix, *quantize_rows(matrix))

    # ------------------------------------------------------------------ scoring
    def dense_logits(self, v: np.ndarray) -> np.ndarray:
        """Exact fp32 ⟨v_b, f_t(ℓ)⟩ for every label: (B, D) -> (B, L) (reads the whole matrix)."""
        import torch

        return torch.mm(torch.from_numpy(v), torch.from_numpy(np.asarray(self.matrix)).t()).numpy()

    def exact(self, rows: np.ndarray, cols: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Exact fp32 ⟨v_rows, f_t(cols)⟩ of some (video, label) pairs; reads only those rows."""
        if len(cols) == 0:
            return np.zeros(0, np.float32)
        uniq, inv = np.unique(cols, return_inverse=True)
        sub = np.ascontiguousarray(self.matrix[uniq], dtype=np.float32)  # (U, D): the only fp32 rows read
        full = v @ sub.T  # (B, D) @ (D, U) -> (B, U)
        return full[rows, inv].astype(np.float32)

    def bounds(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(approx (B, L), radius (B, L)): exact logit ∈ [approx - radius, approx + radius]."""
        if self.q is None or self.scale is None or self.err is None or not have_kernel():
            raise RuntimeError("bounds() needs the int8 copy and numba")
        approx = np.empty((v.shape[0], self.matrix.shape[0]), dtype=np.float32)
        _KERNEL(self.q, self.scale, v, approx)
        vnorm = np.linalg.norm(v.astype(np.float64), axis=1).astype(np.float32)  # (B,)
        return approx, vnorm[:, None] * self.err[None, :]  # (B, 1) * (1, L) -> (B, L)

    def candidates(self, v: np.ndarray, logit_thresholds: np.ndarray | None, top_k: int | None) -> Candidates:
        """Every (video, label) that can pass, with exact scores (see module doc).

        Args:
            v: (B, D) float32 video embeddings.
            logit_thresholds: (L,) thresholds on ⟨v, f_t⟩, or None (no threshold: top_k decides).
            top_k: with no threshold, the k best labels per video must be among the candidates.
        """
        v = np.ascontiguousarray(v, dtype=np.float32)
        n_labels = self.matrix.shape[0]
        if not self.quantized:
            logits = self.dense_logits(v)  # (B, L)
            if logit_thresholds is None:
                rows, cols = np.nonzero(np.ones_like(logits, dtype=bool))
            else:
                rows, cols = np.nonzero(logits >= logit_thresholds[None, :])
            return Candidates(rows, cols, logits[rows, cols])
        approx, radius = self.bounds(v)
        if logit_thresholds is not None:
            keep = approx >= logit_thresholds[None, :] - radius  # upper bound reaches the threshold
        elif top_k is None or top_k >= n_labels:
            keep = np.ones_like(approx, dtype=bool)
        else:
            lower = approx - radius
            kappa = -np.partition(-lower, top_k - 1, axis=1)[:, top_k - 1]  # (B,) k-th largest lower bound
            keep = approx + radius >= kappa[:, None]
        rows, cols = np.nonzero(keep)
        return Candidates(rows, cols, self.exact(rows, cols, v))


def quantize_rows(matrix: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 rows with per-row scale and each row's rigorous error bound per unit ||v||.

    Returns (q (L, D) int8, scale (L,) float32, err (L,) float32) with
    ``err_ℓ >= ||f_ℓ - scale_ℓ q_ℓ|| + float32 rounding of the kernel's D-term sum``.
    Computed in float32 chunks (the norms' own rounding is covered by a 1e-4 relative margin).
    """
    n, d = matrix.shape
    q = np.empty((n, d), dtype=np.int8)
    scale = np.empty(n, dtype=np.float32)
    err = np.empty(n, dtype=np.float32)
    u = 2.0**-24  # float32 unit roundoff
    for a in range(0, n, chunk):
        m = np.asarray(matrix[a : a + chunk], dtype=np.float32)
        amax = np.abs(m).max(axis=1)
        sc = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
        qc = np.clip(np.rint(m / sc[:, None]), -127, 127).astype(np.int8)
        recon = qc.astype(np.float32) * sc[:, None]  # (c, D): what the kernel sums against
        resid = np.linalg.norm(m - recon, axis=1)
        # a sum of D products in any order (fastmath) + the scale multiply: |rounding| <= ~(D + 2) u
        # ||scale q|| ||v||; doubled, plus a floor, for safety
        rounding = 2.0 * (d + 2) * u * np.linalg.norm(recon, axis=1) + 1e-7
        q[a : a + chunk], scale[a : a + chunk] = qc, sc
        err[a : a + chunk] = resid * np.float32(1 + 1e-4) + rounding
    return q, scale, err


# --------------------------------------------------------------------------------------------------
# Cache: memory-mapped .npy files keyed by (model version, vocabulary version)
# --------------------------------------------------------------------------------------------------
def _entry_dir(cache_dir: Path, model_key: str, vocab: str, vocab_version: str) -> Path:
    import hashlib

    safe = hashlib.sha256(f"{_FORMAT}|{model_key}|{vocab}|{vocab_version}".encode()).hexdigest()[:24]
    return cache_dir / safe


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ovc/label_matrix`` (``~/.cache/ovc/label_matrix``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovc" / "label_matrix"


def resolve_cache_dir(setting: str) -> Path | None:
    """``classify.label_cache_dir``: "" = :func:`default_cache_dir`, "off" = no cache, else that path."""
    if setting.strip().lower() == "off":
        return None
    return Path(setting).expanduser() if setting.strip() else default_cache_dir()


def save_entry(
    path: Path, labels: Sequence[str], kinds: Sequence[str | None], lm: LabelMatrix, meta: dict[str, Any]
) -> None:
    """Write a cache entry into a temp dir next to ``path`` and rename it into place (never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / "labels.json").write_text(
            json.dumps({"labels": list(labels), "kinds": list(kinds), **meta}, ensure_ascii=False)
        )
        np.save(tmp / "matrix.npy", np.ascontiguousarray(lm.matrix, dtype=np.float32))
        if lm.q is not None and lm.scale is not None and lm.err is not None:  # the int8 copy comes whole
            np.save(tmp / "q.npy", lm.q)
            np.save(tmp / "scale.npy", lm.scale)
            np.save(tmp / "err.npy", lm.err)
        try:
            os.rename(tmp, path)
        except OSError:  # another process wrote the same entry first: same content, keep theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_entry(path: Path) -> tuple[list[str], list[str | None], LabelMatrix] | None:
    """A cache entry, memory-mapped; None when absent or unreadable (then it is rebuilt)."""
    try:
        meta = json.loads((path / "labels.json").read_text())
        matrix = np.load(path / "matrix.npy", mmap_mode="r")
        q = scale = err = None
        if (path / "q.npy").exists():
            q = np.load(path / "q.npy", mmap_mode="r")
            scale = np.load(path / "scale.npy")
            err = np.load(path / "err.npy")
    except (OSError, ValueError) as e:
        log.warning("label-matrix cache entry %s unreadable (%s); rebuilding it", path, e)
        return None
    return meta["labels"], meta["kinds"], LabelMatrix(matrix, q, scale, err)


def load_cached(
    engine: Engine, vocab: str, model_version: ModelVersionInfo, cache_dir: str | os.PathLike | None
) -> tuple[list[str], list[str | None], LabelMatrix, str]:
    """(labels, kinds, LabelMatrix, vocabulary version) from the cache, or the registry + a new entry.

    The key is (registry URL, version name and digests, vocabulary, vocabulary version): the same
    version name in another registry, or a changed vocabulary, never hits a stale entry.

    Args:
        engine: registry.
        vocab: vocabulary name.
        model_version: the resolved version (its name and digests).
        cache_dir: where entries live; None or "" = no cache (load from the registry every time).

    Raises:
        NotFoundError: unknown vocabulary or labels without an embedding for the version.
    """
    from ovc.registry.collections import vocabulary_version
    from ovc.registry.store import load_embedding_matrix

    vv = vocabulary_version(engine, vocab)
    mv = model_version
    model_key = (
        f"{engine.url.render_as_string(hide_password=True)}|{mv.name}|{mv.checkpoint_digest}|{mv.encoder_digest}"
    )
    entry = _entry_dir(Path(cache_dir), model_key, vocab, vv) if cache_dir else None
    if entry is not None and entry.exists():
        got = load_entry(entry)
        if got is not None:
            return (*got, vv)
    labels, matrix, kinds = load_embedding_matrix(engine, vocab, mv.name)
    lm = LabelMatrix.build(matrix)
    if entry is not None:
        try:
            save_entry(
                entry, labels, kinds, lm, {"model_version": mv.name, "vocabulary": vocab, "vocabulary_version": vv}
            )
        except OSError as e:  # a read-only cache dir only costs speed
            log.warning("cannot write the label-matrix cache %s: %s", entry, e)
    return labels, kinds, lm, vv
