"""Flows ``train-eval`` and ``vocab-refresh`` under the session-wide ``prefect_harness`` (tests/flows/conftest.py).

train-eval runs against a tiny DVC project whose stages (named like the real ones) are a few lines
of Python: the wiring, DVC's skip-if-unchanged, override -> params.yaml mapping, retries and the
markdown artifact are what is tested here (the real stages run in tests/test_prefect_integration.py).
vocab-refresh runs against a temporary SQLite registry with a small deterministic encoder.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import flows.train_eval as te
import flows.vocab_refresh as vr
from ovc.config import QUICK_OVERRIDES, ConfigError
from tests.helpers import flow_artifacts

# --------------------------------------------------------------------------------------------------
# A tiny DVC project
# --------------------------------------------------------------------------------------------------
FAKE_STAGE = r'''
"""Stand-in for `ovc stage NAME`: writes small outputs from params.yaml; logs each execution."""
import json, pathlib, sys, yaml
name = sys.argv[1]
params = yaml.safe_load(open("params.yaml"))
with open("runs.log", "a") as f:
    f.write(name + "\n")
data = pathlib.Path("data")
if name == "ingest" and pathlib.Path("fatal_ingest").exists():
    print("ingest: bad config (simulated)\nsecond line | with a pipe", file=sys.stderr)
    sys.exit(2)  # what `ovc stage` exits with on an OvcError: retrying cannot help
if name == "ingest":
    marker = pathlib.Path("flaky_ingest")  # present: fail once, like an unreachable remote source
    if marker.exists():
        marker.unlink()
        sys.exit("ingest: remote source unavailable (simulated)")
    (data / "raw").mkdir(parents=True, exist_ok=True)
    (data / "raw" / "world.json").write_text(json.dumps(params["world"]))
elif name == "clean":
    if pathlib.Path("break_clean").exists():
        sys.exit("clean: broken input (simulated)")
    world = json.loads((data / "raw" / "world.json").read_text())
    (data / "clean").mkdir(parents=True, exist_ok=True)
    (data / "clean" / "manifest.json").write_text(json.dumps({**world, **params["clean"]}))
elif name == "evaluate":
    clean = json.loads((data / "clean" / "manifest.json").read_text())
    plots = data / "eval" / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    (data / "eval" / "metrics.json").write_text(json.dumps({"ours": {"aupr_micro": 0.5}, "min_count": clean["min_count"]}))
    (data / "eval" / "results.md").write_text("| method | AUPR micro |\n|---|---:|\n| ours | 0.500 |\n")
    (plots / "f1_vs_threshold_ours.png").write_bytes(b"\x89PNG fake")
    (plots / "f1_threshold_val_ours.csv").write_text("threshold,f1\n0.5,0.5\n")
'''

FAKE_DVC_YAML = """\
stages:
  ingest:
    cmd: python stage.py ingest
    deps: [stage.py]
    params: [world]
    outs: [data/raw]
  clean:
    cmd: python stage.py clean
    deps: [stage.py, data/raw]
    params: [clean]
    outs: [data/clean]
  evaluate:
    cmd: python stage.py evaluate
    deps: [stage.py, data/clean]
    outs: [data/eval]
"""

FAKE_PARAMS = """\
# tiny params (a subset of the typed config)
world:
  n_train: 4  # clips
clean:
  min_count: 2  # drop rarer labels
  drop_verticals: [Games]  # verticals removed
