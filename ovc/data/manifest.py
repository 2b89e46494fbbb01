"""Read/write the manifest and vocabulary parquet files (validated, atomic) and resolve video paths.

    df = read_manifest("data/clean/manifest.parquet", roots=data_roots(cfg))   # validated + confined
    video = resolve_video_path("data/clean/manifest.parquet", df.path[0])
    write_manifest(df, "data/clean/manifest.parquet")          # validated, tmp file + os.replace

Parquet types: string columns are ``string``, ``labels`` is ``list<string>``. pandas/pyarrow give
list cells back as numpy arrays; :func:`normalize_labels` turns them (and tuples) into Python lists
on read and before write, so the schemas and callers only ever see ``list[str]``.

Confinement: every video path a manifest names must stay inside the configured data roots
(:func:`data_roots`: ``paths.data``, ``ingest.root`` and ``ingest.roots``) once resolved —
``..`` segments, absolute paths elsewhere and symlinks that lead out are refused, all offending rows
in one :class:`ManifestSchemaError` (row, video_id, path, where it leads). Every stage that reads a
manifest (clean, synth_labels, train, evaluate) passes ``roots=data_roots(cfg)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ovc.data.schemas import (
    MANIFEST_SCHEMA,
    RAW_MANIFEST_SCHEMA,
    VOCABULARY_SCHEMA,
    ManifestSchemaError,
    validate,
)
from ovc.fileio import atomic_write_bytes, atomic_write_json
from ovc.paths import DataLayout

__all__ = [
    "ManifestSchemaError",
    "check_confined",
    "data_roots",
    "atomic_write_bytes",
    "atomic_write_json",
    "normalize_labels",
    "read_manifest",
    "read_vocabulary",
    "rebase_paths",
    "resolve_video_path",
    "write_manifest",
    "write_vocabulary",
]

# Arrow types of the agreed columns; extra columns keep their inferred type.
_MANIFEST_TYPES = {
    "video_id": pa.string(),
    "path": pa.string(),
    "labels": pa.list_(pa.string()),
    "split": pa.string(),
    "source": pa.string(),
    "caption": pa.string(),
}
_VOCAB_TYPES = {"label": pa.string(), "vertical": pa.string(), "kind": pa.string(), "vocab": pa.string()}


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------
def _write_table(df: pd.DataFrame, path: str | os.PathLike, types: dict[str, pa.DataType]) -> None:
    """DataFrame -> parquet with the agreed Arrow types, no index, written atomically."""
    fields = []
    for name in df.columns:
        if name in types:
            fields.append(pa.field(name, types[name]))
        else:
            fields.append(pa.Schema.from_pandas(df[[name]], preserve_index=False).field(name))
    table = pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------
def _to_label_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value  # lists pass; anything else (None, a str) is left for the schema to reject


def normalize_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` whose ``labels`` cells are Python lists (numpy arrays/tuples converted)."""
    out = df.copy()
    if "labels" in out.columns:
        out["labels"] = pd.Series([_to_label_list(v) for v in out["labels"]], index=out.index, dtype=object)
    return out


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------
def read_manifest(
    path: str | os.PathLike, allow_empty_labels: bool = False, *, roots: Sequence[str | os.PathLike] | None = None
) -> pd.DataFrame:
    """Read and validate a manifest parquet; its video paths must stay inside ``roots``.

    Args:
        path: the parquet file.
        allow_empty_labels: accept videos with no labels (raw ingest output, before ``clean``).
        roots: directories video paths may lead into (:func:`data_roots` of the config; every
            stage passes them); None = not checked (library use on a manifest you trust).

    Raises:
        FileNotFoundError: the file does not exist.
        ManifestSchemaError: schema violations (all listed, with file, columns, rows and ids), or
            paths leaving the roots (all offending rows listed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    df = normalize_labels(pd.read_parquet(path))
    schema = RAW_MANIFEST_SCHEMA if allow_empty_labels else MANIFEST_SCHEMA
    df = validate(df, schema, str(path)).reset_index(drop=True)
    if roots is not None:
        check_confined(df, path, roots)
    return df


def data_roots(cfg: Any) -> list[Path]:
    """The directories manifest video paths may lead into: ``paths.data``, ``ingest.root``, ``ingest.roots``.

    Resolved (symlinks followed), so a root given through a symlink still contains its files.
    """
    found = [DataLayout.of(cfg).root, cfg.ingest.root, *cfg.ingest.roots.values()]
    return [Path(r).expanduser().resolve() for r in found if r]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def check_confined(
    df: pd.DataFrame, manifest_path: str | os.PathLike, roots: Sequence[str | os.PathLike], source: str | None = None
) -> None:
    """Refuse manifest rows whose resolved video path leaves ``roots`` (``..``, absolute, symlinks).

    Each ``path`` cell is resolved like :func:`resolve_video_path` and then with ``os.path.realpath``
    (every symlink followed, also for files that do not exist yet), so a link inside a root that
    points outside it is refused too.

    Raises:
        ManifestSchemaError: one error naming every offending row (index, video_id, path, target).
    """
    resolved_roots = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    bad: list[str] = []
    ids = df["video_id"].tolist() if "video_id" in df.columns else [None] * len(df)
    for idx, (vid, p) in enumerate(zip(ids, df["path"].tolist())):
        target = Path(os.path.realpath(resolve_video_path(manifest_path, p)))
        if not _inside(target, resolved_roots):
            bad.append(f"row {idx} video_id={vid!r} path={p!r} -> {target}")
    if bad:
        shown = bad[:20]
        more = f"; ... and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
        raise ManifestSchemaError(
            f"{source or manifest_path}: {len(bad)} video path(s) leave the data roots "
            f"({', '.join(str(r) for r in resolved_roots)}): "
            + "; ".join(shown)
            + more
            + " (set paths.data / ingest.root / ingest.roots to where the videos are)"
        )


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, allow_empty_labels: bool = False) -> None:
    """Validate (lazily, all failures in one error) and write a manifest atomically."""
    df = normalize_labels(df).reset_index(drop=True)
    schema = RAW_MANIFEST_SCHEMA if allow_empty_labels else MANIFEST_SCHEMA
    validate(df, schema, f"{path} (manifest to write)")
    _write_table(df, path, _MANIFEST_TYPES)


def resolve_video_path(manifest_path: str | os.PathLike, p: str | os.PathLike) -> Path:
    """A manifest ``path`` cell as a usable path: absolute kept as is, relative taken relative to
    the manifest file's directory."""
    p = Path(p)
    return p if p.is_absolute() else Path(manifest_path).parent / p


