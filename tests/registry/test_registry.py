"""SQL registry of label embeddings (paper §3, Fig. 2b): schema, migrations, store operations.

Every database test runs on SQLite and on PostgreSQL. PostgreSQL comes from
``$OVC_TEST_POSTGRES_URL`` or a throwaway server started with ``infra/postgres-up``; without either
(no PostgreSQL binaries installed) the PostgreSQL variants are skipped with the reason. Each test
gets a fresh SQLite file / a fresh PostgreSQL schema, created by the Alembic migrations.
"""

from __future__ import annotations

import glob
import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Column, Integer, MetaData, create_engine, event, func, insert, inspect, make_url, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ovc.config import Config
from ovc.registry import db, store
from ovc.registry.models import Base, Label, LabelEmbedding, ModelVersion, Threshold, VocabularyLabel

REPO = Path(__file__).resolve().parents[2]
DIM = 16
CKPT = hashlib.sha256(b"checkpoint").hexdigest()
ENC_A = hashlib.sha256(b"label encoder A").hexdigest()
ENC_B = hashlib.sha256(b"label encoder B").hexdigest()


# --------------------------------------------------------------------------------------------------
# Encoders (deterministic; module level so spawned processes can use them)
# --------------------------------------------------------------------------------------------------
def vector_of(label: str, dim: int = DIM) -> np.ndarray:
    """A fixed unit vector per label text."""
    seed = int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class CountingEncoder:
    """encode_fn that records every label it was asked to encode; optionally fails or sleeps."""

    def __init__(self, dim: int = DIM, fail_on_call: int | None = None, sleep_s: float = 0.0):
        self.dim, self.fail_on_call, self.sleep_s = dim, fail_on_call, sleep_s
        self.calls: list[list[str]] = []

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def __call__(self, labels: list[str]) -> np.ndarray:
        self.calls.append(list(labels))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("encoder crashed half-way")
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return np.stack([vector_of(t, self.dim) for t in labels])


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------
def _pg_bin() -> str | None:
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return str(Path(found[-1]).parent)
    which = shutil.which("pg_ctl")
    return str(Path(which).parent) if which else None


