"""The synthetic video world and the ``ingest`` stage: determinism, real H.264 mp4s, split design."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import decord
import numpy as np
import pandas as pd
import pytest

from ovc.config import Config
from ovc.data import synthworld as sw
from ovc.data.ingest import IngestError
from ovc.data.manifest import read_manifest, read_vocabulary
from ovc.pipeline import run_stage
from ovc.stages.ingest import ingest

W = sw.WORLD
PLAN = dict(n_train=120, n_val=30, n_test=60, game_title_rate=0.08, rare_label_rate=0.02)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _decode(path: Path) -> np.ndarray:
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy()  # (T, H, W, 3)


def _cfg(data: Path, workers: int = 1, **world) -> Config:
    cfg = Config()
    cfg.paths.data = str(data)
    sizes = dict(n_train=20, n_val=6, n_test=6, workers=workers)
    sizes.update(world)
    for k, v in sizes.items():
        setattr(cfg.world, k, v)
    return cfg


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[Config, dict]:
    """One small world rendered by the real stage with a 2-process pool."""
    cfg = _cfg(tmp_path_factory.mktemp("world"), workers=2, game_title_rate=0.1, rare_label_rate=0.1)
    return cfg, run_stage("ingest", cfg)


@pytest.fixture(scope="module")
def planned() -> list[sw.ClipSpec]:
    """A larger plan (no rendering) for statistical split-design checks."""
    return sw.plan_world(seed=0, **PLAN)


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------
def test_same_seed_same_plan_different_seed_different():
    a, b, c = (sw.plan_world(seed=s, **PLAN) for s in (0, 0, 1))
    assert a == b
    assert sw.manifest_rows(a) == sw.manifest_rows(b)
    assert [s.labels for s in a] != [s.labels for s in c]
    assert [s.caption for s in a] != [s.caption for s in c]


def test_decoded_frames_deterministic_by_seed(tmp_path):
    spec0 = sw.make_clip_spec(W, "train", 3, seed=0)
    spec1 = sw.make_clip_spec(W, "train", 3, seed=1)
    for name, spec in (("a", spec0), ("b", spec0), ("c", spec1)):
        sw.write_mp4(sw.render_clip(spec), tmp_path / f"{name}.mp4", fps=8)
    a, b, c = (_decode(tmp_path / f"{n}.mp4") for n in "abc")
    assert np.array_equal(a, b)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert not np.array_equal(a, c)


def test_parallel_render_equals_serial(ingested, tmp_path):
    cfg, _ = ingested
    w = cfg.world
    spec = sw.make_clip_spec(W, "val", 2, seed=w.seed, size=w.size, num_frames=w.num_frames, max_objects=w.max_objects)
    sw.write_mp4(sw.render_clip(spec), tmp_path / "serial.mp4", fps=w.fps)
    raw = Path(cfg.paths.data) / "raw"
    assert np.array_equal(_decode(tmp_path / "serial.mp4"), _decode(raw / "videos" / "val_000002.mp4"))


# --------------------------------------------------------------------------------------------------
# Real mp4s
# --------------------------------------------------------------------------------------------------
def test_mp4s_are_h264_with_right_frames_and_size(ingested):
    cfg, summary = ingested
    raw = Path(cfg.paths.data) / "raw"
    df = read_manifest(raw / "manifest.parquet", allow_empty_labels=True)
    for rel in df["path"].iloc[:: max(1, len(df) // 6)]:
        path = raw / rel
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == cfg.world.num_frames
        assert frames[0].shape == (cfg.world.size, cfg.world.size, 3)
        vr = decord.VideoReader(str(path))
        assert len(vr) == cfg.world.num_frames
        assert vr[0].shape == (cfg.world.size, cfg.world.size, 3)


def test_decoded_frames_match_rendered_pixels(tmp_path):
    spec = sw.make_clip_spec(W, "train", 0, seed=5)
    frames = sw.render_clip(spec)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    sw.write_mp4(frames, tmp_path / "x.mp4", fps=8)
    decoded = _decode(tmp_path / "x.mp4")
    assert decoded.shape == frames.shape
    # lossy H.264 + yuv420p, but close: mean abs error of a few grey levels
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 6.0


def test_actions_are_visible_in_pixels():
    """Moving objects move, still ones don't, blinking ones vanish every other pair of frames."""
    base = dict(shape="square", colour="red", rgb=(225, 30, 35), x=32.0, y=32.0, radius=11.0, angle=0.0)
    bg_scene = "night sky"
    for action, kw in [
        ("still", {}),
        ("moving right", {"x": 18.0, "travel": 26.0}),
        ("blinking", {}),
        ("rotating", {"spin": 15.0}),
        ("growing", {}),
    ]:
        obj = sw.ObjectSpec(action=action, **{**base, **kw})
        spec = sw.ClipSpec("v", "train", 0, bg_scene, (obj,), 1, 64, 16, "", ())
        clip = sw.render_clip(spec).astype(np.int16)
        diff = np.abs(clip[1:] - clip[:-1]).sum(axis=(1, 2, 3))  # (T-1,) change between frames
        if action == "still":
            assert diff.max() == 0
        else:
            assert (diff > 0).sum() >= 7, action
    with pytest.raises(sw.SynthWorldError, match="unknown split"):
        sw.make_clip_spec(W, "nope", 0, seed=0)


