"""Stage ``publish`` and loading published versions (paper §3 / Fig. 2b registry, §4.5 threshold)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_published import PUBLISH_THRESHOLD, make_trained_files, project_config, write_metrics

pytestmark = pytest.mark.slow  # builds a tiny project and loads MiniLM


def _clean_vocab(root: Path) -> dict[str, set[str]]:
    import pandas as pd

    from ovc.registry import normalize_label

    df = pd.read_parquet(root / "clean" / "vocabulary.parquet")
    return {v: {normalize_label(x) for x in g["label"]} for v, g in df.groupby("vocab")}


def test_publish_registers_version_embeddings_and_threshold(published):
    from ovc.registry import get_threshold, list_labels, list_model_versions, list_vocabularies, make_engine
    from ovc.registry.store import counts, sha256_file

    r = published.receipt
    assert r["model_version"] == "v1" and r["created"] is True
    assert r["checkpoint_digest"] == sha256_file(published.weights)
    assert json.loads((published.root / "publish" / "receipt.json").read_text())["model_version"] == "v1"

    engine = make_engine(published.url)
    [mv] = list_model_versions(engine)
    assert mv.checkpoint_digest == r["checkpoint_digest"] and mv.encoder_digest == r["encoder_digest"]
    assert mv.params["method"] == "ours" and mv.params["config"]["loss"]["tau"] == published.cfg.loss.tau
    assert mv.params["artifacts"]["dir"] == "registry_artifacts"  # stored relative to the registry file
    from ovc.registry import get_model_version

    arts = get_model_version(engine, "v1").params["artifacts"]  # resolved against the registry's location
    assert (Path(arts["dir"]) / arts["weights"]).is_file() and (Path(arts["dir"]) / arts["clip"]).is_dir()
    assert mv.metrics["calibrated_threshold"] == PUBLISH_THRESHOLD

    expected = _clean_vocab(published.root)
    assert {v.name: v.n_labels for v in list_vocabularies(engine)} == {k: len(v) for k, v in expected.items()}
    assert {s.text for s in list_labels(engine, "train")} == expected["train"]
    kinds = {s.kind for s in list_labels(engine, "train")}
    assert kinds <= {"entity", "action"} and kinds
    all_labels = set().union(*expected.values())
    assert counts(engine)["label_embeddings"] == len(all_labels) == r["labels_embedded"]
    assert get_threshold(engine, "v1") == pytest.approx(PUBLISH_THRESHOLD)
    assert get_threshold(engine, "v1", vocab="open_entities") == pytest.approx(PUBLISH_THRESHOLD)
    engine.dispose()


def test_republish_same_is_noop_changed_metrics_new_version_reusing_embeddings(published, tmp_path):
    from ovc.pipeline import run_stage
    from ovc.registry import list_model_versions, make_engine

    root = tmp_path / "p"
    shutil.copytree(published.root, root, ignore=shutil.ignore_patterns("registry_artifacts"))
    cfg = project_config(root, f"publish.artifacts_dir={published.root / 'registry_artifacts'}")
    make_trained_files(cfg)  # same seed -> byte-identical weights

    again = run_stage("publish", cfg)
    assert again["model_version"] == "v1" and again["created"] is False and again["encoded"] == 0
    # an evaluate-only param changed (DVC re-runs publish): identical inputs -> the existing version
    eval_only = project_config(
        root,
        f"publish.artifacts_dir={published.root / 'registry_artifacts'}",
        "evaluate.plot_points=51",
        "evaluate.batch_size=8",
    )
    same = run_stage("publish", eval_only)
    assert same["model_version"] == "v1" and same["created"] is False

    write_metrics(cfg, 0.55)  # re-evaluated: new threshold -> new version, same label encoder
    v2 = run_stage("publish", cfg)
    assert v2["model_version"] == "v2" and v2["created"] is True
    assert v2["encoded"] == 0 and v2["reused"] == v2["labels_embedded"] > 0
    engine = make_engine(f"sqlite:///{root / 'registry.db'}")
    assert [m.name for m in list_model_versions(engine)] == ["v1", "v2"]
    engine.dispose()


def test_publish_failure_mid_transaction_leaves_registry_unchanged(published, tmp_path, monkeypatch):
    from ovc.pipeline import run_stage
    from ovc.registry import make_engine, store
    from ovc.registry.store import counts, list_model_versions

    root = tmp_path / "p"
    shutil.copytree(published.root, root, ignore=shutil.ignore_patterns("registry_artifacts"))
    cfg = project_config(root, f"publish.artifacts_dir={published.root / 'registry_artifacts'}")
    make_trained_files(cfg, threshold=0.61)  # differs from v1: a new version would be created
    url = f"sqlite:///{root / 'registry.db'}"
    engine = make_engine(url)
    before = counts(engine)
    receipt_before = (root / "publish" / "receipt.json").read_text()

    def boom(*args, **kwargs):  # the threshold is the last write of the transaction
        raise RuntimeError("injected failure after the version, labels and embeddings were written")

    monkeypatch.setattr(store, "_set_threshold", boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_stage("publish", cfg)
    assert counts(engine) == before
    assert [m.name for m in list_model_versions(engine)] == ["v1"]
    assert (root / "publish" / "receipt.json").read_text() == receipt_before
    engine.dispose()


def test_publish_without_metrics_names_the_missing_file(tiny_project):
    from ovc.pipeline import run_stage
    from ovc.stages.publish import PublishError

    cfg = project_config(tiny_project)
    with pytest.raises(PublishError, match=r"metrics\.json.*ovc stage evaluate"):
        run_stage("publish", cfg)


def test_load_published_matches_stored_embeddings_and_embeds_videos(published, published_model, tmp_path):
    from ovc.registry import load_embedding_matrix, make_engine

    engine = make_engine(published.url)
    labels, matrix, _ = load_embedding_matrix(engine, "train", "v1")
    engine.dispose()
    again = published_model.encode_labels(labels[:5])
    assert again.dtype == np.float32 and again.shape == (5, published_model.embed_dim)
    np.testing.assert_allclose(again, matrix[:5], atol=1e-5)

    bad = tmp_path / "notes.mp4"
    bad.write_text("this is text, not a video")
    out = published_model.embed_videos([published.videos[0], str(bad), published.videos[1]], batch_size=2)
    assert out.embeddings.shape == (3, published_model.embed_dim)
    assert out.ok.tolist() == [True, False, True] and str(bad) in out.errors[1]
    assert np.isnan(out.embeddings[1]).all() and np.isfinite(out.embeddings[[0, 2]]).all()
    frames = published_model.read_video(published.videos[0])[None]  # (F, 3, H, W) -> (1, F, 3, H, W)
    np.testing.assert_allclose(published_model.embed_videos(frames).embeddings[0], out.embeddings[0], atol=1e-5)


def test_load_published_checks_weights_digest_and_missing_artifacts(published, tmp_path):
    from ovc.infer import DigestMismatchError, MissingArtifactError, load_published
    from ovc.registry import get_model_version, make_engine

    engine = make_engine(published.url)
    arts = get_model_version(engine, "v1").params["artifacts"]
    engine.dispose()
    moved = tmp_path / "arts"
    shutil.copytree(arts["dir"], moved)
    with open(moved / arts["weights"], "ab") as f:
        f.write(b"tampered")
    with pytest.raises(DigestMismatchError, match="weights .* sha256"):
        load_published("v1", published.url, artifacts_dir=moved, device="cpu")
    (moved / arts["weights"]).unlink()
    with pytest.raises(MissingArtifactError, match=r"weights artifact .*safetensors is missing.*ovc stage publish"):
        load_published("v1", published.url, artifacts_dir=moved, device="cpu")


def test_publish_and_reload_ours_synth_through_the_one_method_registry(published, tmp_path):
    """``ours_synth`` is built by the same factory at publish and at load (it used to be refused on load)."""
    from ovc.infer import load_published
    from ovc.pipeline import run_stage

    root = tmp_path / "p"
    shutil.copytree(published.root, root, ignore=shutil.ignore_patterns("registry_artifacts", "registry.db*"))
    cfg = project_config(root, "publish.method=ours_synth", "publish.embed_existing=false")
    make_trained_files(cfg, method_name="ours_synth")
    receipt = run_stage("publish", cfg)
    assert receipt["method"] == "ours_synth" and receipt["created"] is True
    model = load_published(receipt["model_version"], f"sqlite:///{root / 'registry.db'}", device="cpu")
    assert model.method.name == "ours_synth" and len(model.method.video_encoder.blocks) >= 1
    stored = model.method.state_dict_trainable()
    from ovc.models.methods import load_weights, run_dir

    for k, v in load_weights(run_dir(cfg, "ours_synth") / "final.safetensors").items():
        assert np.array_equal(stored[k].numpy(), v.numpy()), k


def test_moved_project_loads_its_published_model(published, tmp_path):
    """Artifacts are stored relative to the registry: copy a project, publish there, move it, load it."""
    from ovc.infer import load_published
    from ovc.pipeline import run_stage
    from ovc.registry import get_model_version, make_engine

    first = tmp_path / "first"
    shutil.copytree(published.root, first)
    engine = make_engine(f"sqlite:///{first / 'registry.db'}")
    copied = get_model_version(engine, "v1").params["artifacts"]["dir"]
    engine.dispose()
    assert Path(copied) == (first / "registry_artifacts").resolve()  # the copy's artifacts, not the original's

    write_metrics(project_config(first), 0.57)  # a new version, published inside the copy
    assert run_stage("publish", project_config(first))["model_version"] == "v2"
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), moved)  # the publish-time path is gone
    model = load_published("v2", f"sqlite:///{moved / 'registry.db'}", device="cpu")
    assert Path(model.info.params["artifacts"]["dir"]) == (moved / "registry_artifacts").resolve()
    assert model.encode_labels(["red car"]).shape == (1, model.embed_dim)
