"""The registry under scale, faults and hostile input (issue 16): linear planning outside the lock,
short batched transactions, readers that never wait for a writer, no registry created on a read path,
bad label arguments, read-only registries, one-line errors with exit 2.

Fast: a fake encoder, SQLite files under tmp_path, the CLI in-process (no model is loaded).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading

import numpy as np
import pytest
from sqlalchemy import event
from typer.testing import CliRunner

from ovc.cli import app
from ovc.registry import db, store

DIM = 8
CKPT = hashlib.sha256(b"ckpt").hexdigest()
ENC = hashlib.sha256(b"encoder").hexdigest()


def fake_encode(labels: list[str]) -> np.ndarray:
    out = np.stack(
        [
            np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little"))
            .standard_normal(DIM)
            .astype(np.float32)
            for t in labels
        ]
    )
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def reg(tmp_path):
    """A migrated SQLite registry with one published (label-less) model version."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = db.open_registry(url=url)
    store.publish_model_version(engine, "v1", CKPT, encoder_digest=ENC, embed_dim=DIM)
    yield url, engine
    engine.dispose()


class StatementLog:
    """Counts the SQL statements an engine runs (and which of them write)."""

    def __init__(self, engine):
        self.statements: list[str] = []
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        self.statements.append(statement.strip().split()[0].upper() + " " + " ".join(statement.split()[1:3]))

    def writes(self) -> list[str]:
        return [
            s
            for s in self.statements
            if s.split()[0] in ("INSERT", "UPDATE", "DELETE", "BEGIN") and not s.startswith("BEGIN DEFERRED")
        ]

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._on)


# --------------------------------------------------------------------------------------------------
# Scale of the vocabulary product
# --------------------------------------------------------------------------------------------------
def test_add_labels_plans_in_a_bounded_number_of_queries(reg):
    """Planning is linear: statements per call do not grow with one query per label (was 3 per label)."""
    _, engine = reg
    labels = [f"label {i:05d}" for i in range(3000)]
    first = store.add_labels(engine, "big", labels, fake_encode, batch_size=512, write_batch=1000)
    assert (first.added, first.encoded) == (3000, 3000)
    log = StatementLog(engine)
    again = store.add_labels(engine, "big", labels, fake_encode)
    log.close()
    assert (again.added, again.already_present, again.encoded) == (0, 3000, 0)
    assert len(log.statements) <= 12, log.statements  # a handful of plan queries, whatever the size
    assert log.writes() == []  # nothing new: no write transaction, no INSERT


def test_add_labels_one_short_transaction_per_batch_and_encodes_outside_the_lock(reg):
    url, engine = reg
    probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    locked_while_encoding: list[bool] = []

    def encode(labels: list[str]) -> np.ndarray:
        try:  # can another writer take the write lock right now? (it could not inside a transaction)
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            locked_while_encoding.append(False)
        except sqlite3.OperationalError:
            locked_while_encoding.append(True)
        return fake_encode(labels)

    log = StatementLog(engine)
    res = store.add_labels(engine, "v", [f"x{i}" for i in range(250)], encode, batch_size=50, write_batch=100)
    log.close()
    probe.close()
    assert (res.added, res.encoded) == (250, 250)
    assert locked_while_encoding and not any(locked_while_encoding)
    assert sum(s.startswith("BEGIN IMMEDIATE") for s in log.statements) == 3  # 100 + 100 + 50


def test_add_labels_progress_bar_counts_the_whole_call(reg, capsys):
    _, engine = reg
    store.add_labels(engine, "v", [f"p{i}" for i in range(120)], fake_encode, write_batch=50, progress=True)
    err = capsys.readouterr().err
    assert "120/120" in err and "/50" not in err