@pytest.fixture(scope="session")
def postgres_server_url():
    """URL of a PostgreSQL database: $OVC_TEST_POSTGRES_URL, else a throwaway server, else skip."""
    if os.environ.get("OVC_TEST_POSTGRES_URL"):
        yield os.environ["OVC_TEST_POSTGRES_URL"]
        return
    if _pg_bin() is None:
        if os.environ.get("OVC_REQUIRE_POSTGRES"):  # CI installs PostgreSQL: a missing server is a failure there
            pytest.fail(
                "OVC_REQUIRE_POSTGRES is set but no PostgreSQL binaries were found (apt-get install postgresql)"
            )
        pytest.skip(
            "PostgreSQL unavailable: set OVC_TEST_POSTGRES_URL or install the server "
            "(apt-get install -y postgresql) so infra/postgres-up can start one"
        )
    # Under /tmp, not pytest's tmp_path: the server runs as user postgres, which cannot enter
    # root's 0700 pytest directories.
    pg_dir = tempfile.mkdtemp(prefix="ovc-pg-test-")
    proc = subprocess.run([str(REPO / "infra/postgres-up"), pg_dir], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        shutil.rmtree(pg_dir, ignore_errors=True)
        pytest.fail(f"infra/postgres-up failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(REPO / "infra/postgres-down"), pg_dir, "--purge"], capture_output=True, timeout=60)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh, empty registry database URL (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    schema = f"ovc_t_{uuid.uuid4().hex[:12]}"  # own schema per test: never touches existing data
    admin = create_engine(server)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    u = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield u.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(url):
    db.upgrade(url)
    eng = db.make_engine(url)
    yield eng
    eng.dispose()


def snapshot(engine) -> dict[str, list[tuple]]:
    """Every row of every registry table, in primary-key order."""
    out = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def publish(engine, name="v1", encoder=None, vocabularies=None, threshold=0.42, encoder_digest=ENC_A, **kw):
    encoder = encoder or CountingEncoder()
    vocabularies = (
        vocabularies
        if vocabularies is not None
        else {
            "train": [("red", "entity"), ("circle", "entity"), ("moving left", "action")],
            "open_entities": ["crimson", ("circle", "entity")],
        }
    )
    return store.publish_model_version(
        engine,
        name,
        CKPT,
        encoder_digest=encoder_digest,
        encode_fn=encoder,
        vocabularies=vocabularies,
        calibrated_threshold=threshold,
        dvc_rev="abc123",
        params={"lr": 1e-3},
        metrics={"aupr": 0.5},
        **kw,
    )


# --------------------------------------------------------------------------------------------------
# Label policy (no database)
# --------------------------------------------------------------------------------------------------
def test_normalize_label_policy():
    assert store.normalize_label("  Red\t\tCar \n") == "red car"
    assert store.normalize_label("CAFE\u0301") == "café"  # NFC: e + combining acute -> é
    assert store.normalize_label("caf\u00e9") == store.normalize_label("cafe\u0301")
    assert store.normalize_label("a\u00a0\u2003b") == "a b"  # Unicode spaces collapse
    assert store.normalize_label("Straße") == "straße"  # lower(), not casefold()


def test_validate_labels_reports_each_bad_label_and_keeps_the_rest():
    labels = [
        "Red",
        "",
        "   ",
        "x" * 201,
        b"\xff\xfebad",
        "tab\x00null",
        "zero\u200bwidth",
        "RED",
        ("run", "verb"),
        ("run", "ACTION"),
        b"blue",
        "ok\udcff",
    ]
    specs, issues = store.validate_labels(labels, max_label_chars=200)
    assert specs == [store.LabelSpec("red"), store.LabelSpec("run", "action"), store.LabelSpec("blue")]
    reasons = {i.line: i.reason for i in issues}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 8, 9, 12}
    assert reasons[2] == reasons[3] == "empty"
    assert "longer than 200" in reasons[4]
    assert "not valid UTF-8" in reasons[5] and "0xff" in reasons[5]
    assert "U+0000" in reasons[6] and "U+200B" in reasons[7]
    assert "duplicate of item 1" in reasons[8]
    assert "unknown kind" in reasons[9]
    assert "not valid UTF-8" in reasons[12]


def test_read_label_file_decodes_per_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes(
        b"\xef\xbb\xbf# retail labels\r\n"  # BOM + comment, CRLF
        b"Red Car\tentity\r\n"
        b"\n"
        b"running\taction\n"
        b"caf\xe9 latin-1\n"  # not UTF-8 -> issue on line 5 only
        b"  # indented comment\n"
        b"c# sharp\n"  # '#' inside a label is kept
        b"red  car\n"  # duplicate after normalisation
        b"jump\tnoun\n"
        b"bell\x07\n"
        b"\tentity\n"
        b"last line without newline"
    )
    labels, issues = store.read_label_file(path)
    assert labels == [
        store.LabelSpec("red car", "entity"),
        store.LabelSpec("running", "action"),
        store.LabelSpec("c# sharp"),
        store.LabelSpec("last line without newline"),
    ]
    by_line = {i.line: i for i in issues}
    assert set(by_line) == {5, 8, 9, 10, 11}
    assert "not valid UTF-8" in by_line[5].reason and "0xe9" in by_line[5].reason
    assert "duplicate of line 2" in by_line[8].reason
    assert "unknown kind" in by_line[9].reason
    assert "U+0007" in by_line[10].reason
    assert by_line[11].reason == "empty"


def test_resolve_url_precedence(tmp_path, monkeypatch):
    cfg = Config()
    cfg.paths.data = str(tmp_path / "data")
    monkeypatch.delenv(db.ENV_URL, raising=False)
    assert db.resolve_url(cfg) == f"sqlite:///{tmp_path}/data/registry.db"
    monkeypatch.setenv(db.ENV_URL, "sqlite:////elsewhere.db")
    assert db.resolve_url(cfg) == "sqlite:////elsewhere.db"
    cfg.registry.url = "postgresql+psycopg2://u@h/db"
    assert db.resolve_url(cfg) == cfg.registry.url
    assert db.resolve_url(cfg, url="sqlite://") == "sqlite://"


def test_open_registry_default_sqlite_file_with_pragmas(tmp_path, monkeypatch):
    monkeypatch.delenv(db.ENV_URL, raising=False)
    cfg = Config()
    cfg.paths.data = str(tmp_path / "nested" / "data")
    engine = db.open_registry(cfg)
    try:
        assert (tmp_path / "nested" / "data" / "registry.db").is_file()
        assert db.current_revision(engine) == db.head_revision()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 16384
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------------------------------
def test_migrations_create_exactly_the_models_schema_and_downgrade(url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db.upgrade(url)
    db.upgrade(url)  # idempotent
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) == db.head_revision()
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(mc, Base.metadata) == []
            # The comparison is not vacuous: a model change shows up as a diff.
            changed = MetaData(naming_convention=Base.metadata.naming_convention)
            for table in Base.metadata.tables.values():
                table.to_metadata(changed)
            changed.tables["labels"].append_column(Column("extra", Integer))
            diffs = compare_metadata(mc, changed)
            assert [d[0] for d in diffs] == ["add_column"] and diffs[0][3].name == "extra"

        db.downgrade(engine, "base")
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn)
            assert mc.get_current_revision() is None
            remaining = set(inspect(conn).get_table_names())
        assert remaining <= {"alembic_version"}
        db.upgrade(engine)
        assert store.counts(engine) == dict.fromkeys(store.counts(engine), 0)
    finally:
        engine.dispose()