# --------------------------------------------------------------------------------------------------
# Split design
# --------------------------------------------------------------------------------------------------
def test_closed_splits_never_show_or_label_held_out_items(planned):
    heldout_labels = set(W.heldout_shapes) | set(W.heldout_scenes) | set(W.heldout_actions)
    synonyms = set(W.synonyms.values())
    reserved = {W.combo(s, a) for s, a in W.reserved_combos}
    for spec in planned:
        if spec.split not in ("train", "val", "open_synonyms"):
            continue
        assert spec.scene not in W.heldout_scenes
        for o in spec.objects:
            assert o.shape not in W.heldout_shapes and o.action not in W.heldout_actions
            assert (o.shape, o.action) not in set(W.reserved_combos)
        if spec.split == "open_synonyms":
            continue
        for lab in spec.labels:
            assert lab not in heldout_labels | synonyms | reserved, (spec.video_id, lab)
            for word in (*W.heldout_shapes, *W.heldout_scenes, *W.heldout_actions, *synonyms):
                assert not _has_phrase(lab, word), (spec.video_id, lab)
    for spec in planned:  # rotation only where it is visible
        assert all(not (o.action == "rotating" and o.shape in W.rotation_invariant) for o in spec.objects)


def test_open_splits_test_what_they_claim(planned):
    by_split: dict[str, list[sw.ClipSpec]] = {}
    for s in planned:
        by_split.setdefault(s.split, []).append(s)
    heldout_entities = set(W.heldout_shapes) | set(W.heldout_scenes)
    assert all(heldout_entities & set(s.labels) for s in by_split["open_entities"])
    assert {lab for s in by_split["open_entities"] for lab in s.labels} >= heldout_entities
    assert all(set(W.heldout_actions) & set(s.labels) for s in by_split["open_actions"])
    reserved = {W.combo(s, a) for s, a in W.reserved_combos}
    train_labels = {lab for s in by_split["train"] + by_split["val"] for lab in s.labels}
    assert all(reserved & set(s.labels) for s in by_split["open_rare"])
    assert not reserved & train_labels
    synonyms = set(W.synonyms.values())
    vocab = {}
    for row in W.vocabulary():
        vocab.setdefault(row["vocab"], set()).add(row["label"])
    for s in by_split["open_synonyms"]:
        syn_labels = {lab for lab in s.labels if any(_has_phrase(lab, syn) for syn in synonyms)}
        base = set(s.labels) - syn_labels
        # every synonym label comes with its base word on the same video, and nothing else
        plain = {v: k for k, v in W.synonyms.items()}
        expect = {
            " ".join(plain.get(w, w) for w in ([lab] if lab in plain else lab.split(" ", 1))) for lab in syn_labels
        }
        assert syn_labels and base == expect and base <= vocab["train"], s.video_id
        assert any(W.synonyms[o.action] in s.labels for o in s.objects)  # action synonyms too
    assert {W.synonyms[a] for a in W.train_actions} <= vocab["open_synonyms"]
    assert vocab["open_synonyms"] - vocab["train"] == {
        lab for lab in vocab["open_synonyms"] if any(_has_phrase(lab, x) for x in synonyms)
    }
    # open_temporal: only time-reversed twins, each twin as frequent in frames as the other by construction
    temporal = set(W.temporal_actions)
    assert vocab["open_temporal"] == temporal and temporal <= vocab["train"]
    assert all(o.action in temporal for s in by_split["open_temporal"] for o in s.objects)
    assert set(by_split["open_temporal"][0].labels) <= temporal
    # open_actions_related: a held-out related (diagonal) action in every clip, never in train/val
    related = set(W.related_actions)
    assert all(related & set(s.labels) for s in by_split["open_actions_related"])
    assert not related & train_labels and vocab["open_actions_related"] - vocab["train"] == related
    assert not related & vocab["open_actions"]  # the unrelated hard case is reported apart