def test_reader_is_not_blocked_by_a_long_writer(reg):
    """`vocab ls`, `registry ls` (and classify's opening) never take the write lock nor migrate."""
    url, engine = reg
    store.add_labels(engine, "shop", ["red car"], fake_encode)
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a long writer holds the lock for the whole test
    writer.execute("INSERT INTO vocabularies (name) VALUES ('in flight')")
    try:
        done = {}

        def read():
            r = CliRunner()
            done["vocab"] = r.invoke(app, ["vocab", "ls", "--registry", url, "--json"])
            done["registry"] = r.invoke(app, ["registry", "ls", "--registry", url, "--json"])

        t = threading.Thread(target=read)
        t.start()
        t.join(20)  # an opening that migrates would wait 30 s for the lock, then fail
        assert not t.is_alive(), "reader waited for the writer"
        assert done["vocab"].exit_code == 0, done["vocab"].output
        assert json.loads(done["vocab"].stdout)[0]["vocabulary"] == "shop"
        assert done["registry"].exit_code == 0, done["registry"].output
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_reader_on_an_old_schema_is_told_to_upgrade_not_migrated(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url)
    db.downgrade(url, "base")
    res = CliRunner().invoke(app, ["vocab", "ls", "--registry", url])
    assert res.exit_code == 2 and "not an ovc registry" in res.stderr
    eng = db.make_engine(url)
    assert db.current_revision(eng) is None  # the reader did not migrate it
    eng.dispose()