def test_constraints_make_duplicates_impossible(engine):
    publish(engine)
    store.add_labels(engine, "train", ["no vector yet"], model_version=None)
    with engine.connect() as conn:
        label_id = conn.scalar(select(Label.id).where(Label.text == "red"))
        bare_label_id = conn.scalar(select(Label.id).where(Label.text == "no vector yet"))
        mv_id = conn.scalar(text("SELECT id FROM model_versions"))
        vocab_id = conn.scalar(text("SELECT id FROM vocabularies WHERE name = 'train'"))
    bad_rows = [
        (Label, {"text": "red"}),
        (VocabularyLabel, {"vocabulary_id": vocab_id, "label_id": label_id, "kind": None}),
        (
            LabelEmbedding,
            {
                "model_version_id": mv_id,
                "label_id": label_id,
                "encoder_digest": ENC_A,
                "dim": DIM,
                "vector": vector_of("red").tobytes(),
            },
        ),
        # a second global threshold (NULL vocabulary/label ids) for the same version
        (
            Threshold,
            {
                "model_version_id": mv_id,
                "scope": "global",
                "vocabulary_id": None,
                "label_id": None,
                "target": "global:*:*",
                "value": 0.1,
            },
        ),
        # a target key that does not match the row (CHECK)
        (
            Threshold,
            {
                "model_version_id": mv_id,
                "scope": "vocabulary",
                "vocabulary_id": vocab_id,
                "label_id": None,
                "target": "vocabulary:999:*",
                "value": 0.1,
            },
        ),
        # a truncated vector (CHECK length(vector) = 4 * dim)
        (
            LabelEmbedding,
            {
                "model_version_id": mv_id,
                "label_id": bare_label_id,
                "encoder_digest": ENC_A,
                "dim": DIM,
                "vector": b"\0" * 8,
            },
        ),
        (VocabularyLabel, {"vocabulary_id": vocab_id, "label_id": label_id, "kind": "noun"}),
    ]
    for model, row in bad_rows:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(model), [row])
    # the same rows, made valid, are accepted: the failures above came from the constraints
    with engine.begin() as conn:
        conn.execute(insert(LabelEmbedding), [{**bad_rows[5][1], "vector": vector_of("x").tobytes()}])
        conn.execute(insert(Threshold), [{**bad_rows[4][1], "target": f"vocabulary:{vocab_id}:*"}])


# --------------------------------------------------------------------------------------------------
# Publish
# --------------------------------------------------------------------------------------------------
def test_publish_and_load_embedding_matrix(engine):
    enc = CountingEncoder()
    res = publish(engine, name=None, encoder=enc)
    assert res.model_version == "v1" and res.embed_dim == DIM
    assert (
        res.labels_embedded == 4
        and res.encoded == 4
        and sorted(enc.encoded) == ["circle", "crimson", "moving left", "red"]
    )

    labels, matrix, kinds = store.load_embedding_matrix(engine, "train")
    assert labels == ["circle", "moving left", "red"]
    assert kinds == ["entity", "action", "entity"]
    assert matrix.dtype == np.float32 and matrix.shape == (3, DIM) and matrix.flags.writeable
    np.testing.assert_array_equal(matrix, np.stack([vector_of(t) for t in labels]))

    mv = store.latest_model_version(engine)
    assert (mv.name, mv.checkpoint_digest, mv.encoder_digest, mv.embed_dim) == ("v1", CKPT, ENC_A, DIM)
    assert mv.params == {"lr": 1e-3} and mv.metrics == {"aupr": 0.5} and mv.dvc_rev == "abc123"
    assert store.get_threshold(engine) == pytest.approx(0.42)
    assert [(v.name, v.n_labels) for v in store.list_vocabularies(engine)] == [("open_entities", 2), ("train", 3)]
    assert store.list_labels(engine, "open_entities") == [
        store.LabelSpec("circle", "entity"),
        store.LabelSpec("crimson"),
    ]

    assert publish(engine, name="auto").model_version == "v2"
    assert [m.name for m in store.list_model_versions(engine)] == ["v1", "v2"]
    with pytest.raises(store.RegistryError, match="already exists"):
        publish(engine, name="v1")


