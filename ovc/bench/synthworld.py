"""Benchmark ``synthworld``: render + H.264-encode synthetic clips with every usable core.

    ovc bench synthworld            # 2,000 clips of 16 frames at 64x64
    ovc bench synthworld --quick    # 200 clips

Target: ≤ 2 min for 2,000 clips on 2 cores (the default world is ≈2,100 clips).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_synthworld(quick: bool = False) -> dict[str, Any]:
    """Plan, render and encode a train split of 2,000 clips (200 with ``quick``) into a temp dir.

    Returns:
        clips, seconds (plan + render + encode, wall), seconds_per_1000_clips, workers, plus CPU
        seconds (process + workers), the planning share and the mean mp4 size.
    """
    from ovc.data.synthworld import WORLD, plan_split, render_all, resolve_workers

    n = 200 if quick else 2000
    workers = resolve_workers(0)
    out = Path(tempfile.mkdtemp(prefix="ovc-bench-synthworld-"))
    try:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        specs = plan_split(
            WORLD, "train", n, seed=0, size=64, num_frames=16, max_objects=2, game_title_rate=0.08, rare_label_rate=0.01
        )
        t_plan = time.perf_counter() - t0
        errors = render_all(specs, out, fps=8, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        sizes = [p.stat().st_size for p in out.glob("*.mp4")]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "clips": n,
        "frames_per_clip": 16,
        "size": 64,
        "seconds": round(seconds, 2),
        "seconds_per_1000_clips": round(seconds / n * 1000, 2),
        "workers": workers,
        # CPU time of this process + its (joined) workers: robust to other load on shared cores
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_clip": round(cpu / n * 1000, 2),
        "plan_seconds": round(t_plan, 3),
        "failed": len(errors),
        "mean_mp4_bytes": int(sum(sizes) / max(len(sizes), 1)),
    }
