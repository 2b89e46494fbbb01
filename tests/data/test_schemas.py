"""Manifest/vocabulary schemas, parquet round-trips, lazy error messages, path helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ovc.data.manifest import (
    ManifestSchemaError,
    read_manifest,
    read_vocabulary,
    rebase_paths,
    resolve_video_path,
    write_manifest,
    write_vocabulary,
)


def _manifest(**extra) -> pd.DataFrame:
    data = {
        "video_id": ["v0", "v1", "v2"],
        "path": ["videos/v0.mp4", "videos/v1.mp4", "/abs/v2.mp4"],
        "labels": [["red", "circle"], ["moving left"], ["blue"]],
        "split": ["train", "train", "val"],
        "source": ["test"] * 3,
    }
    data.update(extra)
    return pd.DataFrame(data)


def _vocab() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["red", "circle", "moving left", "red"],
            "vertical": ["Colours", "Shapes", "Actions", "Colours"],
            "kind": ["entity", "entity", "action", "entity"],
            "vocab": ["train", "train", "train", "open_entities"],
        }
    )


def test_manifest_round_trip_gives_python_lists_and_stable_bytes(tmp_path):
    df = _manifest(caption=["a red circle", None, "blue"], duration=[1.0, 2.0, 3.0])
    df["labels"] = [np.array(x, dtype=object) for x in df["labels"]]  # numpy cells are accepted on write
    path = tmp_path / "m" / "manifest.parquet"
    write_manifest(df, path)
    first = path.read_bytes()
    back = read_manifest(path)
    assert all(type(x) is list and all(type(s) is str for s in x) for x in back["labels"])
    assert back["labels"].tolist() == [["red", "circle"], ["moving left"], ["blue"]]
    assert back["duration"].tolist() == [1.0, 2.0, 3.0]  # extra column kept
    assert pd.isna(back["caption"][1])
    arrow = pq.read_schema(path)
    assert str(arrow.field("labels").type) == "list<element: string>"
    write_manifest(back, path)  # read -> write again: byte-identical
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]  # no temp files left


def test_empty_label_lists_only_in_raw_manifests(tmp_path):
    df = _manifest(labels=[[], [], []])
    path = tmp_path / "raw.parquet"
    write_manifest(df, path, allow_empty_labels=True)
    assert str(pq.read_schema(path).field("labels").type) == "list<element: string>"  # not list<null>
    assert read_manifest(path, allow_empty_labels=True)["labels"].tolist() == [[], [], []]
    with pytest.raises(ManifestSchemaError, match="at least one label"):
        read_manifest(path)


def test_manifest_error_lists_every_failure_with_file_rows_and_ids(tmp_path):
    df = _manifest()
    df.loc[1, "video_id"] = "v0"  # duplicate id
    df.loc[2, "path"] = ""  # empty path
    df["labels"] = [["red", ""], ["x", "x"], "not-a-list"]  # empty label, duplicate label, wrong type
    path = tmp_path / "bad.parquet"
    with pytest.raises(ManifestSchemaError) as err:
        write_manifest(df, path)
    msg = str(err.value)
    assert str(path) in msg
    assert "'video_id'" in msg and "'path'" in msg and "'labels'" in msg
    assert "field_uniqueness" in msg and "row 0 video_id='v0'" in msg and "row 1 video_id='v0'" in msg
    assert "row 2 video_id='v2'" in msg and "non-empty string" in msg
    assert msg.count("list of distinct non-empty strings") == 1  # one group ...
    assert "3 failure(s)" in msg  # ... with all three bad label cells
    assert not path.exists()  # nothing written


def test_read_manifest_names_the_file_and_missing_columns(tmp_path):
    path = tmp_path / "manifest.parquet"
    _manifest().drop(columns=["split", "source"]).to_parquet(path)
    with pytest.raises(ManifestSchemaError) as err:
        read_manifest(path)
    msg = str(err.value)
    assert str(path) in msg and "split" in msg and "source" in msg and "column_in_dataframe" in msg
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_manifest(tmp_path / "nope.parquet")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "manifest.parquet"
    write_manifest(_manifest(), path)
    before = path.read_bytes()
    with pytest.raises(ManifestSchemaError):
        write_manifest(_manifest(split=["train", None, "val"]), path)
    assert path.read_bytes() == before


def test_vocabulary_round_trip_and_errors(tmp_path):
    path = tmp_path / "vocabulary.parquet"
    write_vocabulary(_vocab(), path)  # same label in two vocabularies is fine
    back = read_vocabulary(path)
    pd.testing.assert_frame_equal(back, _vocab(), check_dtype=False)

    bad = _vocab()
    bad.loc[1, "kind"] = "object"
    bad.loc[3, "vocab"] = "train"  # (train, red) twice
    with pytest.raises(ManifestSchemaError) as err:
        write_vocabulary(bad, path)
    msg = str(err.value)
    assert "'kind'" in msg and "row 1 label=train:circle value='object'" in msg
    assert "multiple_fields_uniqueness" in msg and "row 0 label=train:red" in msg and "row 3 label=train:red" in msg
    assert read_vocabulary(path).equals(back)  # old file intact


def test_resolve_and_rebase_paths(tmp_path):
    m = tmp_path / "data" / "raw" / "manifest.parquet"
    assert resolve_video_path(m, "videos/a.mp4") == tmp_path / "data" / "raw" / "videos" / "a.mp4"
    assert resolve_video_path(m, "/abs/a.mp4") == Path("/abs/a.mp4")
    rebased = rebase_paths(pd.Series(["videos/a.mp4", "/abs/a.mp4"]), tmp_path / "data/raw", tmp_path / "data/clean")
    assert rebased.tolist() == ["../raw/videos/a.mp4", "/abs/a.mp4"]
    new_manifest = tmp_path / "data" / "clean" / "manifest.parquet"
    assert os.path.normpath(resolve_video_path(new_manifest, rebased[0])) == str(
        tmp_path / "data" / "raw" / "videos" / "a.mp4"
    )


def test_manifest_paths_leaving_the_data_roots_are_refused_in_one_error(tmp_path):
    """``..``, absolute paths elsewhere and symlinks out of the roots: every such row named, once."""
    from ovc.config import Config
    from ovc.data.manifest import data_roots

    data = tmp_path / "data"
    (data / "raw" / "videos").mkdir(parents=True)
    (data / "raw" / "videos" / "ok.mp4").write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (data / "raw" / "videos" / "link.mp4").symlink_to(outside)
    dataset = tmp_path / "datasets" / "kinetics"
    dataset.mkdir(parents=True)
    rows = [
        ("ok", "videos/ok.mp4"),
        ("dots", "../../../../../../etc/passwd"),
        ("abs", "/etc/hosts"),
        ("link", "videos/link.mp4"),
        ("ds", str(dataset / "a.mp4")),  # a configured dataset root: allowed
    ]
    df = pd.DataFrame(
        {
            "video_id": [r[0] for r in rows],
            "path": [r[1] for r in rows],
            "labels": [["x"]] * len(rows),
            "split": ["train"] * len(rows),
            "source": ["test"] * len(rows),
        }
    )
    path = data / "raw" / "manifest.parquet"
    write_manifest(df, path)
    cfg = Config()
    cfg.paths.data, cfg.ingest.root = str(data), str(dataset)
    with pytest.raises(ManifestSchemaError) as info:
        read_manifest(path, roots=data_roots(cfg))
    msg = str(info.value)
    assert str(path) in msg and "3 video path(s) leave the data roots" in msg
    for vid in ("dots", "abs", "link"):
        assert f"video_id={vid!r}" in msg
    assert "video_id='ok'" not in msg and "video_id='ds'" not in msg
    assert str(outside) in msg  # where the symlink leads
    with pytest.raises(ManifestSchemaError, match="4 video path"):  # the dataset root not configured
        read_manifest(path, roots=[data])
    write_manifest(df.iloc[[0]], path)
    assert read_manifest(path, roots=data_roots(cfg))["video_id"].tolist() == ["ok"]


@pytest.mark.parametrize("stage", ["evaluate", "clean"])
def test_stages_refuse_manifest_paths_outside_the_data_roots(tmp_path, stage):
    """evaluate (and every stage reading a manifest) opens nothing outside paths.data / ingest roots."""
    from ovc.config import Config

    data = tmp_path / "data"
    df = pd.DataFrame(
        {
            "video_id": ["ok", "evil"],
            "path": ["videos/ok.mp4", "../../../../../../../etc/passwd"],
            "labels": [["red"], ["red"]],
            "split": ["val", "val"],
            "source": ["test", "test"],
        }
    )
    vocab = pd.DataFrame({"label": ["red"], "vertical": ["Colours"], "kind": ["entity"], "vocab": ["train"]})
    sub = "clean" if stage == "evaluate" else "raw"
    write_manifest(df, data / sub / "manifest.parquet")
    write_vocabulary(vocab, data / sub / "vocabulary.parquet")
    cfg = Config()
    cfg.paths.data = str(data)
    if stage == "evaluate":
        from ovc.stages.evaluate import load_splits as run
    else:
        from ovc.stages.clean import clean as run
    with pytest.raises(ManifestSchemaError, match=r"1 video path\(s\) leave the data roots.*video_id='evil'"):
        run(cfg)