"""


@pytest.fixture(scope="module")
def dvc_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvc_template")
    (root / "stage.py").write_text(FAKE_STAGE)
    (root / "dvc.yaml").write_text(FAKE_DVC_YAML)
    (root / "params.yaml").write_text(FAKE_PARAMS)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True, env=te.stage_env())
    return root


@pytest.fixture()
def dvc_project(dvc_template, tmp_path) -> Path:
    dst = tmp_path / "project"
    shutil.copytree(dvc_template, dst)
    return dst


def runs(project: Path) -> list[str]:
    log = project / "runs.log"
    return log.read_text().split() if log.exists() else []


# --------------------------------------------------------------------------------------------------
# train-eval: helpers (no server)
# --------------------------------------------------------------------------------------------------
def test_resolve_overrides_quick_first_and_paths_rejected():
    assert te.resolve_overrides(None) == []
    got = te.resolve_overrides(["train.epochs=3"], quick=True)
    assert got[: len(QUICK_OVERRIDES)] == QUICK_OVERRIDES and got[-1] == "train.epochs=3"  # caller wins
    with pytest.raises(ValueError, match="paths.data"):
        te.resolve_overrides(["paths.data=/elsewhere"])


def test_write_params_keeps_comments_and_validates(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(FAKE_PARAMS)
    assert te.write_params(params, []) is False
    assert te.write_params(params, ["clean.min_count=7", "clean.drop_verticals=[Games, Shapes]"]) is True
    text = params.read_text()
    assert "min_count: 7  # drop rarer labels" in text
    assert re.search(r"drop_verticals: \[Games, Shapes\] +# verticals removed", text)
    assert text.startswith("# tiny params")
    assert te.write_params(params, ["clean.min_count=7"]) is False  # same value: file untouched
    with pytest.raises(ConfigError, match="min_count"):
        te.write_params(params, ["clean.min_count=lots"])
    with pytest.raises(ConfigError, match="nope"):
        te.write_params(params, ["clean.nope=1"])
    assert "min_count: 7" in params.read_text()  # a rejected override leaves the file as it was


def test_parse_dvc_status():
    out = (
        "Stage 'ingest' didn't change, skipping\n"
        "Running stage 'clean':\n> ovc stage clean\n"
        "Stage 'train' is cached - skipping run, checking out outputs\n"
    )
    assert te.parse_dvc_status(out) == {"ingest": "skipped", "clean": "ran", "train": "restored"}


def test_pipeline_stages_follow_stages_order(tmp_path, repo_root):
    (tmp_path / "dvc.yaml").write_text("stages:\n  evaluate: {cmd: x}\n  extra: {cmd: y}\n  ingest: {cmd: z}\n")
    assert te.pipeline_stages(tmp_path) == ["ingest", "evaluate", "extra"]
    real = te.pipeline_stages(repo_root)
    from ovc.pipeline import STAGES

    assert real == [s for s in STAGES if s in real][: len(real)]
    with pytest.raises(FileNotFoundError, match="dvc.yaml"):
        te.pipeline_stages(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------
# train-eval: flow runs
# --------------------------------------------------------------------------------------------------
def test_train_eval_skips_unchanged_stages_and_reports(prefect_harness, dvc_project):
    first = te.train_eval(project_dir=str(dvc_project))
    assert [r["stage"] for r in first["stages"]] == ["ingest", "clean", "evaluate"]
    assert [r["status"] for r in first["stages"]] == ["ran", "ran", "ran"]
    assert runs(dvc_project) == ["ingest", "clean", "evaluate"]
    assert first["metrics"]["min_count"] == 2
    assert "| ours | 0.500 |" in first["results_md"]
    assert [Path(p).name for p in first["plots"]] == ["f1_vs_threshold_ours.png"]
    assert (dvc_project / "dvc.lock").exists()
    metrics_mtime = (dvc_project / "data/eval/metrics.json").stat().st_mtime_ns

    # same params: DVC's lock says nothing changed -> no stage recomputes
    state = te.train_eval(project_dir=str(dvc_project), return_state=True)
    second = state.result()
    assert [r["status"] for r in second["stages"]] == ["skipped", "skipped", "skipped"]
    assert runs(dvc_project) == ["ingest", "clean", "evaluate"]
    assert (dvc_project / "data/eval/metrics.json").stat().st_mtime_ns == metrics_mtime

    (artifact,) = flow_artifacts(state)
    assert artifact.key == te.ARTIFACT_KEY and artifact.type == "markdown"
    md = artifact.data
    assert "| ingest | skipped |" in md and "| evaluate | skipped |" in md
    assert "| ours | 0.500 |" in md  # the results table of data/eval/results.md
    assert str(dvc_project / "data" / "eval" / "plots") in md and "f1_vs_threshold_ours.png" in md

    # a flow parameter -> params.yaml override: only the stages that depend on it re-run
    third = te.train_eval(project_dir=str(dvc_project), overrides=["clean.min_count=3"])
    assert [r["status"] for r in third["stages"]] == ["skipped", "ran", "ran"]
    assert third["params_changed"] is True and third["overrides"] == ["clean.min_count=3"]
    assert runs(dvc_project)[3:] == ["clean", "evaluate"]
    assert third["metrics"]["min_count"] == 3
    # the override does not outlive its run: params.yaml is back; the run's effective params are recorded
    assert (dvc_project / "params.yaml").read_text() == FAKE_PARAMS
    effective = Path(third["effective_params"]).read_text()
    assert "min_count: 3" in effective and "clean.min_count=3" in effective
    fourth = te.train_eval(project_dir=str(dvc_project))  # a plain re-run uses params.yaml again
    assert [r["status"] for r in fourth["stages"]] == ["skipped", "restored", "restored"]  # DVC run-cache
    assert fourth["metrics"]["min_count"] == 2


def test_train_eval_retries_transient_stage(prefect_harness, dvc_project, monkeypatch):
    monkeypatch.setattr(te, "RETRY_BACKOFF_S", 0.05)
    (dvc_project / "flaky_ingest").touch()  # ingest fails once, then succeeds
    result = te.train_eval(project_dir=str(dvc_project), stages=["ingest"])
    assert [r["status"] for r in result["stages"]] == ["ran"]
    assert runs(dvc_project) == ["ingest", "ingest"]


def test_train_eval_failed_stage_fails_the_run(prefect_harness, dvc_project):
    (dvc_project / "break_clean").touch()
    state = te.train_eval(project_dir=str(dvc_project), overrides=["clean.min_count=4"], return_state=True)
    assert state.is_failed()
    with pytest.raises(te.StageFailed, match="clean: broken input"):
        state.result()
    assert runs(dvc_project) == ["ingest", "clean"]  # no retries for clean, evaluate never started
    assert (dvc_project / "params.yaml").read_text() == FAKE_PARAMS  # a failed run's override is gone too
    (artifact,) = flow_artifacts(state)  # a failed run still writes its report
    assert "| ingest | ran |" in artifact.data and "| clean | failed: dvc repro clean failed" in artifact.data


def test_train_eval_does_not_retry_deterministic_errors(prefect_harness, dvc_project, monkeypatch):
    monkeypatch.setattr(te, "RETRY_BACKOFF_S", 0.05)
    (dvc_project / "fatal_ingest").touch()  # exits 2 (an OvcError): the same run would fail the same way
    state = te.train_eval(project_dir=str(dvc_project), stages=["ingest"], return_state=True)
    assert state.is_failed()
    with pytest.raises(te.StageFailed) as info:
        state.result()
    assert info.value.retryable is False and "exited with 2" in str(info.value)
    assert runs(dvc_project) == ["ingest"]  # ran once: no retry
    (artifact,) = flow_artifacts(state)
    rows = [ln for ln in artifact.data.splitlines() if ln.startswith("| ingest |")]
    assert len(rows) == 1 and rows[0].endswith("| – |")  # the multi-line error stays in its row
    assert "second line \\| with a pipe" in rows[0]


def test_killed_run_overrides_are_undone_by_the_next_run(prefect_harness, dvc_project):
    params = dvc_project / "params.yaml"
    assert te.apply_run_overrides(params, ["clean.min_count=9"]) is True  # ... and the run dies here
    assert "min_count: 9" in params.read_text()
    result = te.train_eval(project_dir=str(dvc_project), stages=["ingest", "clean"])
    assert params.read_text() == FAKE_PARAMS
    assert "min_count: 2" in Path(result["effective_params"]).read_text()


def test_train_eval_rejects_bad_parameters(prefect_harness, dvc_project):
    with pytest.raises(ValueError, match="unknown stage"):
        te.train_eval(project_dir=str(dvc_project), stages=["nope"])
    with pytest.raises(ConfigError, match="epochz"):
        te.train_eval(project_dir=str(dvc_project), overrides=["train.epochz=1"])
    assert runs(dvc_project) == []


# --------------------------------------------------------------------------------------------------
# vocab-refresh
# --------------------------------------------------------------------------------------------------
DIM = 8


class FakePublished:
    """Stands in for ovc.infer.PublishedModel: deterministic unit vectors from the label text."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def encode_labels(self, labels):
        with self.lock:
            self.calls.append(list(labels))
        rows = []
        for text in labels:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)  # (n, DIM)


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    """A temp SQLite registry, a fake published model loader and a vocabulary directory."""
    from ovc.registry import open_registry

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    fake = FakePublished()
    loads: list[tuple[str, str]] = []

    def fake_load(model_version="latest", registry_url=None, **_):
        loads.append((model_version, registry_url))
        return fake

    monkeypatch.setattr(vr, "load_published", fake_load)
    vr._ENCODERS.clear()
    source = tmp_path / "vocabularies"
    source.mkdir()
    engine = open_registry(url=url)
    yield {"url": url, "engine": engine, "fake": fake, "loads": loads, "source": source}
    engine.dispose()
    vr._ENCODERS.clear()


