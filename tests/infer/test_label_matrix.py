"""Scoring at vocabulary scale: int8 pruning + exact fp32 rescoring decides exactly like fp32 scoring."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ovc.infer.label_matrix import LabelMatrix, load_entry, quantize_rows, save_entry

N, D = 20_000, 64


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """Random unit labels with planted near-ties: videos whose best labels differ by 1e-5..1e-4 in logit."""
    rng = np.random.default_rng(7)
    m = _unit(rng.standard_normal((N, D)))
    videos = _unit(rng.standard_normal((6, D)))
    for b, v in enumerate(videos):
        # 12 labels at logits 0.9 + k * 2e-5 (inside the int8 error bound of ~0.01: near-ties for the
        # pruning stage), plus an exact duplicate of the best of them
        base = rng.standard_normal(D).astype(np.float32)
        base -= base @ v * v
        base = _unit(base)
        for k in range(12):
            cos = 0.9 + (k * 2e-5 if b % 2 == 0 else k * 1e-4)
            m[100 * b + k] = _unit(cos * v + np.sqrt(1 - cos**2) * base)
        m[100 * b + 50] = m[100 * b + 11]
    return m, videos


def _classifiers(m: np.ndarray, tau: float = 0.07):
    from ovc.infer.classifier import Classifier

    stub = SimpleNamespace(embed_dim=D, tau=tau, name="t", device="cpu")
    labels = [f"l{i:05d}" for i in range(len(m))]
    fast = Classifier(stub, "v", labels, LabelMatrix.build(m, quantize=True))
    exact = Classifier(stub, "v", labels, LabelMatrix.build(m, quantize=False))
    assert fast.scorer.quantized and not exact.scorer.quantized
    return fast, exact


def test_quantization_error_bound_holds(data):
    m, videos = data
    q, scale, err = quantize_rows(m)
    lm = LabelMatrix(m, q, scale, err)
    approx, radius = lm.bounds(videos)
    exact = videos.astype(np.float64) @ m.T.astype(np.float64)
    assert (np.abs(exact - approx) <= radius).all()
    assert radius.max() < 0.02  # tight enough to prune (random unit rows, D=64)


@pytest.mark.parametrize("top_k,threshold", [(10, None), (1, None), (5, "calibrated"), (None, 0.999), (3, 0.9999)])
def test_pruned_decisions_equal_exact_fp32(data, top_k, threshold):
    m, videos = data
    fast, exact = _classifiers(m)
    # the calibrated per-label threshold sits between planted near-ties
    thr = np.full(len(m), 0.99, dtype=np.float32)
    fast.calibrated = exact.calibrated = thr
    got = fast.classify_embeddings(videos, top_k=top_k, threshold=threshold)
    want = exact.classify_embeddings(videos, top_k=top_k, threshold=threshold)
    assert [[x["label"] for x in r] for r in got] == [[x["label"] for x in r] for r in want]
    for g, w in zip(got, want):
        assert [x["score"] for x in g] == pytest.approx([x["score"] for x in w], abs=1e-6)
    assert any(len(r) for r in want)


def test_threshold_between_near_ties_and_pruning_reads_few_rows(data):
    m, videos = data
    fast, exact = _classifiers(m, tau=1.0)  # τ = 1: σ is not saturated, 2e-5 apart in s is apart in p
    v = videos[:1]
    logits = (v @ m.T)[0]
    best = np.sort(logits)[::-1]
    # a probability threshold exactly between two planted logits 2e-5 apart
    t = float(1 / (1 + np.exp(-(best[3] + best[4]) / 2)))
    got = [x["label"] for x in fast.classify_embeddings(v, threshold=t)[0]]
    assert got == [x["label"] for x in exact.classify_embeddings(v, threshold=t)[0]]
    assert len(got) == 4
    c = fast.scorer.candidates(v, None, 10)
    assert 10 <= len(c.cols) < len(m) // 100  # only a handful of fp32 rows rescored


def test_cache_entry_roundtrip_is_memory_mapped(data, tmp_path):
    m, _ = data
    lm = LabelMatrix.build(m, quantize=True)
    entry = tmp_path / "entry"
    save_entry(entry, ["a"] * len(m), [None] * len(m), lm, {"vocabulary": "v"})
    labels, kinds, got = load_entry(entry)
    assert isinstance(got.matrix, np.memmap) and isinstance(got.q, np.memmap)
    assert np.array_equal(np.asarray(got.matrix), m) and np.array_equal(np.asarray(got.q), lm.q)
    assert len(labels) == len(m) and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert load_entry(tmp_path / "missing") is None


@pytest.mark.slow
def test_classifier_reads_the_cache_and_a_changed_vocabulary_gets_a_new_entry(
    published, published_model, registry_copy, tmp_path
):
    import dataclasses

    from ovc.infer.classifier import Classifier
    from ovc.registry import add_labels, make_engine

    cfg = dataclasses.replace(
        published.cfg, classify=dataclasses.replace(published.cfg.classify, label_cache_dir=str(tmp_path / "c"))
    )
    engine = make_engine(registry_copy)
    first = Classifier.from_registry("v1", "train", engine=engine, model=published_model, cfg=cfg)
    assert not isinstance(first.scorer.matrix, np.memmap)  # built from the registry, then cached
    again = Classifier.from_registry("v1", "train", engine=engine, model=published_model, cfg=cfg)
    assert isinstance(again.scorer.matrix, np.memmap) and again.labels == first.labels
    assert again.vocab_version == first.vocab_version and len(list((tmp_path / "c").iterdir())) == 1
    add_labels(engine, "train", ["zebra crossing"], published_model.encode_labels, "v1")
    grown = Classifier.from_registry("v1", "train", engine=engine, model=published_model, cfg=cfg)
    engine.dispose()
    assert grown.vocab_version != first.vocab_version and "zebra crossing" in grown.labels
    assert len(list((tmp_path / "c").iterdir())) == 2
