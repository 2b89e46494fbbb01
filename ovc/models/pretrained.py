"""Which CLIP weights a stage loads.

``clip.pretrained`` may name weights explicitly (a hub tag such as ``openai``, a file, or
``local-dir:/path``). Left empty — the offline default — it means the CLIP bootstrapped by the
``bootstrap_clip`` stage, loaded through the very same ``local-dir:`` path as real weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ovc.config import ClipConfig, Config
from ovc.paths import DataLayout


class MissingWeightsError(FileNotFoundError):
    """The configured CLIP weights are not on disk; the message says what to run or provide."""


def bootstrap_dir(cfg: Config) -> Path:
    return DataLayout.of(cfg).bootstrap_clip


def resolve_clip_config(cfg: Config) -> ClipConfig:
    """``cfg.clip`` with ``pretrained`` resolved: "" -> ``local-dir:<data>/models/bootstrap_clip``."""
    if cfg.clip.pretrained:
        return cfg.clip
    d = bootstrap_dir(cfg)
    if not (d / "open_clip_config.json").exists():
        raise MissingWeightsError(
            f"clip.pretrained is empty, which means the bootstrapped CLIP in {d}, but it is not there: "
            f"run `ovc stage bootstrap_clip` (or `dvc repro bootstrap_clip`), or set clip.pretrained to a "
            f"hub tag, a weights file or local-dir:/path"
        )
    return dataclasses.replace(cfg.clip, pretrained=f"local-dir:{d}")


def training_inputs_digest(cfg: Config) -> bytes:
    """sha256 over the bytes of the clean manifest and the resolved CLIP weights: what cached features
    and training checkpoints are made from (part of their fingerprints)."""
    import hashlib

    files = [DataLayout.of(cfg).clean_manifest]
    pretrained = resolve_clip_config(cfg).pretrained
    if pretrained.startswith("local-dir:"):
        files += sorted(p for p in Path(pretrained[len("local-dir:") :]).glob("*") if p.is_file())
    elif pretrained and Path(pretrained).is_file():
        files.append(Path(pretrained))
    h = hashlib.sha256()
    for f in files:
        if f.exists():
            h.update(f.name.encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.digest()
