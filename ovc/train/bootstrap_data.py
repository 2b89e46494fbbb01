"""Captioned still frames for the CLIP bootstrap (torch-free, so render processes start fast).

Frames come from :func:`ovc.data.synthworld.sample_frame` — every scene, shape and colour of the
world, held-out entities included (DESIGN.md: hold combinations out of the video *labels*, never
out of CLIP's captions), any pose, with a static caption (no motion word; sometimes partial: "a red
object", "a star", "a beach"). A pool is rendered in fixed chunks of :data:`CHUNK` frames, each
from its own RNG stream ``(seed, chunk)``, so the pool is identical for any number of processes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from ovc.data.synthworld import WORLD, World, sample_frame

log = logging.getLogger(__name__)

CHUNK = 256  # frames per render task
EVAL_STREAM_OFFSET = 1 << 20  # eval frames use streams no training chunk uses (fresh frames)

Frames = tuple[np.ndarray, list[str], list[dict[str, Any]]]


def render_frames(
    n: int,
    seed: int,
    *,
    size: int = 64,
    max_objects: int = 2,
    world: World = WORLD,
    stream: int = 0,
) -> Frames:
    """Render ``n`` captioned still frames, deterministic in ``(seed, stream)``.

    Args:
        n: number of frames.
        seed: master seed.
        size: frame height = width, pixels.
        max_objects: 1..max_objects objects per frame.
        world: the world definition.
        stream: independent RNG stream id (chunk of a pool; train vs eval).
    Returns:
        ``(images (n, size, size, 3) uint8, captions, attributes)`` with one attribute dict per
        frame: ``{"scene": str, "objects": [(colour, shape), ...]}``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB0075, int(stream)]))
    images = np.empty((n, size, size, 3), np.uint8)
    captions: list[str] = []
    attrs: list[dict[str, Any]] = []
    for i in range(n):
        fs = sample_frame(rng, world=world, size=size, max_objects=max_objects)
        images[i] = fs.image
        captions.append(fs.caption)
        attrs.append({"scene": fs.spec.scene, "objects": [(o.colour, o.shape) for o in fs.spec.objects]})
    return images, captions, attrs


def _render_chunk(job: tuple[int, int, int, int, int]) -> Frames:
    n, seed, size, max_objects, stream = job
    return render_frames(n, seed, size=size, max_objects=max_objects, stream=stream)


def render_pool(
    n: int,
    seed: int,
    *,
    size: int = 64,
    max_objects: int = 2,
    workers: int = 1,
    stream_offset: int = 0,
) -> Frames:
    """:func:`render_frames` of ``n`` frames in chunks over ``workers`` processes (same result for any ``workers``).

    Processes are spawned (no fork of a process that holds torch threads); where spawning is not
    possible (e.g. an unguarded ``__main__``), rendering falls back to this process with a warning.
    """
    jobs = [(min(CHUNK, n - s), seed, size, max_objects, stream_offset + s // CHUNK) for s in range(0, n, CHUNK)]
    parts: list[Frames] | None = None
    if workers > 1 and len(jobs) > 1:
        try:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
                parts = list(ex.map(_render_chunk, jobs))
        except (BrokenProcessPool, RuntimeError, OSError) as e:
            log.warning(
                "frame rendering in %d processes failed (%s: %s); rendering serially", workers, type(e).__name__, e
            )
    if parts is None:
        parts = [_render_chunk(j) for j in jobs]
    images = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, size, size, 3), np.uint8)
    return images, [c for p in parts for c in p[1]], [a for p in parts for a in p[2]]
