"""Dataset adapters: small fixtures in each dataset's real file format, written at test time, go
through ``ingest`` into the agreed manifest + vocabulary (labels, splits, verticals, kinds), with
missing videos reported rather than fatal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovc.config import Config, IngestConfig
from ovc.data.adapters.common import DatasetFormatError
from ovc.data.adapters.tfrecord import (
    TFRecordError,
    encode_example,
    encode_sequence_example,
    read_tfrecord_features,
    write_tfrecords,
)
from ovc.data.ingest import IngestError
from ovc.data.manifest import read_manifest, read_vocabulary, resolve_video_path
from ovc.data.synthworld import write_mp4
from ovc.data.video import read_frames
from ovc.stages.ingest import ingest


def _mp4(path: Path, frames: int = 4, fps: int = 4, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    write_mp4(rng.integers(0, 255, (frames, size, 2 * size, 3), dtype=np.uint8), path, fps=fps)
    return path


def _cfg(tmp_path: Path, source: str, root: Path | None = None, **ingest) -> Config:
    return dataclasses.replace(
        Config(),
        paths=dataclasses.replace(Config().paths, data=str(tmp_path / "data")),
        ingest=IngestConfig(source=source, root=str(root or ""), **ingest),
    )


def _outputs(tmp_path: Path):
    raw = tmp_path / "data" / "raw"
    m = read_manifest(raw / "manifest.parquet", allow_empty_labels=True)
    v = read_vocabulary(raw / "vocabulary.parquet")
    return raw, m.set_index("video_id"), v


# --------------------------------------------------------------------------------------------------
# TFRecord without TensorFlow
# --------------------------------------------------------------------------------------------------
def test_tfrecord_roundtrip_and_bad_file(tmp_path):
    path = tmp_path / "x.tfrecord"
    write_tfrecords(
        path,
        [
            encode_example({"id": [b"ab12"], "labels": [3, 0, 700], "mean_rgb": [0.5, -1.25]}),
            encode_sequence_example(
                {
                    "id": [b"cd34"],
                    "segment_labels": [1, 2],
                    "segment_start_times": [5, 30],
                    "segment_scores": [1.0, 0.0],
                },
                {"rgb": [b"\x01" * 8, b"\x02" * 8]},
            ),
        ],
    )
    a, b = list(read_tfrecord_features(path, verify_data=True))
    assert a == {"id": [b"ab12"], "labels": [3, 0, 700], "mean_rgb": [0.5, -1.25]}
    assert b == {
        "id": [b"cd34"],
        "segment_labels": [1, 2],
        "segment_start_times": [5, 30],
        "segment_scores": [1.0, 0.0],
    }
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(b"this is not a tfrecord file at all")
    with pytest.raises(TFRecordError, match="bad.tfrecord"):
        list(read_tfrecord_features(bad))


def test_tfrecord_matches_protobuf_wire_format(tmp_path):
    """The hand-written decoder reads bytes produced by the protobuf library itself (the messages of
    tensorflow/core/example/{feature,example}.proto, declared here without TensorFlow)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="ovc_test_example.proto", package="ovctest", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    for name, ftype in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        m = fdp.message_type.add(name=name)
        m.field.add(name="value", number=1, type=ftype, label=F.LABEL_REPEATED)
    feat = fdp.message_type.add(name="Feature")
    feat.oneof_decl.add(name="kind")
    for i, (name, tname) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), 1
    ):
        feat.field.add(
            name=name,
            number=i,
            type=F.TYPE_MESSAGE,
            type_name=f".ovctest.{tname}",
            label=F.LABEL_OPTIONAL,
            oneof_index=0,
        )
    feats = fdp.message_type.add(name="Features")
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, type_name=".ovctest.Feature", label=F.LABEL_OPTIONAL)
    feats.field.add(
        name="feature",
        number=1,
        type=F.TYPE_MESSAGE,
        type_name=".ovctest.Features.FeatureEntry",
        label=F.LABEL_REPEATED,
    )
    ex = fdp.message_type.add(name="Example")
    ex.field.add(name="features", number=1, type=F.TYPE_MESSAGE, type_name=".ovctest.Features", label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    Example = message_factory.GetMessageClass(pool.FindMessageTypeByName("ovctest.Example"))
    msg = Example()
    msg.features.feature["id"].bytes_list.value.append(b"zz99")
    msg.features.feature["labels"].int64_list.value.extend([5, 1 << 40, -2])
    msg.features.feature["mean_audio"].float_list.value.extend([0.25, 2.0])
    path = tmp_path / "pb.tfrecord"
    write_tfrecords(path, [msg.SerializeToString()])
    (got,) = list(read_tfrecord_features(path))
    assert got == {"id": [b"zz99"], "labels": [5, 1 << 40, -2], "mean_audio": [0.25, 2.0]}
    assert Example.FromString(encode_example(got)) == msg  # and our encoder writes what protobuf reads


# --------------------------------------------------------------------------------------------------
# YouTube-8M
# --------------------------------------------------------------------------------------------------
def _yt8m_root(tmp_path: Path) -> Path:
    root = tmp_path / "yt8m"
    root.mkdir()
    (root / "vocabulary.csv").write_text(
        "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n"
        '0,378135,/m/03bt1gh,Game,https://en.wikipedia.org/wiki/Game,Games,,,"A game is structured form of play."\n'
        '1,200813,/m/01mw1,Video game,https://en.wikipedia.org/wiki/Video_game,Games,,,"An electronic game, usually played on a screen."\n'
        '2,181579,/m/0k4j,Car,https://en.wikipedia.org/wiki/Car,Autos & Vehicles,,,"A car is a wheeled, self-powered motor vehicle."\n'
        '3,135357,/m/02wbm,Food,https://en.wikipedia.org/wiki/Food,Food & Drink,,,"Food is any substance consumed."\n'
        '4,12,/m/0xyz,Guitar,https://en.wikipedia.org/wiki/Guitar,Arts & Entertainment,Hobbies & Leisure,,"A guitar."\n'
    )
    (root / "video").mkdir()
    write_tfrecords(
        root / "video" / "train0000.tfrecord",
        [
            encode_example({"id": [b"aa11"], "labels": [2, 3], "mean_rgb": [0.0] * 4, "mean_audio": [0.0] * 2}),
            encode_example({"id": [b"bb22"], "labels": [1, 4, 999], "mean_rgb": [0.0] * 4, "mean_audio": [0.0] * 2}),
            encode_example(
                {"id": [b"cc33"], "labels": [2], "mean_rgb": [0.0] * 4, "mean_audio": [0.0] * 2}
            ),  # no video file
        ],
    )
    (root / "segments").mkdir()
    write_tfrecords(
        root / "segments" / "validate0000.tfrecord",
        [
            encode_sequence_example(
                {
                    "id": [b"dd44"],
                    "segment_labels": [3, 2, 4],
                    "segment_start_times": [10, 35, 60],
                    "segment_scores": [1.0, 0.0, 1.0],
                },
                {"rgb": [b"\x00" * 4] * 3},
            )
        ],
    )
    for vid in ("aa11", "dd44"):
        _mp4(root / "videos" / f"{vid}.mp4")
    (root / "youtube_ids.csv").write_text("id,youtube_id\nbb22,dQw4w9WgXcQ\n")
    _mp4(root / "videos" / "sub" / "dQw4w9WgXcQ.mp4")
    return root


def test_youtube8m_tfrecords(tmp_path):
    root = _yt8m_root(tmp_path)
    summary = ingest(_cfg(tmp_path, "youtube8m", root))
    raw, m, v = _outputs(tmp_path)
    assert summary["videos"] == 3 and summary["missing_videos"] == 1 and summary["missing_ids"] == ["cc33"]
    assert json.loads((raw / "missing_videos.json").read_text())["missing"] == ["cc33"]
    assert m.loc["aa11", "labels"] == ["Car", "Food"] and m.loc["aa11", "split"] == "train"
    assert m.loc["bb22", "labels"] == ["Video game", "Guitar"]  # index 999 is not in the vocabulary: dropped
    assert summary["notes"]["unknown_label_indices"] == 1
    assert m.loc["bb22", "path"].endswith("dQw4w9WgXcQ.mp4")  # found through youtube_ids.csv
    # Segments: only rater-confirmed labels (score 1) count; split val
    assert m.loc["dd44", "labels"] == ["Food", "Guitar"] and m.loc["dd44", "split"] == "val"
    assert set(m["source"]) == {"youtube8m"}
    verticals = dict(zip(v["label"], v["vertical"]))
    assert verticals["Video game"] == "Games" and verticals["Car"] == "Autos & Vehicles"
    assert set(v["kind"]) == {"entity"} and set(v["vocab"]) == {"train"} and len(v) == 5
    frames = read_frames(resolve_video_path(raw / "manifest.parquet", m.loc["aa11", "path"]), 2, 32)
    assert frames.shape == (2, 3, 32, 32)


def test_youtube8m_csv_export_and_clean_drops_games(tmp_path):
    from ovc.stages.clean import clean

    root = tmp_path / "yt"
    root.mkdir()
    (root / "vocabulary.csv").write_text(_yt8m_root(tmp_path).joinpath("vocabulary.csv").read_text())
    (root / "train_labels.csv").write_text("video_id,labels\naa11,2 3\nbb22,1 2\n")
    (root / "val_labels.csv").write_text("id,labels\ncc33,3\n")  # later releases name the column `id`
    for vid in ("aa11", "bb22", "cc33"):
        _mp4(root / f"{vid}.mp4")
    cfg = _cfg(tmp_path, "youtube8m", root)
    ingest(cfg)
    _, m, _ = _outputs(tmp_path)
    assert m.loc["bb22", "labels"] == ["Video game", "Car"] and m.loc["cc33", "split"] == "val"
    cfg = dataclasses.replace(cfg, clean=dataclasses.replace(cfg.clean, min_count=1))
    clean(cfg)
    cm = read_manifest(tmp_path / "data" / "clean" / "manifest.parquet").set_index("video_id")
    assert cm.loc["bb22", "labels"] == ["Car"]  # the Games vertical is dropped (paper §4.1)
    (root / "train_labels.csv").write_text("video_id,labels\naa11,two\n")
    with pytest.raises(DatasetFormatError, match=r"train_labels.csv: row 0 \(video_id='aa11'\)"):
        ingest(cfg)


# --------------------------------------------------------------------------------------------------
# Kinetics-400
# --------------------------------------------------------------------------------------------------
def test_kinetics(tmp_path):
    root = tmp_path / "k400"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,---QUuC4vJs,3,13,train,0\n"
        "playing guitar,--0NTAs-fA0,29,39,train,0\n"
        '"passing American football (in game)",-0xHyH0ya5c,10,20,train,0\n'
    )
    (root / "annotations" / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,0wR5jVB-WPk,417,427,val\n"
    )
    _mp4(root / "train" / "abseiling" / "---QUuC4vJs_000003_000013.mp4")
    _mp4(root / "train" / "playing guitar" / "--0NTAs-fA0_000029_000039.mkv")
    _mp4(root / "val" / "0wR5jVB-WPk_000417_000427.mp4")
    summary = ingest(_cfg(tmp_path, "kinetics", root))
    _, m, v = _outputs(tmp_path)
    assert summary["missing_ids"] == ["-0xHyH0ya5c_000010_000020"] and summary["videos"] == 3
    assert m.loc["---QUuC4vJs_000003_000013", "labels"] == ["abseiling"]
    assert m.loc["0wR5jVB-WPk_000417_000427", "split"] == "val"
    assert m.loc["--0NTAs-fA0_000029_000039", "path"].endswith(".mkv")
    assert sorted(v["label"]) == ["abseiling", "passing American football (in game)", "playing guitar"]
    assert set(v["kind"]) == {"action"} and set(v["vertical"]) == {"Actions"} and set(v["vocab"]) == {"train"}
    (root / "annotations" / "train.csv").write_text("youtube_id,label\nabc,x\n")
    with pytest.raises(DatasetFormatError, match=r"train.csv: missing column\(s\) \['time_start', 'time_end'\]"):
        ingest(_cfg(tmp_path, "kinetics", root))