def test_publish_failure_half_way_leaves_registry_unchanged(engine):
    publish(engine, name="v1")
    store.add_labels(engine, "retail", ["shoe", "bag"], CountingEncoder())
    before = snapshot(engine)

    failing = CountingEncoder(fail_on_call=2)  # first batch encodes, the second raises
    labels = [f"label {i}" for i in range(10)]
    with pytest.raises(RuntimeError, match="half-way"):
        publish(engine, name="v2", encoder=failing, vocabularies={"train": labels, "new": labels[:3]}, batch_size=4)
    assert len(failing.calls) == 2
    assert snapshot(engine) == before

    bad = lambda labels: np.full((len(labels), DIM), np.nan, dtype=np.float32)  # noqa: E731
    with pytest.raises(store.EncodeError, match="non-finite"):
        publish(engine, name="v2", encoder=bad, vocabularies={"x": ["nan label"]})
    with pytest.raises(store.EncodeError, match="shape"):
        publish(engine, name="v2", encoder=lambda labels: np.zeros((1, 2, 3)), vocabularies={"x": ["y"]})
    assert snapshot(engine) == before


def _publish_then_die(url: str) -> None:
    """Child process: publish, but get killed (os._exit) right before COMMIT, all rows written."""
    from sqlalchemy.orm import Session as _Session

    engine = db.make_engine(url)

    def die(session) -> None:
        # Exit 3 only if the dying transaction really holds the new version and its 50 embeddings.
        n_versions = session.scalar(select(func.count()).select_from(ModelVersion))
        n_vectors = session.scalar(select(func.count()).select_from(LabelEmbedding))
        os._exit(3 if (n_versions, n_vectors) == (2, 4 + 50) else 4)

    event.listen(_Session, "before_commit", die)
    store.publish_model_version(
        engine,
        "v2",
        CKPT,
        encoder_digest=ENC_B,
        encode_fn=CountingEncoder(),
        vocabularies={"train": [f"killed {i}" for i in range(50)]},
        calibrated_threshold=0.3,
    )
    os._exit(0)  # not reached


def test_publish_killed_mid_transaction_leaves_registry_unchanged(engine, url):
    publish(engine, name="v1")
    before = snapshot(engine)
    proc = mp.get_context("spawn").Process(target=_publish_then_die, args=(url,))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 3
    assert snapshot(engine) == before
    # and the registry is still writable (no stale lock)
    assert store.add_labels(engine, "train", ["after kill"], CountingEncoder()).encoded == 1


def test_publish_inside_caller_session(engine):
    with Session(engine) as session:
        publish(session, name="v1")
        session.rollback()
    assert store.counts(engine)["model_versions"] == 0
    with Session(engine) as session:
        publish(session, name="v1")
        session.commit()
    assert [m.name for m in store.list_model_versions(engine)] == ["v1"]


# --------------------------------------------------------------------------------------------------
# Incremental vocabulary expansion
# --------------------------------------------------------------------------------------------------
def test_add_labels_is_incremental_and_idempotent(engine):
    publish(engine)
    enc = CountingEncoder()
    res = store.add_labels(engine, "retail", ["Shoe", "bag", ("Red", "entity"), "", "x" * 300], enc)
    assert (res.added, res.already_present, res.encoded, res.reused) == (3, 0, 2, 0)
    assert sorted(enc.encoded) == ["bag", "shoe"]  # "red" already has an embedding under v1
    assert [i.reason for i in res.issues] == ["empty", "longer than 200 characters (300)"]

    enc2 = CountingEncoder()
    again = store.add_labels(engine, "retail", ["shoe", "BAG", "red"], enc2)
    assert (again.added, again.already_present, again.encoded) == (0, 3, 0) and enc2.calls == []

    enc3 = CountingEncoder()
    more = store.add_labels(engine, "retail", ["shoe", "hat", "scarf"], enc3)
    assert (more.added, more.already_present, more.encoded) == (2, 1, 2)
    assert sorted(enc3.encoded) == ["hat", "scarf"]

    labels, matrix, _ = store.load_embedding_matrix(engine, "retail")
    assert labels == ["bag", "hat", "red", "scarf", "shoe"]
    np.testing.assert_array_equal(matrix, np.stack([vector_of(t) for t in labels]))
    assert store.add_labels(engine, "retail", [], enc3).to_dict()["added"] == 0


