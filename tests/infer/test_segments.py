"""Which labels, when: sliding windows -> label intervals (``ovc classify --segments``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ovc.infer.segments import SegmentError, merge_windows, owned_spans, window_starts

N_LONG, CLIPS_PER = 3, 3  # long videos of CLIPS_PER synthetic-world clips each


def test_window_starts_cover_the_video_and_the_tail():
    assert window_starts(8.0, 2.0, 1.0).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert window_starts(7.5, 2.0, 2.0).tolist() == [0, 2, 4, 5.5]  # last window moved back to end at 7.5
    assert window_starts(1.2, 2.0, 1.0).tolist() == [0]  # shorter than a window: one window
    with pytest.raises(SegmentError, match="stride_s"):
        window_starts(8.0, 2.0, 0.0)
    lo, hi = owned_spans(np.array([0.0, 1, 2, 3]), 2.0, 5.0)
    assert lo.tolist() == [0, 1.5, 2.5, 3.5] and hi.tolist() == [1.5, 2.5, 3.5, 5.0]


def test_merge_windows_exact_on_constructed_scores():
    labels = ["cat", "dog", "never"]
    starts = np.arange(7.0)  # 2 s windows every 1 s over 8 s: owned spans [0,1.5],[1.5,2.5],...,[6.5,8]
    scores = np.array(
        [
            # cat  dog  never
            [0.90, 0.10, 0.0],
            [0.70, 0.20, 0.0],
            [0.40, 0.60, 0.0],  # cat drops below its 0.5: first run ends; dog starts (thr 0.6: p >= t passes)
            [0.30, 0.95, 0.0],
            [0.60, 0.59, 0.0],  # cat back; dog just below: dog's run ends
            [0.80, 0.10, 0.0],
            [0.55, 0.61, 0.0],  # dog again, alone in the last window (owns to the end)
        ],
        dtype=np.float32,
    )
    segs = merge_windows(
        scores, starts, window_s=2.0, duration=8.0, thresholds=np.array([0.5, 0.6, 0.5]), labels=labels
    )
    assert segs == [
        {"label": "cat", "start": 0.0, "end": 2.5, "score": pytest.approx(0.9)},
        {"label": "dog", "start": 2.5, "end": 4.5, "score": pytest.approx(0.95)},
        {"label": "cat", "start": 4.5, "end": 8.0, "score": pytest.approx(0.8)},
        {"label": "dog", "start": 6.5, "end": 8.0, "score": pytest.approx(0.61)},
    ]
    assert merge_windows(scores, starts, window_s=2.0, duration=8.0, thresholds=0.99, labels=labels) == []
    with pytest.raises(ValueError, match="scores must be"):
        merge_windows(scores[:, :2], starts, window_s=2.0, duration=8.0, thresholds=0.5, labels=labels)


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def truth_intervals(clip_labels: list[set[str]], clip_s: float) -> list[tuple[str, float, float, list[int]]]:
    """(label, start, end, clip indices) per run of consecutive clips carrying the label."""
    out = []
    for label in sorted(set().union(*clip_labels)):
        run: list[int] = []
        for i, labs in enumerate([*clip_labels, set()]):
            if label in labs:
                run.append(i)
            elif run:
                out.append((label, run[0] * clip_s, (run[-1] + 1) * clip_s, run))
                run = []
    return out


def interval_recall(
    pred: list[dict], truth: list[tuple[str, float, float, list[int]]], iou: float = 0.5
) -> tuple[int, int]:
    hit = sum(
        any(p["label"] == lab and _iou((p["start"], p["end"]), (a, b)) >= iou for p in pred) for lab, a, b, _ in truth
    )
    return hit, len(truth)


@pytest.fixture(scope="module")
def long_videos(published, tmp_path_factory):
    """N_LONG long videos, each CLIPS_PER synthetic-world val clips (2 s) back to back, with the single clips too."""
    from ovc.data.synthworld import WORLD, plan_split, render_clip, write_mp4

    w = published.cfg.world
    out = tmp_path_factory.mktemp("long")
    specs = plan_split(
        WORLD, "val", N_LONG * CLIPS_PER, seed=1234, size=w.size, num_frames=w.num_frames, max_objects=w.max_objects
    )
    videos = []
    for v in range(N_LONG):
        part = specs[CLIPS_PER * v : CLIPS_PER * v + CLIPS_PER]
        clips = []
        for s in part:
            frames = render_clip(s)
            write_mp4(frames, out / f"{s.video_id}.mp4", w.fps)
            clips.append(str(out / f"{s.video_id}.mp4"))
        write_mp4(np.concatenate([render_clip(s) for s in part]), out / f"long{v}.mp4", w.fps)
        videos.append({"path": str(out / f"long{v}.mp4"), "clips": clips, "labels": [set(s.labels) for s in part]})
    return {"videos": videos, "clip_s": w.num_frames / w.fps}


@pytest.mark.slow
def test_segments_recall_on_concatenated_synthetic_clips(
    published, published_model, long_videos, registry_copy, capsys
):
    """Interval recall at IoU >= 0.5 on the labels the model gets right on the single clips.

    The fixture's model has random weights, so its one global threshold separates nothing. Its
    per-label thresholds are calibrated here on the single clips (midway between the best
    negative and the worst positive clip, where those are separable; stored as label thresholds in
    the registry): the labels so calibrated are exactly the ones it gets right on every single clip,
    and the windows then have to find them at the right times in the long videos.
    """
    from ovc.infer import Classifier
    from ovc.registry import make_engine, set_threshold

    clip_s = long_videos["clip_s"]
    videos = long_videos["videos"]
    clf = Classifier.from_registry("v1", "train", registry_url=registry_copy, model=published_model, cfg=published.cfg)
    clips = [c for v in videos for c in v["clips"]]
    truth_sets = [labs for v in videos for labs in v["labels"]]
    p = clf.scores(published_model.embed_videos(clips).embeddings)  # (N_LONG * CLIPS_PER, L)
    engine = make_engine(registry_copy)
    separable = set()
    for j, label in enumerate(clf.labels):
        pos = np.array([label in t for t in truth_sets])
        if pos.any() and not pos.all() and p[pos, j].min() > p[~pos, j].max():
            set_threshold(engine, float(p[pos, j].min() + p[~pos, j].max()) / 2, "v1", vocab="train", label=label)
            separable.add(label)
    clf = Classifier.from_registry("v1", "train", engine=engine, model=published_model, cfg=published.cfg)
    engine.dispose()

    hits = total = 0
    for v in videos:
        singles = clf.classify(v["clips"])
        predicted = [{x["label"] for x in r.labels} for r in singles]
        [res] = clf.classify_segments(v["path"], window_s=clip_s, stride_s=clip_s / 2)
        assert res.error is None and res.duration == pytest.approx(CLIPS_PER * clip_s, abs=0.2)
        assert res.windows == 2 * CLIPS_PER - 1
        for s in res.segments:
            assert set(s) == {"label", "start", "end", "score"} and 0 <= s["start"] < s["end"] <= res.duration
        truth = truth_intervals([labs & separable for labs in v["labels"]], clip_s)
        for label, _, _, _idx in truth:  # right on the single clips: predicted on exactly its clips
            assert all((label in pr) == (label in labs) for pr, labs in zip(predicted, v["labels"]))
        h, n = interval_recall(res.segments, truth)
        hits, total = hits + h, total + n
    with capsys.disabled():
        print(
            f"\nsegments: interval recall@IoU0.5 = {hits}/{total} = {hits / max(total, 1):.2f} "
            f"({len(separable)} labels right on the single clips)"
        )
    assert total >= 3
    assert hits / total >= 0.8


@pytest.mark.slow
def test_classify_cli_segments_json(published, long_videos, tmp_path):
    from typer.testing import CliRunner

    from ovc.cli import app

    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    video = long_videos["videos"][0]["path"]
    args = [
        "classify",
        video,
        str(bad),
        "--vocab",
        "train",
        "--registry",
        published.url,
        "--segments",
        "--json",
        "--threshold",
        "0.3",
        *[a for o in published.overrides for a in ("-S", o)],
    ]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [o["video"] for o in out] == [video, str(bad)]
    assert out[0]["error"] is None and out[0]["windows"] == 2 * CLIPS_PER - 1 and out[0]["segments"]
    assert all(set(s) == {"label", "start", "end", "score"} and s["score"] >= 0.3 for s in out[0]["segments"])
    assert out[1]["segments"] == [] and str(bad) in out[1]["error"]
    text = CliRunner().invoke(app, [*args[:2], *args[3:7], "--segments"], catch_exceptions=False)
    assert text.exit_code == 0 and " s  " in text.stdout
    none = CliRunner().invoke(app, [*args[:2], *args[3:7], "--segments", "--threshold", "none"])
    assert none.exit_code == 2 and "needs a threshold" in none.stderr