# --------------------------------------------------------------------------------------------------
# TAO
# --------------------------------------------------------------------------------------------------
def test_tao_frames_encoded_and_prepared_videos(tmp_path):
    root = tmp_path / "tao"
    (root / "annotations").mkdir(parents=True)
    data = {
        "videos": [
            {
                "id": 1,
                "name": "val/YFCC100M/v_abc",
                "width": 40,
                "height": 30,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
                "metadata": {},
            },
            {
                "id": 2,
                "name": "val/ArgoVerse/seq2",
                "width": 40,
                "height": 30,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
                "metadata": {},
            },
            {
                "id": 3,
                "name": "val/HACS/gone",
                "width": 40,
                "height": 30,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
                "metadata": {},
            },
        ],
        "images": [
            {
                "id": 10 + i,
                "video_id": 1,
                "file_name": f"val/YFCC100M/v_abc/frame{i:04d}.jpg",
                "frame_index": i * 30,
                "width": 40,
                "height": 30,
            }
            for i in range(3)
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "video_id": 1,
                "track_id": 1,
                "category_id": 95,
                "bbox": [1, 1, 5, 5],
                "area": 25,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 11,
                "video_id": 1,
                "track_id": 2,
                "category_id": 805,
                "bbox": [1, 1, 5, 5],
                "area": 25,
                "iscrowd": 0,
            },
            {
                "id": 3,
                "image_id": 12,
                "video_id": 1,
                "track_id": 1,
                "category_id": 95,
                "bbox": [1, 1, 5, 5],
                "area": 25,
                "iscrowd": 0,
            },
            {
                "id": 4,
                "image_id": 99,
                "video_id": 2,
                "track_id": 3,
                "category_id": 60,
                "bbox": [1, 1, 5, 5],
                "area": 25,
                "iscrowd": 0,
            },
        ],
        "tracks": [
            {"id": 1, "video_id": 1, "category_id": 95},
            {"id": 2, "video_id": 1, "category_id": 805},
            {"id": 3, "video_id": 2, "category_id": 60},
        ],
        "categories": [
            {
                "id": 95,
                "name": "baseball_bat",
                "synset": "baseball_bat.n.01",
                "synonyms": ["baseball_bat"],
                "frequency": "f",
            },
            {"id": 805, "name": "person", "synset": "person.n.01", "synonyms": ["person"], "frequency": "f"},
            {"id": 60, "name": "bow_(weapon)", "synset": "bow.n.04", "synonyms": ["bow_(weapon)"], "frequency": "r"},
            {"id": 7, "name": "never_annotated", "synset": "x.n.01", "synonyms": [], "frequency": "r"},
        ],
    }
    (root / "annotations" / "validation.json").write_text(json.dumps(data))
    for i in range(3):
        p = root / "frames" / f"val/YFCC100M/v_abc/frame{i:04d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((30, 40, 3), 40 * i, np.uint8)).save(p)
    _mp4(root / "videos" / "val" / "ArgoVerse" / "seq2.mp4")
    cfg = _cfg(tmp_path, "tao", root, segment_short_side=16)
    summary = ingest(cfg)
    raw, m, v = _outputs(tmp_path)
    assert summary["missing_ids"] == ["val_HACS_gone"] and summary["notes"]["encoded_from_frames"] == 1
    enc = m.loc["val_YFCC100M_v_abc"]
    assert (
        enc["labels"] == ["baseball bat", "person"]
        and enc["split"] == "open_tao"
        and enc["path"] == "videos/val_YFCC100M_v_abc.mp4"
    )
    frames = read_frames(resolve_video_path(raw / "manifest.parquet", enc["path"]), 3, None)
    assert frames.shape[0] == 3 and frames.shape[2] == 16  # short side 16 (30x40 -> 16x20 or so)
    assert m.loc["val_ArgoVerse_seq2", "labels"] == ["bow (weapon)"]
    assert sorted(v["label"]) == ["baseball bat", "bow (weapon)", "person"]  # never-annotated category left out
    assert set(v["vocab"]) == {"open_tao"} and set(v["kind"]) == {"entity"}