def test_captions_static_and_cover_every_entity_word(planned):
    captions = [s.caption for s in planned]
    all_text = "\n".join(captions)
    for word in W.entity_words():  # held-out entities included (the bootstrap CLIP must learn them)
        assert _has_phrase(all_text, word), word
    for syn in W.synonyms.values():
        assert not _has_phrase(all_text, syn), syn
    for cap in captions:
        assert cap and not _words(cap) & sw.MOTION_WORDS, cap
    # held-out entities reach captions only through the open_entities split, never train/val
    for s in planned:
        if s.split in ("train", "val"):
            assert not any(_has_phrase(s.caption, w) for w in (*W.heldout_shapes, *W.heldout_scenes))


def test_noise_labels_for_clean(planned):
    train = [s for s in planned if s.split == "train"]
    counts = pd.Series([lab for s in train for lab in s.labels]).value_counts()
    games = [g for g in W.game_titles if g in counts]
    rare = [r for r in W.rare_labels if r in counts]
    assert games and rare
    assert all(counts[r] < 5 for r in rare)  # under clean.min_count=5
    open_labels = {lab for s in planned if s.split.startswith("open_") for lab in s.labels}
    assert not open_labels & (set(W.game_titles) | set(W.rare_labels))


def test_vocabulary_and_attributes_cover_manifest(ingested):
    cfg, _ = ingested
    raw = Path(cfg.paths.data) / "raw"
    df = read_manifest(raw / "manifest.parquet", allow_empty_labels=True)
    vocab = read_vocabulary(raw / "vocabulary.parquet")
    attributes = json.loads((raw / "attributes.json").read_text())
    assert set(vocab["vocab"]) == {"train", *sw.OPEN_SPLITS}
    assert set(vocab["kind"]) == {"entity", "action"}
    assert set(vocab.loc[vocab["label"].isin(W.game_titles), "vertical"]) == {"Games"}
    by_vocab = vocab.groupby("vocab")["label"].apply(set).to_dict()
    for row in df.itertuples():
        key = "train" if row.split in ("train", "val") else row.split
        assert row.labels, row.video_id
        assert set(row.labels) <= by_vocab[key], (row.video_id, set(row.labels) - by_vocab[key])
        assert row.source == "synthworld" and row.path == f"videos/{row.video_id}.mp4"
        assert (raw / row.path).is_file()
    assert set(vocab["label"]) == set(attributes)
    synonyms = set(W.synonyms.values())
    for label, descriptions in attributes.items():
        assert 2 <= len(descriptions) <= 4, label
        if any(_has_phrase(label, s) for s in synonyms):  # described in plain words
            assert not any(_has_phrase(d, s) for d in descriptions for s in synonyms), label
    assert set(by_vocab["open_entities"]) >= set(W.entity_words())
    assert set(by_vocab["open_actions"]) == set(W.actions)