def rebase_paths(paths: pd.Series, from_dir: str | os.PathLike, to_dir: str | os.PathLike) -> pd.Series:
    """Rewrite relative ``paths`` (relative to ``from_dir``) to be relative to ``to_dir``, POSIX
    style; absolute paths are kept. Used when a stage writes a manifest into another directory."""
    from_dir, to_dir = os.path.abspath(from_dir), os.path.abspath(to_dir)

    def one(p: str) -> str:
        if os.path.isabs(p):
            return p
        rel = os.path.relpath(os.path.join(from_dir, p), to_dir)
        return Path(rel).as_posix()

    return paths.map(one)


# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------
def read_vocabulary(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a vocabulary parquet (raises FileNotFoundError / ManifestSchemaError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary not found: {path}")
    return validate(pd.read_parquet(path), VOCABULARY_SCHEMA, str(path)).reset_index(drop=True)


def training_labels(path: str | os.PathLike) -> set[str]:
    """The training vocabulary (rows of vocabulary ``train``) of a vocabulary parquet: what "novel" is measured against."""
    df = read_vocabulary(path)
    return set(df.loc[df["vocab"] == "train", "label"].tolist())


def write_vocabulary(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Validate and write a vocabulary atomically."""
    df = df.reset_index(drop=True)
    validate(df, VOCABULARY_SCHEMA, f"{path} (vocabulary to write)")
    _write_table(df, path, _VOCAB_TYPES)


def read_clean(cfg: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The clean manifest (video paths confined to the data roots) and vocabulary of a project:
    what every stage after ``clean`` reads (train, evaluate, synth_labels)."""
    layout = DataLayout.of(cfg)
    manifest = read_manifest(layout.clean_manifest, roots=data_roots(cfg))
    return manifest, read_vocabulary(layout.clean_vocabulary)
