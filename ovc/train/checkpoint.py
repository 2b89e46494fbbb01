"""Epoch checkpoints: trainable weights as safetensors, optimizer state via ``weights_only`` torch files.

Layout of a training run's directory::

    <run>/checkpoints/epoch_0001/weights.safetensors   trainable parameters only (frozen CLIP/LLM are not saved)
    <run>/checkpoints/epoch_0001/optimizer.pt          optimizer state (loaded with weights_only=True)
    <run>/checkpoints/epoch_0001/state.json            epoch, step, history of metrics
    <run>/final.safetensors                            last weights (what evaluate/publish load)

Every directory is written under a temporary name and renamed into place, so a run killed at any
moment leaves either a complete checkpoint or none; resume picks the newest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ovc.models.methods import load_weights  # noqa: F401 (one reader of weights files, shared with evaluate/publish)

CHECKPOINTS = "checkpoints"
_PREFIX = "epoch_"


def _clone_contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def _to_cpu(obj: Any) -> Any:
    """A nested state (dicts/lists of tensors) with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_weights(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write tensors as safetensors atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(_clone_contiguous(tensors), tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(
    run_dir: str | os.PathLike,
    epoch: int,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Write ``<run>/checkpoints/epoch_XXXX`` atomically (temp dir, then rename)."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
    try:
        save_file(_clone_contiguous(weights), str(tmp / "weights.safetensors"))
        torch.save(_to_cpu(optimizer_state), tmp / "optimizer.pt")  # no device in the file: a GPU run resumes on CPU
        (tmp / "state.json").write_text(json.dumps({**state, "epoch": epoch}, indent=2, default=float))
        if final.exists():  # a re-run of the same epoch replaces it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """Newest complete ``epoch_XXXX`` directory, or None (half-written temp dirs are ignored)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = [
        p
        for p in root.iterdir()
        if p.is_dir()
        and p.name.startswith(_PREFIX)
        and (p / "state.json").exists()
        and (p / "weights.safetensors").exists()
    ]
    return max(done, key=lambda p: int(p.name[len(_PREFIX) :])) if done else None


def checkpoint_state(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint (epoch, history, fingerprint) without loading tensors."""
    return json.loads((Path(ckpt_dir) / "state.json").read_text())


def load_checkpoint(ckpt_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(weights, optimizer_state, state) of one checkpoint directory; never unpickles arbitrary objects."""
    ckpt_dir = Path(ckpt_dir)
    weights = load_weights(ckpt_dir / "weights.safetensors")
    optimizer_state = torch.load(ckpt_dir / "optimizer.pt", weights_only=True, map_location="cpu")
    return weights, optimizer_state, checkpoint_state(ckpt_dir)