def publish_fake(engine, name="v1"):
    from ovc.registry import publish_model_version

    return publish_model_version(engine, name, "0" * 64, encoder_digest="1" * 64, embed_dim=DIM)


def embedded(engine, vocab, version="latest") -> list[str]:
    from ovc.registry import load_embedding_matrix

    labels, matrix, _ = load_embedding_matrix(engine, vocab, model_version=version)
    assert matrix.shape == (len(labels), DIM)
    return sorted(labels)


def refresh(reg, **kw):
    vr._ENCODERS.clear()  # each flow run is a fresh process under a worker
    return vr.vocab_refresh(source_dir=str(reg["source"]), registry_url=reg["url"], **kw)


def test_vocab_refresh_incremental_and_idempotent(prefect_harness, registry):
    from ovc.registry import counts

    publish_fake(registry["engine"])
    (registry["source"] / "retail.txt").write_text("# shop labels\nRed Car\nrunning\tACTION\n\nblue  bag\n")
    (registry["source"] / "sports.txt").write_text("ball\n")

    first = refresh(registry)
    assert first["model_version"] == "v1"
    assert first["vocabularies"]["retail"]["encoded"] == 3 and first["vocabularies"]["sports"]["encoded"] == 1
    assert embedded(registry["engine"], "retail") == ["blue bag", "red car", "running"]
    assert len(registry["loads"]) == 1

    # nothing changed: nothing encoded, the model is not even loaded
    state = refresh(registry, return_state=True)
    second = state.result()
    assert {v: r["encoded"] for v, r in second["vocabularies"].items()} == {"retail": 0, "sports": 0}
    assert second["vocabularies"]["retail"]["already_present"] == 3
    assert len(registry["loads"]) == 1
    (artifact,) = flow_artifacts(state)
    assert artifact.key == vr.ARTIFACT_KEY and "| retail | 3 | 0 | 0 |" in artifact.data

    # a new line and a changed line: only those two are encoded
    (registry["source"] / "retail.txt").write_text("Red Car\nrunning\tACTION\nblue handbag\ngreen kite\n")
    third = refresh(registry, prune=True)
    r = third["vocabularies"]["retail"]
    assert (r["added"], r["encoded"], r["removed"]) == (2, 2, 1)
    assert embedded(registry["engine"], "retail") == ["blue handbag", "green kite", "red car", "running"]
    assert registry["fake"].calls[-1] == ["blue handbag", "green kite"]
    assert (
        counts(registry["engine"])["label_embeddings"] == 6
    )  # blue bag's embedding kept (label pruned from vocab only)


