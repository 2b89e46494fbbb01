"""The Prefect flow ``classify-collection`` run for real (session ``prefect_harness``, local Ray):
a few synthetic-world clips and one unreadable file through the published fixture model."""

from __future__ import annotations

import os

import pytest

from tests.helpers import REPO_ROOT, flow_artifacts

pytestmark = pytest.mark.slow  # starts Ray


@pytest.fixture()
def ray_local():
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


def test_classify_collection_flow_writes_parquet_and_run_record(
    prefect_harness, published, published_model, registry_copy, tmp_path, ray_local
):
    import pandas as pd

    from flows.classify_collection import classify_collection
    from ovc.infer import Classifier
    from ovc.registry import make_engine
    from ovc.registry.runs import list_runs

    src = tmp_path / "videos"
    src.mkdir()
    videos = published.videos[:3]
    for v in videos:
        os.symlink(v, src / os.path.basename(v))
    (src / "zz_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    out = tmp_path / "preds"
    overrides = [
        *published.overrides,
        f"registry.url={registry_copy}",
        "predict.partition_size=2",
        "predict.workers=1",
        "predict.decode_tasks=1",
        "predict.num_cpus=2",
    ]

    state = classify_collection(
        source=str(src),
        vocab="train",
        output=str(out),
        threshold="0.0",
        overrides=overrides,
        project_dir=str(REPO_ROOT),
        return_state=True,
    )
    assert state.is_completed(), state
    summary = state.result()
    assert (summary["videos"], summary["classified"], summary["errors"]) == (4, 3, 1)
    assert (summary["partitions"], summary["partitions_written"], summary["partitions_skipped"]) == (2, 2, 0)
    assert (summary["model_version"], summary["threshold"]) == ("v1", "0.0")  # production = latest while none promoted

    # parquet: every label of every readable clip (threshold 0), scores as the single-process classifier's
    clf = Classifier.from_registry("v1", "train", registry_url=registry_copy, model=published_model)
    preds = pd.read_parquet(out / "predictions")
    assert list(preds.columns) == ["video", "label", "score"] and len(preds) == summary["rows"] == 3 * len(clf.labels)
    for r in clf.classify(sorted(str(src / os.path.basename(v)) for v in videos), threshold=0.0):
        got = preds[preds.video == r.video].set_index("label").score
        assert got.to_dict() == pytest.approx({x["label"]: x["score"] for x in r.labels}, abs=1e-5)
    errors = pd.read_parquet(out / "errors")
    assert errors.video.tolist() == [str(src / "zz_corrupt.mp4")] and "zz_corrupt.mp4" in errors.error[0]

    # the registry's run record and the flow's markdown artifact
    engine = make_engine(registry_copy)
    try:
        [run] = list_runs(engine)
    finally:
        engine.dispose()
    assert (run["run_id"], run["model_version"], run["vocabulary"], run["threshold"], run["status"]) == (
        summary["run_id"],
        "v1",
        "train",
        "0.0",
        "done",
    )
    assert run["vocabulary_version"] == summary["vocabulary_version"] and run["source"] == str(src)
    assert (run["counts"]["classified"], run["counts"]["errors"], run["counts"]["rows"]) == (3, 1, summary["rows"])
    [art] = flow_artifacts(state)
    assert summary["run_id"] in art.data and "3 classified, 1 unreadable of 4 videos" in art.data


def test_classify_collection_bad_settings_fail_at_once_without_retry(
    prefect_harness, published, registry_copy, tmp_path, monkeypatch
):
    """A threshold out of range (or 'none', or any PredictError) fails the run once, with the reason:
    retrying bad settings after a 10 s delay cannot help."""
    import ovc.infer.predict as P
    from flows.classify_collection import classify_collection

    calls = []
    real = P.predict
    monkeypatch.setattr(P, "predict", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    overrides = [*published.overrides, f"registry.url={registry_copy}"]
    kw = dict(
        source=published.videos[0],
        vocab="train",
        output=str(tmp_path / "out"),
        overrides=overrides,
        project_dir=str(REPO_ROOT),
        return_state=True,
    )
    state = classify_collection(threshold="5", **kw)
    assert state.is_failed() and calls == [1]
    with pytest.raises(P.PredictError, match="got 5"):
        state.result()
    state = classify_collection(threshold="none", **kw)
    assert state.is_failed() and calls == [1]
    with pytest.raises(ValueError, match="'calibrated' or a number"):
        state.result()
