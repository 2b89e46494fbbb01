"""``ovc predict`` on Ray Data: parquet partitions, errors table, run record, resume."""

from __future__ import annotations

import json
import os
import shutil

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


def test_predict_partitions_errors_run_record_and_resume(
    published, published_model, registry_copy, tmp_path, ray_local
):
    import pandas as pd
    from typer.testing import CliRunner

    from ovc.cli import app
    from ovc.infer import Classifier
    from ovc.registry import make_engine
    from ovc.registry.runs import list_runs

    src = tmp_path / "videos"
    src.mkdir()
    videos = published.videos[:9]
    for v in videos:
        os.symlink(v, src / os.path.basename(v))
    (src / "zz_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "preds"
    sets = [a for o in published.overrides for a in ("-S", o)]
    args = [
        "predict",
        str(src),
        "--vocab",
        "train",
        "--out",
        str(out),
        "--registry",
        registry_copy,
        "--json",
        "--no-progress",
        "--top-k",
        "3",
        "--threshold",
        "none",
        *sets,
        "-S",
        "predict.partition_size=4",
        "-S",
        "predict.workers=1",
        "-S",
        "predict.decode_tasks=1",
        "-S",
        "predict.num_cpus=2",
    ]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["videos"], summary["classified"], summary["errors"]) == (10, 9, 1)
    assert (summary["partitions"], summary["partitions_written"], summary["partitions_skipped"]) == (3, 3, 0)

    preds = pd.read_parquet(out / "predictions")
    assert list(preds.columns) == ["video", "label", "score"] and len(preds) == 27 == summary["rows"]
    clf = Classifier.from_registry("v1", "train", registry_url=registry_copy, model=published_model)
    for r in clf.classify(sorted(str(src / os.path.basename(v)) for v in videos), top_k=3, threshold=None):
        got = preds[preds.video == r.video].sort_values("score", ascending=False)
        assert got.label.tolist() == [x["label"] for x in r.labels]
        assert got.score.tolist() == pytest.approx([x["score"] for x in r.labels], abs=1e-5)
    errors = pd.read_parquet(out / "errors")
    assert errors.video.tolist() == [str(src / "zz_corrupt.mp4")] and "zz_corrupt.mp4" in errors.error[0]

    engine = make_engine(registry_copy)
    [run] = list_runs(engine)
    assert (run["model_version"], run["vocabulary"], run["threshold"], run["status"]) == ("v1", "train", "none", "done")
    assert run["counts"]["errors"] == 1 and run["counts"]["classified"] == 9 and run["vocabulary_version"]

    # resume: nothing to do; then one partition lost -> only it is redone
    again = json.loads(CliRunner().invoke(app, args, catch_exceptions=False).stdout)
    assert (again["partitions_written"], again["partitions_skipped"]) == (0, 3)
    lost = sorted((out / "predictions").glob("part-00001-*.parquet"))
    lost[0].unlink()
    # a partition of an earlier listing of the source (e.g. a video since removed): deleted once the run is complete
    for sub in ("predictions", "errors"):
        shutil.copy(next((out / sub).glob("part-00000-*.parquet")), out / sub / "part-00003-000000000000.parquet")
    third = json.loads(CliRunner().invoke(app, args, catch_exceptions=False).stdout)
    assert (third["partitions_written"], third["partitions_skipped"], third["classified"]) == (1, 2, 4)
    assert third["partitions_removed"] == 1 and not list(out.rglob("part-00003-*"))
    assert len(pd.read_parquet(out / "predictions")) == 27

    # a resume with other settings is refused: skipped partitions would mix two thresholds in one table
    other = [a if a != "none" else "0.5" for a in args]
    refused = CliRunner().invoke(app, other, catch_exceptions=False)
    assert refused.exit_code == 2 and "threshold 'none' (this run: '0.5')" in refused.stderr
    assert json.loads((out / "settings.json").read_text())["threshold"] == "none"
    assert [r["status"] for r in list_runs(engine)] == ["done"] * 3
    engine.dispose()
    assert not list(out.rglob(".*tmp*"))

    # windowed: label intervals with start/end (a .txt manifest of 2 clips of 2 s, 1 s windows every 0.5 s)
    seg_out = tmp_path / "segs"
    (tmp_path / "two.txt").write_text(
        "# two clips\n" + "\n".join(f"videos/{os.path.basename(v)}" for v in videos[:2]) + "\n"
    )
    seg_args = [
        "predict",
        str(tmp_path / "two.txt"),
        "--vocab",
        "train",
        "--out",
        str(seg_out),
        "--registry",
        registry_copy,
        "--json",
        "--no-progress",
        "--segments",
        "--threshold",
        "0.3",
        *sets,
        "-S",
        "predict.workers=1",
        "-S",
        "predict.decode_tasks=1",
        "-S",
        "segments.window_s=1",
        "-S",
        "segments.stride_s=0.5",
    ]
    seg = CliRunner().invoke(app, seg_args, catch_exceptions=False)
    assert seg.exit_code == 0, seg.output
    assert json.loads(seg.stdout)["classified"] == 2
    intervals = pd.read_parquet(seg_out / "predictions")
    assert list(intervals.columns) == ["video", "label", "score", "start", "end"] and len(intervals)
    assert ((intervals.start >= 0) & (intervals.start < intervals.end) & (intervals.end <= 2.01)).all()
    assert (intervals.score >= 0.3).all()