# --------------------------------------------------------------------------------------------------
# Frame sampler (bootstrap CLIP)
# --------------------------------------------------------------------------------------------------
def test_sample_frame_deterministic_and_static():
    a = [sw.sample_frame(np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0].image, a[1].image) and a[0].caption == a[1].caption
    rng = np.random.default_rng(0)
    samples = [sw.sample_frame(rng, include_heldout=False) for _ in range(40)]
    for s in samples:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert not _words(s.caption) & sw.MOTION_WORDS
        assert s.spec.scene not in W.heldout_scenes and all(o.shape not in W.heldout_shapes for o in s.spec.objects)


# --------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------
def test_ingest_stage_summary(ingested):
    cfg, summary = ingested
    raw = Path(cfg.paths.data) / "raw"
    for name in ("manifest.parquet", "vocabulary.parquet", "attributes.json"):
        assert (raw / name).is_file()
    assert summary["videos"] == 20 + 6 + len(sw.OPEN_SPLITS) * 6 and len(sw.OPEN_SPLITS) == 6 and summary["failed"] == 0
    assert summary["splits"] == {"train": 20, "val": 6, **{s: 6 for s in sw.OPEN_SPLITS}}
    assert len(list((raw / "videos").glob("*.mp4"))) == summary["videos"]
    assert summary["label_counts"]["train"] and summary["seconds"] >= 0


def test_ingest_idempotent_and_atomic(tmp_path):
    cfg = _cfg(tmp_path, workers=1, n_train=4, n_val=2, n_test=1)
    ingest(cfg)
    raw = tmp_path / "raw"
    (raw / "videos" / "stale.mp4").write_bytes(b"old")  # a leftover from an earlier run
    first = pd.read_parquet(raw / "manifest.parquet")
    ingest(cfg)
    assert not (raw / "videos" / "stale.mp4").exists()
    pd.testing.assert_frame_equal(first, pd.read_parquet(raw / "manifest.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temp/old dirs left behind


def test_unknown_source_lists_known(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.ingest.source = "youtube9m"
    with pytest.raises(IngestError, match="synthworld"):
        run_stage("ingest", cfg)


def test_temporal_twins_are_time_reversals():
    """open_temporal's pairs: a clip of one action played backwards is a clip of its twin (same frames),
    and the twins' start positions are drawn so their frame distributions match: a frame mean cannot tell them apart."""
    import dataclasses

    T = 16
    base = sw.ObjectSpec(
        shape="square",
        colour="red",
        action="moving left",
        rgb=(200, 30, 30),
        x=44.0,
        y=30.0,
        radius=10.0,
        angle=0.0,
        travel=24.0,
    )
    twins = {
        "moving left": ("moving right", dict(x=20.0)),
        "moving up": ("moving down", dict(y=6.0)),
        "growing": ("shrinking", {}),
        "moving up left": ("moving down right", dict(x=44.0 - 24.0 / 2**0.5, y=30.0 - 24.0 / 2**0.5)),
    }
    for action, (twin, start) in twins.items():
        a = dataclasses.replace(base, action=action)
        b = dataclasses.replace(base, action=twin, **start)
        for t in range(T):
            sa, sb = sw.object_state(a, t, T), sw.object_state(b, T - 1 - t, T)
            assert sa == pytest.approx(sb), (action, t)
    # start positions: a left mover's start is distributed like a right mover's end
    objs = [o for spec in sw.plan_split(W, "open_temporal", 600, seed=0) for o in spec.objects]
    start_l = [o.x for o in objs if o.action == "moving left"]
    end_r = [o.x + o.travel for o in objs if o.action == "moving right"]
    assert len(start_l) > 50 and len(end_r) > 50
    assert abs(np.mean(start_l) - np.mean(end_r)) < 2.0 and abs(np.std(start_l) - np.std(end_r)) < 2.0
