"""``ovc bench vocab_add``: grow a vocabulary by 10k and 100k labels in one call, fresh and repeated.

The label encoder is a cheap deterministic fake (a hash-seeded random unit vector per label): the
figure is the registry's own cost (validation, the read-only plan, the batched write transactions),
not the model's — ``ovc bench label_encoder`` measures the model. Goal (issue 16): re-adding 100k
labels that are all present already (nothing to do, nothing written) takes <= 10 s.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def fake_encoder(dim: int = 512):
    """``encode_fn`` returning a deterministic unit vector per label (sha256-seeded), (n, dim) float32."""

    def encode(labels: list[str]) -> np.ndarray:
        out = np.empty((len(labels), dim), dtype=np.float32)
        for i, text in enumerate(labels):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(dim, dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    return encode


def bench_vocab_add(quick: bool = False) -> dict[str, Any]:
    """``add_labels`` of N labels into a file SQLite registry: fresh (all encoded), then again (no-op)."""
    from ovc.registry.db import open_registry
    from ovc.registry.store import add_labels, counts, publish_model_version

    sizes = (1_000, 10_000) if quick else (10_000, 100_000)
    dim = 512
    encode = fake_encoder(dim)
    cases: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="ovc-bench-vocab-"))
    try:
        for n in sizes:
            engine = open_registry(url=f"sqlite:///{tmp / f'registry-{n}.db'}")
            publish_model_version(engine, "bench", "0" * 64, encoder_digest="1" * 64, embed_dim=dim)
            labels = [f"label number {i:07d}" for i in range(n)]
            t0 = time.perf_counter()
            fresh = add_labels(engine, "big", labels, encode, batch_size=1024)
            t_fresh = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = add_labels(engine, "big", labels, encode, batch_size=1024)
            t_again = time.perf_counter() - t0
            t0 = time.perf_counter()
            encode(labels[: min(n, 10_000)])
            t_encode = (time.perf_counter() - t0) * n / min(n, 10_000)
            c = counts(engine)
            assert c["vocabulary_labels"] == n and c["label_embeddings"] == n, c
            assert (again.added, again.encoded) == (0, 0) and fresh.added == n
            cases[f"fresh_{n}"] = {
                "labels": n,
                "seconds": round(t_fresh, 3),
                "encoded": fresh.encoded,
                "fake_encoder_seconds": round(t_encode, 3),
                "registry_seconds": round(t_fresh - t_encode, 3),
            }
            cases[f"repeat_{n}"] = {
                "labels": n,
                "seconds": round(t_again, 3),
                "encoded": again.encoded,
                "already_present": again.already_present,
            }
            engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    big = max(sizes)
    return {
        "cases": cases,
        "repeat_seconds_largest": cases[f"repeat_{big}"]["seconds"],
        "goal_repeat_100k_seconds": 10.0,
        "ratio_repeat_vs_fresh_largest": round(cases[f"repeat_{big}"]["seconds"] / cases[f"fresh_{big}"]["seconds"], 3),
        "dim": dim,
    }
