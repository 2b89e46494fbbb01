"""The one video data path (ovc/data/loader.py): worker processes, determinism per (seed, epoch,
index), bad files warned by name and counted, max_pixels honoured."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from ovc.data.loader import ClipDataset, ClipLoader, to_model_input
from tests.data.test_video import _square_frame, write_clip


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    good = [write_clip(d / f"g{i}.mp4", [_square_frame(i + j, 64, 48) for j in range(24)]) for i in range(4)]
    bad = d / "broken.mp4"
    bad.write_text("not a video\n" * 10)
    wide = write_clip(d / "wide.mp4", [np.zeros((48, 128, 3), np.uint8)] * 4)  # 6144 px
    return [str(p) for p in good], str(bad), str(wide)


def _frames(loader: ClipLoader, batches, epoch=0):
    return {i: f for b in loader.batches(batches, epoch) for i, f in zip(b.indices, b.frames)}


def test_workers_and_inline_decode_the_same_frames_per_seed_epoch_index(videos):
    good, _, _ = videos
    ds = ClipDataset(good, num_frames=4, image_size=32, sampling="random", seed=7)
    inline = _frames(ClipLoader(ds, num_workers=0), [[0, 1], [2, 3]], epoch=1)
    workers = _frames(ClipLoader(ds, num_workers=2), [[3, 1], [0], [2]], epoch=1)  # other batching, other workers
    assert all(torch.equal(inline[i], workers[i]) for i in range(4))
    other_epoch = _frames(ClipLoader(ds, num_workers=0), [[0, 1, 2, 3]], epoch=2)
    assert any(not torch.equal(inline[i], other_epoch[i]) for i in range(4))  # new offsets each epoch


def test_bad_files_are_warned_by_name_counted_and_skipped(videos, caplog):
    good, bad, wide = videos
    ds = ClipDataset([good[0], bad, good[1], wide], num_frames=2, image_size=32, max_pixels=5000)
    loader = ClipLoader(ds, num_workers=2, stage="evaluate val")
    with caplog.at_level(logging.WARNING, logger="ovc.data.loader"):
        batches = list(loader.sequential(batch_size=4))
    assert [b.indices for b in batches] == [[0, 2]] and batches[0].frames.shape == (2, 2, 3, 32, 32)
    assert [f.path for f in loader.failures] == [bad, wide] and "max_pixels=5000" in loader.failures[1].message
    assert loader.summary()["skipped_videos"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("evaluate val" in m and "broken.mp4" in m for m in messages)


def test_frames_move_as_uint8_and_are_normalised_on_the_device():
    x = torch.full((1, 2, 3, 4, 4), 255, dtype=torch.uint8)
    y = to_model_input(x, "cpu", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert y.dtype == torch.float32 and torch.allclose(y, torch.ones_like(y))
    assert to_model_input(x, "meta", (0.5,) * 3, (0.5,) * 3).device.type == "meta"