def test_same_encoder_digest_reuses_embeddings(engine):
    publish(engine, name="v1")
    same = CountingEncoder()
    res = publish(engine, name="v2", encoder=same)  # only the video side changed
    assert res.encoded == 0 and res.reused == 4 and same.calls == []
    other = CountingEncoder()
    res = publish(engine, name="v3", encoder=other, encoder_digest=ENC_B)
    assert res.encoded == 4 and res.reused == 0

    enc = CountingEncoder()
    store.add_labels(engine, "late", ["red", "brand new"], enc, model_version="v1")
    r2 = store.add_labels(engine, "late", ["red", "brand new"], enc, model_version="v2")
    assert (r2.encoded, r2.reused) == (0, 1)  # "brand new" copied from v1 (same encoder digest)
    assert enc.encoded == ["brand new"]
    for version in ("v1", "v2", "v3"):
        store.add_labels(engine, "late", ["red", "brand new"], enc, model_version=version)
        labels, matrix, _ = store.load_embedding_matrix(engine, "late", version)
        np.testing.assert_array_equal(matrix, np.stack([vector_of(t) for t in labels]))


def test_labels_without_embeddings_and_unknown_names(engine):
    with pytest.raises(store.NotFoundError, match="no model version"):
        store.add_labels(engine, "v", ["a"], CountingEncoder())
    store.add_labels(engine, "v", ["a", "b"], model_version=None)  # register only
    publish(engine, name="v1")
    with pytest.raises(store.NotFoundError, match="2 label.*no embedding"):
        store.load_embedding_matrix(engine, "v")
    labels, matrix, _ = store.load_embedding_matrix(engine, "v", strict=False)
    assert labels == [] and matrix.shape == (0, DIM)
    assert store.add_labels(engine, "v", ["a", "b"], CountingEncoder()).encoded == 2
    assert store.load_embedding_matrix(engine, "v")[0] == ["a", "b"]
    with pytest.raises(store.NotFoundError, match="unknown vocabulary"):
        store.load_embedding_matrix(engine, "nope")
    with pytest.raises(store.NotFoundError, match="unknown model version 'v9'"):
        store.load_embedding_matrix(engine, "v", "v9")
    store.add_labels(engine, "empty", [], model_version=None)
    assert store.load_embedding_matrix(engine, "empty")[1].shape == (0, DIM)


def test_remove_labels_and_vocabulary(engine):
    publish(engine)
    store.set_threshold(engine, 0.6, vocab="train")
    res = store.remove_labels(engine, "train", ["RED", "never there"])
    assert (res["removed"], res["not_present"], res["pruned"]) == (1, 1, 0)
    assert [s.text for s in store.list_labels(engine, "train")] == ["circle", "moving left"]
    enc = CountingEncoder()
    assert store.add_labels(engine, "train", ["red"], enc).encoded == 0  # embedding kept as cache

    res = store.remove_labels(engine, "train", ["red", "circle"], prune_orphans=True)
    assert (res["removed"], res["pruned"]) == (2, 1)  # "circle" is still in open_entities
    assert store.counts(engine)["labels"] == 3

    out = store.remove_vocabulary(engine, "train", prune_orphans=True)
    assert out == {"labels": 1, "pruned": 1}
    assert [v.name for v in store.list_vocabularies(engine)] == ["open_entities"]
    assert store.counts(engine)["thresholds"] == 1  # the vocabulary's threshold went with it
    with pytest.raises(store.NotFoundError):
        store.remove_vocabulary(engine, "train")


