"""Stage `clean` (paper §4.1): Games-vertical labels, min_count on the training vocabulary,
open vocabularies kept, videos without labels dropped, paths rebased, idempotent outputs."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from ovc.config import Config
from ovc.data.clean import clean_tables
from ovc.data.manifest import (
    ManifestSchemaError,
    read_manifest,
    read_vocabulary,
    resolve_video_path,
    write_manifest,
    write_vocabulary,
)
from ovc.pipeline import get_stage
from ovc.stages.clean import clean

VOCAB = [  # (label, vertical, kind, vocab)
    ("red", "Colours", "entity", "train"),
    ("circle", "Shapes", "entity", "train"),
    ("moving left", "Actions", "action", "train"),
    ("kite", "Objects", "entity", "train"),  # rare: 2 train videos
    ("zebra", "Animals", "entity", "train"),  # rare in train, but evaluated in open_rare
    ("Minecraft", "Games", "entity", "train"),  # game title
    ("zebra", "Animals", "entity", "open_rare"),
    ("crimson", "Colours", "entity", "open_synonyms"),  # open label: no train videos, kept
    ("Fortnite", "Games", "entity", "open_synonyms"),  # game titles go from open vocabs too
]

VIDEOS = [  # (video_id, labels, split)
    ("t0", ["red", "circle", "Minecraft"], "train"),
    ("t1", ["red", "kite"], "train"),
    ("t2", ["circle", "moving left", "kite"], "train"),
    ("t3", ["red", "circle", "moving left", "zebra"], "train"),
    ("t4", ["Minecraft"], "train"),  # only a game title -> dropped
    ("t5", ["red", "circle", "moving left", "mystery"], "train"),  # unknown label
    ("t6", [], "train"),  # no labels in input -> dropped
    ("v0", ["moving left", "kite", "circle", "red"], "val"),
    ("v1", ["kite"], "val"),  # only a rare label -> dropped
    ("o0", ["zebra", "red"], "open_rare"),
    ("o1", ["crimson", "Fortnite"], "open_synonyms"),
]


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest = pd.DataFrame(
        {
            "video_id": [v[0] for v in VIDEOS],
            "path": [f"videos/{v[0]}.mp4" for v in VIDEOS],
            "labels": [v[1] for v in VIDEOS],
            "split": [v[2] for v in VIDEOS],
            "source": ["test"] * len(VIDEOS),
        }
    )
    vocab = pd.DataFrame(VOCAB, columns=["label", "vertical", "kind", "vocab"])
    return manifest, vocab


def test_clean_tables_drops_games_rare_and_unknown_labels():
    manifest, vocab = _tables()
    out, vocab_out, report = clean_tables(manifest, vocab, min_count=3, drop_verticals=["Games"])

    labels = dict(zip(out["video_id"], out["labels"]))
    assert labels == {
        "t0": ["red", "circle"],
        "t1": ["red"],
        "t2": ["circle", "moving left"],
        "t3": ["red", "circle", "moving left"],
        "t5": ["red", "circle", "moving left"],
        "v0": ["moving left", "circle", "red"],  # order within a video kept
        "o0": ["zebra", "red"],  # zebra stays where its split's vocabulary lists it
        "o1": ["crimson"],
    }
    assert set(zip(vocab_out["vocab"], vocab_out["label"])) == {
        ("train", "red"), ("train", "circle"), ("train", "moving left"),
        ("open_rare", "zebra"), ("open_synonyms", "crimson"),
    }  # fmt: skip
    assert out.index.tolist() == list(range(len(out)))

    dropped = report["labels_dropped"]
    assert dropped["vertical"] == {"count": 2, "names": ["Fortnite", "Minecraft"]}
    assert dropped["min_count"] == {"count": 2, "names": ["kite", "zebra"], "train_counts": {"kite": 2, "zebra": 1}}
    assert dropped["not_in_vocabulary"] == {"count": 1, "names": ["mystery"]}
    assert report["label_occurrences_removed"] == {"vertical": 3, "min_count": 5, "not_in_vocabulary": 1}
    videos = report["videos"]
    assert videos["before"] == {"total": 11, "by_split": {"open_rare": 1, "open_synonyms": 1, "train": 7, "val": 2}}
    assert videos["after"] == {"total": 8, "by_split": {"open_rare": 1, "open_synonyms": 1, "train": 5, "val": 1}}
    assert videos["dropped"] == {
        "total": 3, "by_split": {"train": 2, "val": 1}, "no_labels_in_input": 1, "all_labels_dropped": 2,
    }  # fmt: skip
    assert report["labels"]["before"]["by_vocab"] == {"open_rare": 1, "open_synonyms": 2, "train": 6}
    assert report["labels"]["after"] == {"total": 5, "by_vocab": {"open_rare": 1, "open_synonyms": 1, "train": 3}}
    json.dumps(report)  # JSON-able


def test_min_count_boundary_and_no_vertical_drop():
    manifest, vocab = _tables()
    _, vocab_out, report = clean_tables(manifest, vocab, min_count=2, drop_verticals=[])
    train = set(vocab_out.loc[vocab_out["vocab"] == "train", "label"])
    assert "kite" in train and "Minecraft" in train  # 2 train videos each: kept at min_count=2
    assert report["labels_dropped"]["min_count"]["names"] == ["zebra"]
    assert report["labels_dropped"]["vertical"]["count"] == 0


def test_clean_tables_rejects_invalid_input():
    manifest, vocab = _tables()
    vocab.loc[0, "kind"] = "colour"
    with pytest.raises(ManifestSchemaError, match="kind"):
        clean_tables(manifest, vocab, 3, ["Games"])


def _write_raw(root, attributes=None):
    raw = root / "raw"
    manifest, vocab = _tables()
    write_manifest(manifest, raw / "manifest.parquet", allow_empty_labels=True)
    write_vocabulary(vocab, raw / "vocabulary.parquet")
    if attributes is not None:
        (raw / "attributes.json").write_text(json.dumps(attributes))
    return raw


def test_clean_stage_writes_valid_rebased_idempotent_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data root, as in the real pipeline
    raw = _write_raw(
        tmp_path / "data",
        attributes={
            "red": ["reddish hue"],
            "kite": ["a kite"],
            "Minecraft": ["blocks"],
            "crimson": ["deep red"],
            "bad": 3,
        },  # fmt: skip
    )
    cfg = Config()
    cfg.paths.data = "data"
    cfg.clean.min_count = 3
    assert get_stage("clean") is clean

    summary = clean(cfg)
    out = tmp_path / "data" / "clean"
    names = ["manifest.parquet", "vocabulary.parquet", "attributes.json", "report.json"]
    first = {n: (out / n).read_bytes() for n in names}

    manifest = read_manifest(out / "manifest.parquet")  # validates: every video has a label
    assert manifest["path"].tolist()[0] == "../raw/videos/t0.mp4"
    assert os.path.normpath(resolve_video_path(out / "manifest.parquet", manifest["path"][0])) == os.path.normpath(
        resolve_video_path(raw / "manifest.parquet", "videos/t0.mp4")
    )
    assert len(read_vocabulary(out / "vocabulary.parquet")) == 5
    assert json.loads(first["attributes.json"]) == {"crimson": ["deep red"], "red": ["reddish hue"]}
    report = json.loads(first["report.json"])
    assert report["attributes"] == {"present": 1, "kept": 2, "dropped": 2, "invalid": 1}
    assert summary["videos"] == report["videos"] and set(summary["outputs"]) == set(names)

    clean(cfg)  # run twice: byte-identical
    assert {n: (out / n).read_bytes() for n in names} == first
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp files left


def test_clean_stage_without_attributes_and_with_bad_input(tmp_path):
    root = tmp_path / "data"
    _write_raw(root)
    cfg = Config()
    cfg.paths.data = str(root)
    clean(cfg)
    assert json.loads((root / "clean" / "attributes.json").read_text()) == {}
    assert json.loads((root / "clean" / "report.json").read_text())["attributes"]["present"] == 0

    bad = pd.read_parquet(root / "raw" / "manifest.parquet")
    bad.loc[3, "video_id"] = "t0"
    bad.to_parquet(root / "raw" / "manifest.parquet")
    with pytest.raises(ManifestSchemaError) as err:
        clean(cfg)
    assert str(root / "raw" / "manifest.parquet") in str(err.value) and "row 3 video_id='t0'" in str(err.value)
