"""``ovc predict``'s decode stage without Ray: bounded batches and the per-video row count contract."""

from __future__ import annotations

import numpy as np
import pytest

from ovc.infer import predict as P

READER = {"num_frames": 2, "image_size": 16, "max_pixels": 10**6}


def _video(path, seconds: float = 2.0, fps: int = 10) -> str:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((32, 32, 3), (i * 10) % 255, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)


def _batch(videos):
    return {"partition": np.zeros(len(videos), np.int64), "video": np.array(videos)}


def test_long_video_windows_come_in_bounded_batches(tmp_path):
    videos = [_video(tmp_path / "a.mp4"), _video(tmp_path / "b.mp4")]
    # 2 s in 0.5 s windows every 0.25 s: 7 windows per video, 14 rows in batches of at most 3
    batches = list(P.decode_rows(_batch(videos), READER, 0.5, 0.25, True, max_clips=3))
    assert [len(b["video"]) for b in batches] == [3, 3, 3, 3, 2]
    assert all(b["frames"].shape[1:] == (2, 3, 16, 16) and b["frames"].dtype == np.uint8 for b in batches)
    rows = np.concatenate([b["video"] for b in batches])
    assert (rows == videos[0]).sum() == 7 and (rows == videos[1]).sum() == 7
    assert {int(n) for b in batches for n in b["n_clips"]} == {7}
    assert all(e == "" for b in batches for e in b["error"])


def test_a_failure_mid_video_still_gives_n_clips_rows(tmp_path, monkeypatch):
    """The driver completes a video after n_clips rows: a decode error after some windows were emitted
    must fill the rest with error rows, or the partition would never be written."""
    import ovc.data.video as V

    real, calls = V.read_frames, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("truncated stream (simulated)")
        return real(*a, **kw)

    monkeypatch.setattr(V, "read_frames", flaky)
    video = _video(tmp_path / "a.mp4")
    batches = list(P.decode_rows(_batch([video]), READER, 0.5, 0.25, True, max_clips=3))
    errors = [e for b in batches for e in b["error"]]
    assert len(errors) == 7 and errors[:3] == [""] * 3
    assert all("truncated stream" in e and video in e for e in errors[3:])
    assert max(len(b["video"]) for b in batches) <= 3


@pytest.mark.parametrize("segments", [False, True])
def test_unreadable_file_is_one_error_row(tmp_path, segments):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    [batch] = list(P.decode_rows(_batch([str(bad)]), READER, 0.5, 0.25, segments, max_clips=3))
    assert batch["n_clips"].tolist() == [1] and str(bad) in batch["error"][0]


@pytest.mark.parametrize(
    "threshold,top_k,match",
    [(5, None, "got 5"), (float("nan"), None, "got nan"), ("high", None, "got 'high'"), (None, None, "needs top_k")],
)
def test_bad_threshold_is_refused_before_any_work(tmp_path, threshold, top_k, match):
    """`--threshold 5` used to run the whole collection and keep no label; the flow passes floats unchecked."""
    from ovc.config import Config

    out = tmp_path / "out"
    with pytest.raises(P.PredictError, match=match):
        P.predict(
            str(tmp_path),
            "train",
            out,
            cfg=Config(),
            registry_url=f"sqlite:///{tmp_path / 'none.db'}",
            threshold=threshold,
            top_k=top_k,
        )
    assert not out.exists() and not (tmp_path / "none.db").exists()