def test_vocab_refresh_before_publish_then_after(prefect_harness, registry):
    from ovc.registry import list_labels

    (registry["source"] / "retail.txt").write_text("red car\nblue bag\n")
    before = refresh(registry)
    assert before["model_version"] is None
    assert before["vocabularies"]["retail"]["added"] == 2 and before["vocabularies"]["retail"]["encoded"] == 0
    assert [s.text for s in list_labels(registry["engine"], "retail")] == ["blue bag", "red car"]
    publish_fake(registry["engine"])
    after = refresh(registry)
    assert after["vocabularies"]["retail"]["encoded"] == 2
    assert embedded(registry["engine"], "retail") == ["blue bag", "red car"]


def test_vocab_refresh_reports_bad_input_and_goes_on(prefect_harness, registry):
    publish_fake(registry["engine"])
    (registry["source"] / "good.txt").write_text("red car\n")
    (registry["source"] / "messy.txt").write_bytes(b"ok label\n\xff\xfe bad bytes\n" + b"x" * 300 + b"\nok label\n")
    unreadable = registry["source"] / "locked.txt"
    unreadable.mkdir()  # a directory named like a vocabulary file is skipped by find_sources
    (registry["source"] / "broken.txt").symlink_to(registry["source"] / "missing-target.txt")

    result = refresh(registry)
    assert result["vocabularies"]["good"]["encoded"] == 1
    messy = result["vocabularies"]["messy"]
    assert messy["labels"] == 1 and len(messy["issues"]) == 3  # bad UTF-8, too long, duplicate
    assert "line 2" in messy["issues"][0]
    assert "locked" not in result["vocabularies"] and "locked" not in result["skipped"]
    assert "cannot read vocabulary file" in result["skipped"]["broken"]
    assert result["failed"] == {}