# --------------------------------------------------------------------------------------------------
# Outside a project: read paths never create a registry
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["vocab", "ls"],
        ["registry", "ls"],
        ["vocab", "add", "--vocab", "x", "red car"],
        ["classify", "clip.mp4", "--vocab", "x"],
    ],
)
def test_outside_a_project_no_registry_is_created(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OVC_REGISTRY_URL", raising=False)
    monkeypatch.delenv("OVC_PARAMS", raising=False)
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    msg = res.stderr.strip()
    assert len(msg.splitlines()) == 1 and "Traceback" not in res.output
    assert "no registry at" in msg and str(tmp_path / "data" / "registry.db") in msg
    for hint in ("--registry", "registry.url", "$OVC_REGISTRY_URL"):  # real options, all of them
        assert hint in msg
    assert not (tmp_path / "data").exists()


def test_every_hint_names_a_real_option():
    """--registry is an option of every registry command; -S sets registry.url; OVC_REGISTRY_URL is read."""
    from ovc.config import Config
    from ovc.registry.db import ENV_URL, where_hint

    hint = where_hint()
    assert f"${ENV_URL}" in hint and "registry.url" in hint and hasattr(Config().registry, "url")
    for argv in (["vocab", "ls"], ["vocab", "add"], ["vocab", "rm"], ["registry", "ls"], ["classify"]):
        assert "--registry" in CliRunner().invoke(app, [*argv, "--help"]).stdout


# --------------------------------------------------------------------------------------------------
# Bad input: path-like label arguments, all rejected, read-only registry, malformed params
# --------------------------------------------------------------------------------------------------
def test_path_like_label_arguments_are_errors_not_labels(reg, tmp_path):
    url, engine = reg
    (tmp_path / "labels").mkdir()
    res = CliRunner().invoke(
        app,
        [
            "vocab",
            "add",
            "--vocab",
            "shop",
            "--registry",
            url,
            "red car",
            "lables/retail.txt",
            str(tmp_path / "labels"),
            "retail.txt",
            "--no-embed",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "'lables/retail.txt': looks like a label file but does not exist" in res.stderr
    assert f"'{tmp_path / 'labels'}': looks like a label file but is a directory" in res.stderr
    assert "'retail.txt': looks like a label file but does not exist" in res.stderr
    assert [s.text for s in store.list_labels(engine, "shop")] == ["red car"]


def test_all_labels_rejected_creates_no_vocabulary(reg, tmp_path):
    url, engine = reg
    res = CliRunner().invoke(
        app, ["vocab", "add", "--vocab", "ghost", "--registry", url, "missing/file.txt", "  ", "--no-embed"]
    )
    assert res.exit_code == 1
    assert "ghost" not in [v.name for v in store.list_vocabularies(engine)]
    out = store.add_labels(engine, "ghost2", ["", "\x00bad"], fake_encode)  # the library agrees
    assert len(out.issues) == 2 and "ghost2" not in [v.name for v in store.list_vocabularies(engine)]


def _read_only_url(url: str) -> str:
    return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"


def test_read_only_registry_one_line_exit_2_and_no_op_works(reg):
    url, engine = reg
    store.add_labels(engine, "shop", ["red car"], fake_encode)
    ro = _read_only_url(url)
    same = CliRunner().invoke(app, ["vocab", "add", "--vocab", "shop", "--registry", ro, "red car", "--no-embed"])
    assert same.exit_code == 0, same.output  # nothing new: nothing written, works read-only
    assert "added 0, already present 1" in same.stdout
    new = CliRunner().invoke(app, ["vocab", "add", "--vocab", "shop", "--registry", ro, "blue bag", "--no-embed"])
    assert new.exit_code == 2
    assert new.stderr.strip().count("\n") == 0 and "read-only" in new.stderr and "Traceback" not in new.output
    with pytest.raises(store.ReadOnlyRegistryError):
        store.add_labels(db.make_engine(ro), "shop", ["blue bag"], model_version=None)
    assert not store.ReadOnlyRegistryError("x").retryable


@pytest.mark.parametrize("text", ["train: [unclosed\n", "train:\n  epochs: 2\n   lr: 1\n", "- a list\n", "\x00\x01"])
def test_malformed_params_is_one_line_exit_2(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    for argv in (["params", "-p", str(p)], ["vocab", "ls", "-p", str(p)], ["stage", "clean", "-p", str(p)]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, (argv, res.output)
        assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
        assert str(p) in res.stderr


@pytest.mark.parametrize(
    "override, shown",
    [
        ("train.batch_size=-1", "train.batch_size=-1: expected >= 1"),
        ("train.epochs=-3", "train.epochs=-3: expected >= 1"),
        ("train.lr=-5", "train.lr=-5.0: expected > 0"),
        ("loss.tau=0", "loss.tau=0.0: expected > 0"),
        ("world.game_title_rate=1.5", "world.game_title_rate=1.5"),
        ("reader.eval_sampling=sometimes", "expected one of random, uniform"),
        ("evaluate.plot_points=1", "evaluate.plot_points=1"),
        ("train.weight_decay=-0.1", "train.weight_decay=-0.1: expected >= 0"),  # default range by type
        ("loss.neg_weight=.nan", "expected a finite number"),
    ],
)
def test_config_ranges_name_key_and_value(override, shown):
    res = CliRunner().invoke(app, ["params", "-S", override])
    assert res.exit_code == 2 and shown in res.stderr and "Traceback" not in res.output


def test_config_ranges_cover_known_keys_and_defaults_pass(repo_root):
    import dataclasses

    from ovc.config import QUICK_OVERRIDES, RANGES, Config, load_config

    keys = {
        f"{s.name}.{f.name}" for s in dataclasses.fields(Config) for f in dataclasses.fields(getattr(Config(), s.name))
    }
    assert set(RANGES) <= keys  # no rule for a key that does not exist
    for params in ("params.yaml", "params-paper.yaml"):
        load_config(repo_root / params)
    load_config(repo_root / "params.yaml", QUICK_OVERRIDES)


def test_errors_share_one_base_class():
    from ovc.config import ConfigError
    from ovc.errors import OvcError

    for cls in (ConfigError, store.RegistryError, store.NotFoundError, store.ReadOnlyRegistryError):
        assert issubclass(cls, OvcError)
    assert store.RegistryBusyError("x").retryable and not ConfigError("x").retryable


def test_retryable_errors_exit_75_deterministic_ones_exit_2(monkeypatch):
    """`ovc stage` exit status tells train-eval whether a retry can help (flows/train_eval.py)."""
    from ovc import pipeline

    def busy(name, cfg):
        raise store.RegistryBusyError("registry stayed locked by another writer\nsecond line")

    monkeypatch.setattr(pipeline, "run_stage", busy)
    res = CliRunner().invoke(app, ["stage", "publish"])
    assert res.exit_code == 75 and res.stderr.count("\n") == 1 and "second line" in res.stderr

    def missing(name, cfg):
        from ovc.stages.publish import PublishError

        raise PublishError("data/eval/metrics.json not found; run `ovc stage evaluate` first")

    monkeypatch.setattr(pipeline, "run_stage", missing)
    res = CliRunner().invoke(app, ["stage", "publish"])
    assert res.exit_code == 2 and "metrics.json not found" in res.stderr