def test_thresholds_most_specific_wins(engine):
    publish(engine, threshold=0.5)
    assert store.get_threshold(engine, vocab="train", label="red") == pytest.approx(0.5)
    store.set_threshold(engine, 0.6, vocab="train")
    store.set_threshold(engine, 0.7, label="Red")
    store.set_threshold(engine, 0.8, vocab="open_entities", label="circle")
    assert store.get_threshold(engine) == pytest.approx(0.5)
    assert store.get_threshold(engine, vocab="train") == pytest.approx(0.6)
    assert store.get_threshold(engine, vocab="train", label="circle") == pytest.approx(0.6)
    assert store.get_threshold(engine, vocab="train", label="red") == pytest.approx(0.7)
    assert store.get_threshold(engine, label="red") == pytest.approx(0.7)
    assert store.get_threshold(engine, vocab="open_entities", label="circle") == pytest.approx(0.8)
    assert store.get_threshold(engine, vocab="open_entities", label="unknown label") == pytest.approx(0.5)
    store.set_threshold(engine, 0.65, vocab="train")  # overwrite, not duplicate
    assert store.get_threshold(engine, vocab="train") == pytest.approx(0.65)
    assert store.counts(engine)["thresholds"] == 4
    publish(engine, name="v2", threshold=None)
    assert store.get_threshold(engine) is None and store.get_threshold(engine, model_version="v1") == 0.5
    with pytest.raises(store.NotFoundError):
        store.set_threshold(engine, 0.1, label="no such label")


# --------------------------------------------------------------------------------------------------
# Concurrency: two processes grow the same vocabulary at once
# --------------------------------------------------------------------------------------------------
def _add_labels_worker(url: str, labels: list[str], barrier, results) -> None:
    engine = db.make_engine(url)
    barrier.wait(timeout=120)
    total = {"added": 0, "already_present": 0, "encoded": 0}
    for start in range(0, len(labels), 40):  # several transactions per process, interleaved
        res = store.add_labels(
            engine, "shared", labels[start : start + 40], CountingEncoder(sleep_s=0.01), batch_size=8
        )
        for k in total:
            total[k] += getattr(res, k)
    results.put(total)
    engine.dispose()


def test_concurrent_add_labels_no_duplicates_no_losses(engine, url):
    publish(engine)
    a = [f"item {i:03d}" for i in range(0, 160)]
    b = [f"item {i:03d}" for i in range(80, 240)][::-1]  # overlap 80..159, opposite order
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_add_labels_worker, args=(url, labels, barrier, results)) for labels in (a, b)]
    for p in procs:
        p.start()
    totals = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    union = sorted(set(a) | set(b))
    labels, matrix, _ = store.load_embedding_matrix(engine, "shared")
    assert labels == union
    np.testing.assert_array_equal(matrix, np.stack([vector_of(t) for t in labels]))
    assert sum(t["added"] for t in totals) == len(union)  # each link was created exactly once
    assert sum(t["added"] + t["already_present"] for t in totals) == len(a) + len(b)
    with engine.connect() as conn:
        n_emb = conn.scalar(
            text(
                "SELECT count(*) FROM label_embeddings e JOIN labels l ON l.id = e.label_id WHERE l.text LIKE 'item %'"
            )
        )
    assert n_emb == len(union)


def test_postgres_up_uses_a_password_not_trust(postgres_server_url):
    """infra/postgres-up: scram-sha-256 with a generated password; no trust auth for local users."""
    if os.environ.get("OVC_TEST_POSTGRES_URL"):
        pytest.skip("an external PostgreSQL server is used; infra/postgres-up did not start it")
    u = make_url(postgres_server_url)
    assert u.password and len(u.password) >= 32
    with create_engine(u).connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    no_password = make_url(f"{u.drivername}://{u.username}@{u.host}:{u.port}/{u.database}")
    for bad in (no_password, u.set(password="wrong")):
        with pytest.raises(Exception, match="password authentication failed|no password supplied"):
            create_engine(bad).connect().close()


def test_one_threshold_precedence_for_a_label_and_a_vocabulary(engine):
    """get_threshold (one label) and label_thresholds (the classifier's, a whole vocabulary) agree."""
    from ovc.infer.classifier import label_thresholds as classifier_thresholds

    publish(engine, threshold=0.5)
    store.set_threshold(engine, 0.6, vocab="train")
    store.set_threshold(engine, 0.7, label="Red")
    store.set_threshold(engine, 0.8, vocab="train", label="circle")
    store.set_threshold(engine, 0.9, vocab="open_entities", label="crimson")
    for vocab in ("train", "open_entities"):
        labels, _, _ = store.load_embedding_matrix(engine, vocab)
        one_by_one = [store.get_threshold(engine, vocab=vocab, label=t) for t in labels]
        assert classifier_thresholds(engine, "latest", vocab, labels).tolist() == pytest.approx(one_by_one)
    assert store.label_thresholds(
        engine, "latest", "train", ["circle", "moving left", "red"]
    ).tolist() == pytest.approx([0.8, 0.6, 0.7])