def test_vocab_refresh_two_overlapping_runs(prefect_harness, registry):
    from ovc.registry import counts, list_labels

    publish_fake(registry["engine"])
    labels = [f"label {i}" for i in range(60)]
    for v in ("alpha", "beta", "gamma"):
        (registry["source"] / f"{v}.txt").write_text("\n".join(labels) + "\n")
    vr._ENCODERS.clear()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(vr.vocab_refresh(source_dir=str(registry["source"]), registry_url=registry["url"]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and len(results) == 2
    c = counts(registry["engine"])
    assert c["labels"] == 60 and c["label_embeddings"] == 60 and c["vocabulary_labels"] == 180
    for v in ("alpha", "beta", "gamma"):
        assert len(list_labels(registry["engine"], v)) == 60
        assert len(embedded(registry["engine"], v)) == 60
    added = sum(r["vocabularies"][v]["added"] for r in results for v in ("alpha", "beta", "gamma"))
    assert added == 180  # every link made exactly once across the two runs
    # and a third run finds nothing to do
    assert all(r["encoded"] == 0 for r in refresh(registry)["vocabularies"].values())


# --------------------------------------------------------------------------------------------------
# Deployments (built, not applied: no server needed)
# --------------------------------------------------------------------------------------------------
def test_deployments_definitions(repo_root):
    from flows.deployments import REFRESH_CRON, build_deployments

    train, refresh_, collection = build_deployments(repo_root)
    assert (collection.flow_name, collection.name) == ("classify-collection", "on-demand")
    assert collection.entrypoint == "flows/classify_collection.py:classify_collection"
    assert set(collection._parameter_openapi_schema.properties) >= {"source", "vocab", "output"}
    assert set(collection._parameter_openapi_schema.required) == {"source", "vocab", "output"}
    assert (train.flow_name, train.name) == ("train-eval", "default")
    assert (refresh_.flow_name, refresh_.name) == ("vocab-refresh", "hourly")
    assert train.entrypoint == "flows/train_eval.py:train_eval"
    assert refresh_.entrypoint == "flows/vocab_refresh.py:vocab_refresh"
    assert train.schedules in (None, []) and train.concurrency_limit == 1
    (sched,) = refresh_.schedules
    assert sched.schedule.cron == REFRESH_CRON
    assert train.job_variables["env"]["DO_NOT_TRACK"] == "1"
    assert train.job_variables["env"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert set(train._parameter_openapi_schema.properties) >= {"overrides", "quick", "project_dir"}

    (fast,) = build_deployments(repo_root, refresh_interval=5)[1].schedules
    assert fast.schedule.interval.total_seconds() == 5


def test_vocab_refresh_with_nothing_new_writes_nothing_and_works_read_only(prefect_harness, registry):
    from sqlalchemy import event

    publish_fake(registry["engine"])
    (registry["source"] / "retail.txt").write_text("red car\nblue bag\n")
    refresh(registry)
    # the same files against a read-only view of the registry: nothing to add, so nothing is written
    ro = dict(registry, url=f"sqlite:///file:{registry['url'].removeprefix('sqlite:///')}?mode=ro&uri=true")
    again = refresh(ro)
    assert again["failed"] == {} and again["vocabularies"]["retail"]["added"] == 0
    statements: list[str] = []
    event.listen(registry["engine"], "before_cursor_execute", lambda *a: statements.append(a[2].split()[0].upper()))
    from ovc.registry import add_labels

    add_labels(registry["engine"], "retail", ["red car", "blue bag"], model_version="v1")
    assert not {"INSERT", "UPDATE", "DELETE"} & set(statements)
    # something new on the read-only registry: that vocabulary fails (not retried), with the reason
    (registry["source"] / "retail.txt").write_text("red car\nblue bag\ngreen hat\n")
    state = refresh(ro, return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="ReadOnlyRegistryError"):
        state.result()
