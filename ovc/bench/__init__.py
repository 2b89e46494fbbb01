"""Benchmarks: ``ovc bench NAME`` prints one JSON object (figures, asked-for ratios, machine) and exits 0.

Each benchmark is a function ``fn(quick: bool) -> dict`` registered here by dotted path. Benchmarks
compare side by side in one run and never gate CI.
"""

from __future__ import annotations

import importlib
import os
import platform
from typing import Any, Callable

# bench name -> ("module:function", one-line description)
BENCHES: dict[str, tuple[str, str]] = {
    "synthworld": ("ovc.bench.synthworld:bench_synthworld", "render 2,000 clips (16 frames, 64x64); seconds_per_1000_clips"),
}


def get_bench(name: str) -> Callable[..., dict[str, Any]]:
    if name not in BENCHES:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
    module, fn = BENCHES[name][0].split(":")
    return getattr(importlib.import_module(module), fn)


def machine_info() -> dict[str, Any]:
    """Cores, torch threads and platform, attached to every benchmark's JSON."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info