# --------------------------------------------------------------------------------------------------
# ActivityNet
# --------------------------------------------------------------------------------------------------
def test_activitynet(tmp_path):
    root = tmp_path / "anet"
    root.mkdir()
    data = {
        "version": "VERSION 1.3",
        "taxonomy": [
            {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
            {"nodeId": 1, "nodeName": "Sports, Exercise, and Recreation", "parentId": 0, "parentName": "Root"},
            {
                "nodeId": 2,
                "nodeName": "Racquet sports",
                "parentId": 1,
                "parentName": "Sports, Exercise, and Recreation",
            },
            {"nodeId": 3, "nodeName": "Playing squash", "parentId": 2, "parentName": "Racquet sports"},
            {"nodeId": 4, "nodeName": "Household Activities", "parentId": 0, "parentName": "Root"},
            {"nodeId": 5, "nodeName": "Vacuuming floor", "parentId": 4, "parentName": "Household Activities"},
        ],
        "database": {
            "sJFgo9H6zNo": {
                "subset": "validation",
                "duration": 139.0,
                "resolution": "640x360",
                "url": "https://www.youtube.com/watch?v=sJFgo9H6zNo",
                "annotations": [
                    {"segment": [0.0, 48.2], "label": "Playing squash"},
                    {"segment": [60.0, 90.0], "label": "Vacuuming floor"},
                    {"segment": [95.0, 99.0], "label": "Playing squash"},
                ],
            },
            "V1xi2ytlhmo": {
                "subset": "validation",
                "duration": 20.0,
                "resolution": "640x360",
                "url": "",
                "annotations": [{"segment": [1, 2], "label": "Vacuuming floor"}],
            },
            "missing_one": {
                "subset": "validation",
                "duration": 20.0,
                "resolution": "640x360",
                "url": "",
                "annotations": [{"segment": [1, 2], "label": "Vacuuming floor"}],
            },
            "trainvid": {
                "subset": "training",
                "duration": 20.0,
                "resolution": "640x360",
                "url": "",
                "annotations": [{"segment": [1, 2], "label": "Playing squash"}],
            },
            "testvid": {"subset": "testing", "duration": 20.0, "resolution": "640x360", "url": "", "annotations": []},
        },
    }
    (root / "activity_net.v1-3.min.json").write_text(json.dumps(data))
    _mp4(root / "v1-3" / "val" / "v_sJFgo9H6zNo.mp4")
    _mp4(root / "V1xi2ytlhmo.mp4")
    _mp4(root / "v_trainvid.mp4")
    summary = ingest(_cfg(tmp_path, "activitynet", root))
    _, m, v = _outputs(tmp_path)
    assert summary["missing_ids"] == ["missing_one"] and sorted(m.index) == ["V1xi2ytlhmo", "sJFgo9H6zNo"]
    assert m.loc["sJFgo9H6zNo", "labels"] == ["Playing squash", "Vacuuming floor"]
    assert set(m["split"]) == {"open_activitynet"}
    verticals = dict(zip(v["label"], v["vertical"]))
    assert verticals == {
        "Playing squash": "Sports, Exercise, and Recreation",
        "Vacuuming floor": "Household Activities",
    }
    assert set(v["kind"]) == {"action"} and set(v["vocab"]) == {"open_activitynet"}
    assert summary["notes"]["skipped_subsets"] == {"training": 1, "testing": 1}  # reported, not silently dropped
    # the subsets param: training videos join the open split when asked for
    summary = ingest(_cfg(tmp_path, "activitynet", root, activitynet_subsets=["validation", "training"]))
    _, m, _ = _outputs(tmp_path)
    assert "trainvid" in m.index and summary["notes"]["skipped_subsets"] == {"testing": 1}


# --------------------------------------------------------------------------------------------------
# RareAct
# --------------------------------------------------------------------------------------------------
def test_rareact_cuts_segments(tmp_path):
    root = tmp_path / "rareact"
    root.mkdir()
    (root / "rareact.csv").write_text(
        "id,video_id,start,end,class_id,verb,noun,annotation\n"
        "0,7frRY7aGwMU,0,2,0,shake,tomato,1\n"
        "1,7frRY7aGwMU,0,2,1,cut,tomato,3\n"
        "2,7frRY7aGwMU,2,3,2,microwave,phone,4\n"
        "3,TLMroVuZ_Nc,0,2,3,close,blender,0\n"
        "4,notthere999,0,2,0,shake,tomato,2\n"
    )
    _mp4(root / "7frRY7aGwMU.mp4", frames=12, fps=4)  # 3 s
    _mp4(root / "TLMroVuZ_Nc.mp4", frames=8, fps=4)
    summary = ingest(_cfg(tmp_path, "rareact", root, segment_fps=2, segment_short_side=16))
    raw, m, v = _outputs(tmp_path)
    assert summary["missing_ids"] == ["notthere999_000000_000002"] and summary["notes"]["clips_cut"] == 3
    first = m.loc["7frRY7aGwMU_000000_000002"]
    assert first["labels"] == ["shake", "tomato", "shake tomato"] and first["split"] == "open_rareact"
    assert m.loc["7frRY7aGwMU_000002_000003", "labels"] == ["microwave", "phone"]
    assert m.loc["TLMroVuZ_Nc_000000_000002", "labels"] == []  # a plain negative: no positive label (clean drops it)
    frames = read_frames(resolve_video_path(raw / "manifest.parquet", first["path"]), 4, None)
    assert frames.shape[2] == 16  # 2 s at 2 fps -> 4 frames, short side 16
    kinds = dict(zip(v["label"], v["kind"]))
    assert kinds["shake"] == "action" and kinds["tomato"] == "entity" and kinds["shake tomato"] == "action"
    assert kinds["microwave"] == "action"  # a verb here before it is a noun
    assert dict(zip(v["label"], v["vertical"]))["cut tomato"] == "Interactions"
    assert set(v["vocab"]) == {"open_rareact"}


# --------------------------------------------------------------------------------------------------
# Mixing and errors
# --------------------------------------------------------------------------------------------------
def test_mix_kinetics_and_activitynet(tmp_path):
    k = tmp_path / "k"
    k.mkdir()
    (k / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,0,10,train\n")
    _mp4(k / "abc_000000_000010.mp4")
    a = tmp_path / "a"
    a.mkdir()
    (a / "activity_net.v1-3.min.json").write_text(
        json.dumps(
            {
                "database": {
                    "abc_000000_000010": {
                        "subset": "validation",
                        "annotations": [{"label": "Abseiling", "segment": [0, 1]}],
                    }
                }
            }
        )
    )
    _mp4(a / "v_abc_000000_000010.mp4")
    cfg = _cfg(tmp_path, "kinetics, activitynet", roots={"kinetics": str(k), "activitynet": str(a)})
    summary = ingest(cfg)
    _, m, v = _outputs(tmp_path)
    assert summary["by_source"] == {"kinetics": 1, "activitynet": 1}
    assert sorted(m.index) == ["abc_000000_000010", "activitynet:abc_000000_000010"]  # id clash -> prefixed
    assert sorted(zip(v["vocab"], v["label"])) == [("open_activitynet", "Abseiling"), ("train", "abseiling")]
    with pytest.raises(IngestError, match="cannot mix"):
        ingest(_cfg(tmp_path, "kinetics,synthworld", k))


def test_missing_root_and_files_fail_clearly(tmp_path):
    with pytest.raises(DatasetFormatError, match="ingest.root or ingest.roots.kinetics"):
        ingest(_cfg(tmp_path, "kinetics"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match="rareact.csv"):
        ingest(_cfg(tmp_path, "rareact", empty))
    with pytest.raises(DatasetFormatError, match="vocabulary.csv"):
        ingest(_cfg(tmp_path, "youtube8m", empty))
    with pytest.raises(IngestError, match="unknown ingest.source 'nope'"):
        ingest(_cfg(tmp_path, "nope", empty))
