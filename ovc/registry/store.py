"""Registry operations: publish a model version, grow vocabularies incrementally, load embeddings.

Vocabulary expansion (paper §3, Fig. 2b): label embeddings f_t(ℓ) are computed once per (label,
label encoder) and stored; classifying against a vocabulary is then one matrix product of video
features with :func:`load_embedding_matrix`. Adding labels to a vocabulary encodes only the labels
that have no embedding for the model version yet, so refreshing a vocabulary is cheap and idempotent.

The store never imports model code: callers pass ``encode_fn(labels: list[str]) -> np.ndarray``
of shape ``(n, dim)`` (float32, ideally L2-normalised), applied to *normalised* label texts.

Label policy (:func:`normalize_label`): Unicode NFC, strip, collapse runs of whitespace to one space,
lower-case. Labels are matched case-insensitively ("Red Car" and "red car" are one label) and the
stored, embedded text is the normalised one; the original casing is NOT kept: both text towers the
embeddings come from lower-case their input anyway (open_clip's tokenizer, uncased BERT/MiniLM), so
casing carries no signal, and storing a display form that differs from the embedded text would
misreport what was encoded. Per label, bad input becomes a :class:`LabelIssue` and the rest goes on:
empty, longer than ``max_label_chars``, not UTF-8, control/format characters, duplicates within one
input (after normalisation), unknown kind.

Transactions: every write is one transaction (all or nothing; a kill mid-write leaves the registry
as it was). Encoding happens before the write transaction (no lock held while a model runs), writes
use ``INSERT ... ON CONFLICT DO NOTHING`` and re-check inside the transaction, so concurrent writers
(threads or processes) never create duplicates nor lose labels. SQLite writers take the lock at
``BEGIN IMMEDIATE`` and wait up to ``busy_timeout``; transient "database is locked" (SQLite) and
serialization/deadlock/unique-violation errors (PostgreSQL) are retried with jittered backoff.

Every function takes an ``Engine`` (own transaction, retried) or a ``Session`` (runs inside the
caller's transaction in a SAVEPOINT; the caller commits).
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import math
import os
import random
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
import dataclasses
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
from sqlalchemy import Engine, delete, exists, func, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from ovc.registry.db import connect_for_write, read_only_error
from ovc.registry.errors import (
    EncodeError,
    InvalidNameError,
    NotFoundError,
    ReadOnlyRegistryError,
    RegistryBusyError,
    RegistryError,
)
from ovc.registry.models import (
    LABEL_KINDS,
    Label,
    LabelEmbedding,
    ModelVersion,
    Threshold,
    Vocabulary,
    VocabularyLabel,
    threshold_target,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
EncodeFn = Callable[[list[str]], np.ndarray]
Target = Union[Engine, Session]

DEFAULT_MAX_LABEL_CHARS = 200  # mirrors RegistryConfig.max_label_chars
DEFAULT_BATCH_SIZE = 256  # labels per encode_fn call
_CHUNK = 500  # bound parameters per IN (...) / executemany batch (SQLite caps variables per statement)
_RETRY_ATTEMPTS = 10
_PG_RETRYABLE = {"40001", "40P01", "23505", "55P03"}  # serialization, deadlock, unique race, lock timeout
_SQLITE_RETRYABLE = ("database is locked", "database table is locked", "database is busy")
_AUTO_NAME = re.compile(r"v(\d+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------------------------------
# Errors and result types
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelSpec:
    """A validated label: normalised text and optional kind (``entity`` | ``action``)."""

    text: str
    kind: str | None = None


@dataclass(frozen=True)
class LabelIssue:
    """One rejected label. ``line``: 1-based line of a label file, or position in the input list."""

    label: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.label!r}: {self.reason}"


LabelLike = Union[str, bytes, LabelSpec, tuple]  # "text" | b"text" | (text, kind) | LabelSpec


@dataclass
class AddLabelsResult:
    """Summary of :func:`add_labels` (JSON-able via :meth:`to_dict`)."""

    vocabulary: str
    model_version: str | None
    added: int = 0  # labels newly linked to the vocabulary
    already_present: int = 0  # valid input labels that were in the vocabulary already
    encoded: int = 0  # labels passed to encode_fn
    reused: int = 0  # embeddings copied from another model version with the same encoder digest
    issues: list[LabelIssue] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["issues"] = [asdict(i) for i in self.issues]
        return d


@dataclass
class PublishResult:
    """Summary of :func:`publish_model_version` (JSON-able via :meth:`to_dict`)."""

    model_version: str
    embed_dim: int
    vocabularies: dict[str, int]  # vocabulary -> valid labels published with it
    labels_embedded: int  # distinct labels with an embedding for this version
    encoded: int  # of which computed by encode_fn
    reused: int  # of which copied from a version with the same encoder digest
    threshold: float | None
    issues: dict[str, list[LabelIssue]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["issues"] = {k: [asdict(i) for i in v] for k, v in self.issues.items()}
        return d


@dataclass(frozen=True)
class ModelVersionInfo:
    id: int
    name: str
    checkpoint_digest: str
    encoder_digest: str
    embed_dim: int
    dvc_rev: str | None
    params: dict[str, Any] | None
    metrics: dict[str, Any] | None
    created_at: datetime | None


@dataclass(frozen=True)
class VocabularyInfo:
    name: str
    n_labels: int
    created_at: datetime | None


# --------------------------------------------------------------------------------------------------
# Label normalisation and validation
# --------------------------------------------------------------------------------------------------
def normalize_label(text: str) -> str:
    """Canonical form of a label: NFC, stripped, internal whitespace collapsed, lower-cased.

    ``"  Red\\tCar "`` -> ``"red car"``. Lower-casing (not casefold) keeps the text the encoders see
    unchanged apart from case (casefold would turn "ß" into "ss"); NFC runs again after lower() since
    lower-casing can produce decomposed sequences.
    """
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split()).lower()  # str.split(): any Unicode whitespace run
    return unicodedata.normalize("NFC", text)


def _label_problem(raw: Any, max_chars: int) -> tuple[str | None, str, str | None]:
    """(normalised text or None, printable form of the input, reason if rejected)."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            shown = bytes(raw).decode("utf-8", "backslashreplace")
            return None, shown, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    if not isinstance(raw, str):
        return None, repr(raw), f"not a string ({type(raw).__name__})"
    for i, ch in enumerate(raw):
        if 0xD800 <= ord(ch) <= 0xDFFF:  # lone surrogate (e.g. from errors="surrogateescape")
            return None, raw.encode("utf-8", "backslashreplace").decode(), f"not valid UTF-8 (lone surrogate at {i})"
    text = normalize_label(raw)
    if not text:
        return None, raw, "empty"
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cf"):  # controls, zero-width/format characters
            return None, raw, f"control character U+{ord(ch):04X} at position {i}"
    if len(text) > max_chars:
        return None, raw[:60] + "...", f"longer than {max_chars} characters ({len(text)})"
    return text, raw, None


def _normalize_kind(kind: Any) -> tuple[str | None, str | None]:
    if kind is None:
        return None, None
    if isinstance(kind, (bytes, bytearray)):
        kind = bytes(kind).decode("utf-8", "replace")
    k = str(kind).strip().lower()
    if not k:
        return None, None
    if k not in LABEL_KINDS:
        return None, f"unknown kind {kind!r} (expected one of {', '.join(LABEL_KINDS)})"
    return k, None


def _split_item(item: LabelLike) -> tuple[Any, Any]:
    if isinstance(item, LabelSpec):
        return item.text, item.kind
    if isinstance(item, tuple):
        if len(item) != 2:
            return item, None
        return item[0], item[1]
    return item, None


def _validate(
    entries: Iterable[tuple[int, Any, Any]], max_chars: int, unit: str = "item"
) -> tuple[list[LabelSpec], list[LabelIssue]]:
    specs: list[LabelSpec] = []
    issues: list[LabelIssue] = []
    first_seen: dict[str, int] = {}
    for line, raw, kind in entries:
        text, shown, reason = _label_problem(raw, max_chars)
        if reason is None:
            norm_kind, reason = _normalize_kind(kind)
        if reason is None and text in first_seen:
            reason = f"duplicate of {unit} {first_seen[text]} (after normalisation)"
        if reason is not None:
            issues.append(LabelIssue(label=shown, reason=reason, line=line))
            continue
        assert text is not None
        first_seen[text] = line
        specs.append(LabelSpec(text, norm_kind))
    return specs, issues


def validate_labels(
    labels: Iterable[LabelLike], max_label_chars: int = DEFAULT_MAX_LABEL_CHARS
) -> tuple[list[LabelSpec], list[LabelIssue]]:
    """Normalise and check labels; bad ones become issues (``line`` = 1-based position), rest goes on.

    Args:
        labels: ``"text"``, ``b"utf-8 bytes"``, ``(text, kind)`` or :class:`LabelSpec` items.
        max_label_chars: longer labels (after normalisation) are rejected.
    """
    return _validate(
        ((i, *_split_item(item)) for i, item in enumerate(labels, start=1)), max_label_chars
    )


def read_label_file(
    path: str | os.PathLike, max_label_chars: int = DEFAULT_MAX_LABEL_CHARS
) -> tuple[list[LabelSpec], list[LabelIssue]]:
    """Read a label file: one label per line, optionally ``label<TAB>kind``; ``#`` starts a comment line.

    Each line is decoded on its own, so a line that is not UTF-8 becomes one issue (with its line
    number) and the rest of the file is read. Blank lines and lines whose first non-blank character
    is ``#`` are skipped (a ``#`` later in a line is part of the label, e.g. "c#"). A UTF-8 BOM and
    CRLF line ends are accepted.

    Returns:
        (labels, issues): validated, normalised labels in file order and one issue per bad line.
    """
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]

    def entries() -> Iterator[tuple[int, Any, Any]]:
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            raw = raw.rstrip(b"\r")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, raw, None  # reported by _label_problem with the offending byte
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            text, sep, kind = line.partition("\t")
            yield lineno, text, (kind if sep else None)

    return _validate(entries(), max_label_chars, unit="line")


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file (for ``checkpoint_digest``), streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------------
def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "pgcode", None)
    if code in _PG_RETRYABLE:
        return True
    if isinstance(exc, OperationalError):
        msg = str(exc.orig).lower()
        return any(m in msg for m in _SQLITE_RETRYABLE)
    return False


def _write(target: Target, fn: Callable[[Session], T], *, attempts: int = _RETRY_ATTEMPTS) -> T:
    """Run ``fn(session)`` in one write transaction, retrying transient conflicts.

    With an Engine: a fresh transaction per attempt (``BEGIN IMMEDIATE`` on SQLite), committed at
    the end. With a Session: a SAVEPOINT inside the caller's transaction (no commit, no retry).
    ``fn`` may run more than once, so it must not have side effects outside the session.
    """
    if isinstance(target, Session):
        with target.begin_nested():
            return fn(target)
    delay = 0.02
    for attempt in range(1, attempts + 1):
        try:
            with connect_for_write(target) as conn, Session(bind=conn, expire_on_commit=False) as session:
                with session.begin():
                    return fn(session)
        except DBAPIError as e:
            if read_only_error(e):
                raise ReadOnlyRegistryError(
                    f"the registry {target.url.render_as_string(hide_password=True)} is read-only "
                    f"({str(e.orig).splitlines()[0]}); point --registry / $OVC_REGISTRY_URL at a writable one"
                ) from None
            if not _is_retryable(e):
                raise
            if attempt == attempts:
                raise RegistryBusyError(
                    f"the registry {target.url.render_as_string(hide_password=True)} stayed locked by another "
                    f"writer after {attempts} attempts ({str(e.orig).splitlines()[0]}); try again later"
                ) from None
            log.info("registry write conflict (attempt %d/%d), retrying: %s", attempt, attempts, e.orig)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _read(target: Target, fn: Callable[[Session], T]) -> T:
    if isinstance(target, Session):
        return fn(target)
    with Session(target, expire_on_commit=False) as session:
        return fn(session)


def _chunks(seq: Sequence[T], n: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _insert_ignore(session: Session, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for SQLite/PostgreSQL; None for other dialects."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return None


def _text_order(session: Session) -> Any:
    """Label order by code point on every backend (PostgreSQL's default collation is locale-aware)."""
    if session.get_bind().dialect.name == "postgresql":
        return Label.text.collate("C")
    return Label.text


# --------------------------------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------------------------------
def _info(mv: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        id=mv.id,
        name=mv.name,
        checkpoint_digest=mv.checkpoint_digest,
        encoder_digest=mv.encoder_digest,
        embed_dim=mv.embed_dim,
        dvc_rev=mv.dvc_rev,
        params=mv.params,
        metrics=mv.metrics,
        created_at=mv.created_at,
    )


def _model_version(session: Session, ref: str | ModelVersionInfo) -> ModelVersionInfo:
    """Resolve ``"latest"`` (highest id) or a name; NotFoundError if absent."""
    if isinstance(ref, ModelVersionInfo):
        ref = ref.name
    if ref == "latest":
        mv = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()
        if mv is None:
            raise NotFoundError("no model version is published yet (run the publish stage first)")
    else:
        mv = session.scalars(select(ModelVersion).where(ModelVersion.name == ref)).first()
        if mv is None:
            names = session.scalars(select(ModelVersion.name).order_by(ModelVersion.id)).all()
            raise NotFoundError(f"unknown model version {ref!r}; published: {list(names) or 'none'}")
    return _info(mv)


def _vocabulary_id(session: Session, name: str) -> int:
    vid = session.scalar(select(Vocabulary.id).where(Vocabulary.name == name))
    if vid is None:
        raise NotFoundError(f"unknown vocabulary {name!r}")
    return vid


def _check_vocab_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidNameError(f"vocabulary name must be a non-empty string, got {name!r}")
    name = name.strip()
    if len(name) > 200 or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise InvalidNameError(f"invalid vocabulary name {name!r} (max 200 printable characters)")
    return name


def _label_ids(session: Session, texts: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(list(texts)):
        out.update(session.execute(select(Label.text, Label.id).where(Label.text.in_(chunk))).tuples().all())
    return out


def _embedded_texts(session: Session, mv: ModelVersionInfo, texts: Sequence[str]) -> set[str]:
    """Texts that already have an embedding for ``mv`` made by ``mv``'s label encoder."""
    found: set[str] = set()
    for chunk in _chunks(list(texts)):
        stmt = (
            select(Label.text)
            .join(LabelEmbedding, LabelEmbedding.label_id == Label.id)
            .where(
                LabelEmbedding.model_version_id == mv.id,
                LabelEmbedding.encoder_digest == mv.encoder_digest,
                Label.text.in_(chunk),
            )
        )
        found.update(session.scalars(stmt))
    return found


def _reusable_vectors(
    session: Session, texts: Sequence[str], encoder_digest: str, dim: int | None, exclude_mv: int | None = None
) -> dict[str, bytes]:
    """Vectors of ``texts`` produced by the same label encoder under any other model version.

    Same encoder digest = same weights and config, so f_t(ℓ) is the same vector: copy, don't encode.
    """
    found: dict[str, bytes] = {}
    for chunk in _chunks(list(texts)):
        stmt = (
            select(Label.text, LabelEmbedding.vector, LabelEmbedding.dim)
            .join(LabelEmbedding, LabelEmbedding.label_id == Label.id)
            .where(LabelEmbedding.encoder_digest == encoder_digest, Label.text.in_(chunk))
        )
        if exclude_mv is not None:
            stmt = stmt.where(LabelEmbedding.model_version_id != exclude_mv)
        for text, vector, d in session.execute(stmt):
            if dim is None or d == dim:
                found.setdefault(text, bytes(vector))
    return found


# --------------------------------------------------------------------------------------------------
# Writes (inside a transaction)
# --------------------------------------------------------------------------------------------------
def _ensure_vocabulary(session: Session, name: str) -> int:
    stmt = _insert_ignore(session, Vocabulary.__table__)
    if stmt is not None:
        session.execute(stmt, [{"name": name}])
    elif session.scalar(select(Vocabulary.id).where(Vocabulary.name == name)) is None:
        session.execute(insert(Vocabulary), [{"name": name}])
    return _vocabulary_id(session, name)


def _ensure_labels(session: Session, texts: Sequence[str]) -> dict[str, int]:
    """Insert missing label rows (sorted: concurrent writers lock rows in the same order) -> ids."""
    texts = sorted(set(texts))
    stmt = _insert_ignore(session, Label.__table__)
    for chunk in _chunks(texts):
        if stmt is not None:
            session.execute(stmt, [{"text": t} for t in chunk])
        else:
            have = _label_ids(session, chunk)
            missing = [{"text": t} for t in chunk if t not in have]
            if missing:
                session.execute(insert(Label), missing)
    ids = _label_ids(session, texts)
    assert len(ids) == len(texts), "label rows missing after insert"
    return ids


def _link_labels(session: Session, vocabulary_id: int, specs: Sequence[LabelSpec], ids: Mapping[str, int]) -> int:
    """Link labels to a vocabulary; returns how many links are new (existing links are kept as is)."""
    table = VocabularyLabel.__table__
    wanted = sorted((ids[s.text], s.kind) for s in specs)
    added = 0
    for chunk in _chunks(wanted):
        existing = set(
            session.scalars(
                select(VocabularyLabel.label_id).where(
                    VocabularyLabel.vocabulary_id == vocabulary_id,
                    VocabularyLabel.label_id.in_([lid for lid, _ in chunk]),
                )
            )
        )
        rows = [{"vocabulary_id": vocabulary_id, "label_id": lid, "kind": k} for lid, k in chunk if lid not in existing]
        if not rows:
            continue
        stmt = _insert_ignore(session, table)
        if stmt is not None:
            # RETURNING counts only rows this transaction inserted (a concurrent writer may win some).
            added += len(session.execute(stmt.returning(table.c.label_id), rows).all())
        else:
            session.execute(insert(table), rows)
            added += len(rows)
    return added


def _store_embeddings(
    session: Session, mv: ModelVersionInfo, ids: Mapping[str, int], vectors: Mapping[str, bytes]
) -> None:
    """Upsert one embedding per text for ``mv`` (replacing rows made by another encoder digest)."""
    table = LabelEmbedding.__table__
    items = sorted((ids[t], v) for t, v in vectors.items())
    for chunk in _chunks(items):
        label_ids = [lid for lid, _ in chunk]
        session.execute(
            delete(table).where(
                table.c.model_version_id == mv.id,
                table.c.label_id.in_(label_ids),
                table.c.encoder_digest != mv.encoder_digest,
            )
        )
        rows = [
            {"model_version_id": mv.id, "label_id": lid, "encoder_digest": mv.encoder_digest, "dim": mv.embed_dim, "vector": vec}
            for lid, vec in chunk
        ]
        stmt = _insert_ignore(session, table)
        if stmt is not None:
            session.execute(stmt, rows)
        else:
            have = set(
                session.scalars(
                    select(table.c.label_id).where(table.c.model_version_id == mv.id, table.c.label_id.in_(label_ids))
                )
            )
            rows = [r for r in rows if r["label_id"] not in have]
            if rows:
                session.execute(insert(table), rows)


def _set_threshold(
    session: Session, mv_id: int, value: float, vocabulary_id: int | None, label_id: int | None
) -> None:
    if not math.isfinite(value):
        raise RegistryError(f"threshold must be a finite number, got {value!r}")
    scope = "label" if label_id is not None else "vocabulary" if vocabulary_id is not None else "global"
    target = threshold_target(scope, vocabulary_id, label_id)
    res = session.execute(
        update(Threshold).where(Threshold.model_version_id == mv_id, Threshold.target == target).values(value=value)
    )
    if res.rowcount == 0:
        session.execute(
            insert(Threshold),
            [{"model_version_id": mv_id, "scope": scope, "vocabulary_id": vocabulary_id,
              "label_id": label_id, "target": target, "value": float(value)}],
        )


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------
def _encode(encode_fn: EncodeFn, texts: Sequence[str], dim: int | None, batch_size: int) -> np.ndarray:
    """``encode_fn`` over ``texts`` in batches -> (n, dim) little-endian float32; checks shape/finiteness."""
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        vec = np.asarray(encode_fn(batch))
        if vec.ndim != 2 or vec.shape[0] != len(batch):
            raise EncodeError(
                f"encode_fn returned shape {tuple(vec.shape)} for {len(batch)} labels "
                f"(first {batch[0]!r}); expected ({len(batch)}, dim)"
            )
        if dim is None:
            dim = int(vec.shape[1])
        if vec.shape[1] != dim or dim <= 0:
            raise EncodeError(f"encode_fn returned dim {vec.shape[1]} for labels starting {batch[0]!r}; expected {dim}")
        finite = np.isfinite(vec).all(axis=1)
        if not finite.all():
            raise EncodeError(f"encode_fn returned a non-finite embedding for label {batch[int(np.argmin(finite))]!r}")
        parts.append(np.ascontiguousarray(vec, dtype="<f4"))
    if not parts:
        return np.zeros((0, dim or 0), dtype="<f4")
    return np.concatenate(parts)  # (n, dim)


def _to_bytes(texts: Sequence[str], matrix: np.ndarray) -> dict[str, bytes]:
    return {t: row.tobytes() for t, row in zip(texts, matrix)}


def _check_digest(value: str, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise RegistryError(f"{what} must be a lower-case sha256 hex digest (64 chars), got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Public operations
# --------------------------------------------------------------------------------------------------
def publish_model_version(
    target: Target,
    name: str | None,
    checkpoint_digest: str,
    *,
    encoder_digest: str,
    encode_fn: EncodeFn | None = None,
    vocabularies: Mapping[str, Iterable[LabelLike]] | None = None,
    calibrated_threshold: float | None = None,
    embed_dim: int | None = None,
    dvc_rev: str | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    max_label_chars: int = DEFAULT_MAX_LABEL_CHARS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PublishResult:
    """Register a model version with its vocabularies' label embeddings and global threshold, atomically.

    Labels are encoded first (no lock held), then the model version row, vocabularies, labels,
    embeddings and threshold are written in ONE transaction: if anything fails (encode_fn raises,
    a constraint, a kill) the registry is exactly as before. Labels whose vectors already exist
    under the same ``encoder_digest`` (another model version, same label encoder) are copied.

    Args:
        target: Engine (own transaction) or Session (savepoint in the caller's transaction).
        name: version name; None or ``"auto"`` = next ``v<N>``. An existing name is an error.
        checkpoint_digest: sha256 hex of the checkpoint file (:func:`sha256_file`).
        encoder_digest: sha256 hex of the label encoder's weights + config.
        encode_fn: normalised labels -> (n, dim) float32 array (paper §3.1 label encoder).
        vocabularies: vocabulary name -> labels (str, bytes, (text, kind) or LabelSpec).
        calibrated_threshold: global threshold from validation (paper §4.5); None = none stored.
        embed_dim: embedding width; inferred from encode_fn's output when None.
        dvc_rev, params, metrics: provenance stored with the version.
        max_label_chars: longer labels become issues.
        batch_size: labels per encode_fn call.
    """
    _check_digest(checkpoint_digest, "checkpoint_digest")
    _check_digest(encoder_digest, "encoder_digest")
    if name is not None and name != "auto" and (not name.strip() or len(name) > 128):
        raise InvalidNameError(f"invalid model version name {name!r}")
    if calibrated_threshold is not None and not math.isfinite(calibrated_threshold):
        raise RegistryError(f"calibrated_threshold must be finite, got {calibrated_threshold!r}")

    specs: dict[str, list[LabelSpec]] = {}
    issues: dict[str, list[LabelIssue]] = {}
    for vname, labels in (vocabularies or {}).items():
        vname = _check_vocab_name(vname)
        specs[vname], vissues = validate_labels(labels, max_label_chars)
        if vissues:
            issues[vname] = vissues
            log.warning("vocabulary %r: %d label(s) rejected, e.g. %s", vname, len(vissues), vissues[0])
    texts = sorted({s.text for vs in specs.values() for s in vs})

    vectors = _read(target, lambda s: _reusable_vectors(s, texts, encoder_digest, embed_dim))
    reused = len(vectors)
    if reused and embed_dim is None:
        embed_dim = len(next(iter(vectors.values()))) // 4
    to_encode = [t for t in texts if t not in vectors]
    if to_encode:
        if encode_fn is None:
            raise RegistryError(f"{len(to_encode)} label(s) need embeddings but no encode_fn was given")
        matrix = _encode(encode_fn, to_encode, embed_dim, batch_size)  # (n, dim)
        embed_dim = int(matrix.shape[1])
        vectors.update(_to_bytes(to_encode, matrix))
    if embed_dim is None or embed_dim <= 0:
        raise RegistryError("embed_dim is required when there are no labels to encode")
    dim = embed_dim

    def work(session: Session) -> PublishResult:
        mv_name = name
        if mv_name is None or mv_name == "auto":
            taken = session.scalars(select(ModelVersion.name)).all()
            numbers = [int(m.group(1)) for n in taken if (m := _AUTO_NAME.fullmatch(n))]
            mv_name = f"v{max(numbers, default=0) + 1}"
        elif session.scalar(select(exists().where(ModelVersion.name == mv_name))):
            raise RegistryError(f"model version {mv_name!r} already exists; pick a new name")
        row = ModelVersion(
            name=mv_name,
            checkpoint_digest=checkpoint_digest,
            dvc_rev=dvc_rev,
            params=params,
            metrics=metrics,
            encoder_digest=encoder_digest,
            embed_dim=dim,
        )
        session.add(row)
        session.flush()
        mv = _info(row)
        ids = _ensure_labels(session, texts)
        for vname, vspecs in specs.items():
            _link_labels(session, _ensure_vocabulary(session, vname), vspecs, ids)
        _store_embeddings(session, mv, ids, vectors)
        if calibrated_threshold is not None:
            _set_threshold(session, mv.id, float(calibrated_threshold), None, None)
        return PublishResult(
            model_version=mv_name,
            embed_dim=dim,
            vocabularies={k: len(v) for k, v in specs.items()},
            labels_embedded=len(texts),
            encoded=len(to_encode),
            reused=reused,
            threshold=calibrated_threshold,
            issues=issues,
        )

    result = _write(target, work)
    log.info(
        "published model version %s: %d labels (%d encoded, %d reused), threshold %s",
        result.model_version, result.labels_embedded, result.encoded, result.reused, result.threshold,
    )
    return result


@dataclass
class LabelPlan:
    """What :func:`add_labels` will do, computed in one read pass before any lock is taken.

    ``link``: valid labels not yet in the vocabulary; ``embed``: labels (of the whole input) with no
    embedding for the model version; ``vectors``: reusable vectors (same encoder digest) of some of them.
    """

    vocabulary_exists: bool
    model_version: ModelVersionInfo | None
    link: list[LabelSpec]
    present: int
    embed: list[str]
    vectors: dict[str, bytes]

    @property
    def to_encode(self) -> int:
        return sum(1 for t in self.embed if t not in self.vectors)

    @property
    def nothing_to_do(self) -> bool:
        return self.vocabulary_exists and not self.link and not self.embed


def _vocabulary_texts(session: Session, vocab: str) -> set[str] | None:
    """Texts linked to ``vocab`` (one query), or None if the vocabulary does not exist."""
    vid = session.scalar(select(Vocabulary.id).where(Vocabulary.name == vocab))
    if vid is None:
        return None
    stmt = select(Label.text).join(VocabularyLabel, VocabularyLabel.label_id == Label.id).where(
        VocabularyLabel.vocabulary_id == vid
    )
    return set(session.connection().execute(stmt).scalars())


def _embedded_set(session: Session, mv: ModelVersionInfo, texts: Sequence[str]) -> set[str]:
    """Which of ``texts`` have an embedding for ``mv`` by its encoder: linear in len(texts).

    Large inputs read the version's embedded texts in one query (no per-chunk IN lists); small ones
    ask about their own texts only (cheap on a registry holding millions of labels).
    """
    if len(texts) <= 4 * _CHUNK:
        return _embedded_texts(session, mv, texts)
    stmt = (
        select(Label.text)
        .join(LabelEmbedding, LabelEmbedding.label_id == Label.id)
        .where(LabelEmbedding.model_version_id == mv.id, LabelEmbedding.encoder_digest == mv.encoder_digest)
    )
    return set(session.connection().execute(stmt).scalars()) & set(texts)


def plan_labels(
    target: Target, vocab: str, specs: Sequence[LabelSpec], model_version: str | None = "latest"
) -> LabelPlan:
    """Plan adding validated ``specs`` to ``vocab``: a read-only pass, linear in the input, no lock.

    Raises NotFoundError for an unknown model version.
    """

    def run(session: Session) -> LabelPlan:
        mv = _model_version(session, model_version) if model_version is not None else None
        present = _vocabulary_texts(session, vocab)
        link = [s for s in specs if present is None or s.text not in present]
        embed: list[str] = []
        vectors: dict[str, bytes] = {}
        if mv is not None:
            have = _embedded_set(session, mv, [s.text for s in specs])
            embed = [s.text for s in specs if s.text not in have]
            vectors = _reusable_vectors(session, embed, mv.encoder_digest, mv.embed_dim, exclude_mv=mv.id)
        return LabelPlan(present is not None, mv, link, len(specs) - len(link), embed, vectors)

    return _read(target, run)


def add_labels(
    target: Target,
    vocab: str,
    labels: Iterable[LabelLike],
    encode_fn: EncodeFn | None = None,
    model_version: str | None = "latest",
    *,
    max_label_chars: int = DEFAULT_MAX_LABEL_CHARS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    write_batch: int = 4096,
    progress: bool | None = False,
) -> AddLabelsResult:
    """Add labels to a vocabulary (created if needed) and embed those that lack an embedding.

    Incremental and idempotent: only labels with no embedding for (model version, its encoder digest)
    reach ``encode_fn`` (vectors of the same encoder under another version are copied); a re-run
    encodes nothing and writes nothing (no transaction at all, so it also works on a read-only
    registry). Bad labels are reported in ``issues``, the rest is added.

    Scale (100k labels in one call): the plan is one read pass, linear in the input, with no lock
    held; encoding runs outside any transaction; then each batch of ``write_batch`` labels is one
    short write transaction (its own labels, links and embeddings, re-checked inside), so readers
    and other writers wait at most one batch. A kill between batches leaves whole batches added
    (never half a batch); re-running the call completes the rest.

    Args:
        target: Engine or Session (a Session gets everything inside the caller's transaction).
        vocab: vocabulary name.
        labels: str, bytes, (text, kind) or LabelSpec items (e.g. from :func:`read_label_file`).
        encode_fn: normalised labels -> (n, dim) float32; needed only if something must be encoded.
        model_version: ``"latest"``, a name, or None (register labels without embedding them).
        max_label_chars: longer labels become issues.
        batch_size: labels per encode_fn call.
        write_batch: labels per write transaction.
        progress: tqdm bar on stderr over the labels (None = only on a terminal, False = none).
    """
    from tqdm.auto import tqdm

    vocab = _check_vocab_name(vocab)
    specs, issues = validate_labels(labels, max_label_chars)
    plan = plan_labels(target, vocab, specs, model_version)
    mv = plan.model_version
    result = AddLabelsResult(vocabulary=vocab, model_version=mv.name if mv else None, issues=issues)
    if issues:
        log.warning("vocabulary %r: %d label(s) rejected, e.g. %s", vocab, len(issues), issues[0])
    result.already_present = plan.present
    if plan.nothing_to_do or (not specs and not plan.vocabulary_exists and issues):
        # nothing new (or every label rejected: no empty vocabulary is created): write nothing
        return result
    n_encode = plan.to_encode
    if n_encode and encode_fn is None:
        raise RegistryError(f"{n_encode} label(s) of {vocab!r} need embeddings but no encode_fn was given")
    log.info(
        "vocabulary %r: %d label(s) to link, %d already present, %d to encode, %d reused",
        vocab, len(plan.link), plan.present, n_encode, len(plan.vectors),
    )
    vectors = plan.vectors
    result.reused = len(vectors)
    link_texts = {s.text for s in plan.link}
    embed_set = set(plan.embed)
    # One ordered work list: every label that needs a link or an embedding, each handled in one batch.
    work_specs = [s for s in specs if s.text in link_texts or s.text in embed_set]
    bar = tqdm(  # total = every label this call links or embeds, not one batch
        total=len(work_specs), unit="label", desc=f"vocab {vocab}", disable=None if progress is None else not progress)
    try:
        if not work_specs:  # a new, empty vocabulary (no labels given)
            _write(target, lambda session: _ensure_vocabulary(session, vocab))
        for start in range(0, len(work_specs), write_batch):
            batch = work_specs[start : start + write_batch]
            todo = [s.text for s in batch if s.text in embed_set and s.text not in vectors]
            if todo:  # outside any transaction: no lock held while the model runs
                vectors.update(_to_bytes(todo, _encode(encode_fn, todo, mv.embed_dim, batch_size)))  # type: ignore[arg-type, union-attr]
                result.encoded += len(todo)
            added = _write(target, lambda session, b=batch: _write_label_batch(session, vocab, b, mv, vectors, encode_fn, batch_size, result))
            result.added += added
            result.already_present += len([s for s in batch if s.text in link_texts]) - added
            for s in batch:
                vectors.pop(s.text, None)  # bounded memory: a batch's vectors are written, drop them
            bar.update(len(batch))
    finally:
        bar.close()
    return result


def _write_label_batch(
    session: Session,
    vocab: str,
    batch: Sequence[LabelSpec],
    mv: ModelVersionInfo | None,
    vectors: dict[str, bytes],
    encode_fn: EncodeFn | None,
    batch_size: int,
    result: AddLabelsResult,
) -> int:
    """One write transaction of :func:`add_labels`: link ``batch`` and store its missing embeddings."""
    vocabulary_id = _ensure_vocabulary(session, vocab)
    texts = [s.text for s in batch]
    ids = _ensure_labels(session, texts)
    added = _link_labels(session, vocabulary_id, batch, ids)
    if mv is not None:
        _model_version(session, mv.name)  # still published?
        have = _embedded_texts(session, mv, texts)  # re-check: a concurrent writer may have added some
        still = [t for t in texts if t not in have]
        late = [t for t in still if t not in vectors]
        if late:  # rare: state changed since planning (e.g. another encoder's row was replaced)
            if encode_fn is None:
                raise RegistryError(f"{len(late)} label(s) of {vocab!r} need embeddings but no encode_fn was given")
            vectors.update(_to_bytes(late, _encode(encode_fn, late, mv.embed_dim, batch_size)))
            result.encoded += len(late)
        _store_embeddings(session, mv, ids, {t: vectors[t] for t in still})
    return added


def remove_labels(
    target: Target,
    vocab: str,
    labels: Iterable[LabelLike],
    *,
    prune_orphans: bool = False,
    max_label_chars: int = DEFAULT_MAX_LABEL_CHARS,
) -> dict[str, Any]:
    """Unlink labels from a vocabulary. Returns ``{"removed", "not_present", "pruned", "issues"}``.

    Labels and their embeddings stay as a cache (re-adding costs no encoding) unless
    ``prune_orphans``: then labels left in no vocabulary are deleted with their embeddings.
    """
    specs, issues = validate_labels(labels, max_label_chars)
    texts = [s.text for s in specs]

    def work(session: Session) -> dict[str, Any]:
        vocabulary_id = _vocabulary_id(session, vocab)
        ids = list(_label_ids(session, texts).values())
        removed = 0
        for chunk in _chunks(ids):
            removed += session.execute(
                delete(VocabularyLabel).where(
                    VocabularyLabel.vocabulary_id == vocabulary_id, VocabularyLabel.label_id.in_(chunk)
                )
            ).rowcount
        pruned = _prune(session, ids) if prune_orphans else 0
        return {"removed": removed, "not_present": len(texts) - removed, "pruned": pruned}

    out = _write(target, work)
    out["issues"] = [asdict(i) for i in issues]
    return out


def _prune(session: Session, label_ids: Sequence[int]) -> int:
    """Delete labels among ``label_ids`` that belong to no vocabulary (cascades to embeddings)."""
    pruned = 0
    linked = exists().where(VocabularyLabel.label_id == Label.id)
    for chunk in _chunks(list(label_ids)):
        pruned += session.execute(delete(Label).where(Label.id.in_(chunk), ~linked)).rowcount
    return pruned


def remove_vocabulary(target: Target, vocab: str, *, prune_orphans: bool = False) -> dict[str, int]:
    """Delete a vocabulary, its memberships and its thresholds. Returns ``{"labels", "pruned"}``."""

    def work(session: Session) -> dict[str, int]:
        vocabulary_id = _vocabulary_id(session, vocab)
        ids = list(session.scalars(select(VocabularyLabel.label_id).where(VocabularyLabel.vocabulary_id == vocabulary_id)))
        session.execute(delete(Vocabulary).where(Vocabulary.id == vocabulary_id))  # FK cascades
        return {"labels": len(ids), "pruned": _prune(session, ids) if prune_orphans else 0}

    return _write(target, work)


def list_vocabularies(target: Target) -> list[VocabularyInfo]:
    """All vocabularies with their label counts, by name."""

    def run(session: Session) -> list[VocabularyInfo]:
        stmt = (
            select(Vocabulary.name, func.count(VocabularyLabel.label_id), Vocabulary.created_at)
            .outerjoin(VocabularyLabel, VocabularyLabel.vocabulary_id == Vocabulary.id)
            .group_by(Vocabulary.id, Vocabulary.name, Vocabulary.created_at)
            .order_by(Vocabulary.name)
        )
        return [VocabularyInfo(n, int(c), t) for n, c, t in session.execute(stmt)]

    return _read(target, run)


def list_labels(target: Target, vocab: str) -> list[LabelSpec]:
    """Labels of a vocabulary (normalised text, kind), in code-point order of the text."""

    def run(session: Session) -> list[LabelSpec]:
        vocabulary_id = _vocabulary_id(session, vocab)
        stmt = (
            select(Label.text, VocabularyLabel.kind)
            .join(VocabularyLabel, VocabularyLabel.label_id == Label.id)
            .where(VocabularyLabel.vocabulary_id == vocabulary_id)
            .order_by(_text_order(session))
        )
        return [LabelSpec(t, k) for t, k in session.execute(stmt)]

    return _read(target, run)


ARTIFACTS_KEY = "artifacts"  # params[...] of a model version: where its files are (see ovc.registry.publish)


def resolve_artifacts(target: Target, info: ModelVersionInfo) -> ModelVersionInfo:
    """``info`` with its artifacts directory made absolute against the registry's own location.

    ``publish`` stores the artifacts directory relative to a file registry (``registry_artifacts``
    next to ``registry.db``), so a moved or copied project keeps working; ``dir_at_publish`` (the
    absolute path at publish time) is the fallback when the relative one does not exist (a registry
    copied without its artifacts, an artifact store outside the project). Absolute entries
    (PostgreSQL registries, versions published before this change) are kept as they are.
    """
    from ovc.registry.db import registry_dir

    params = dict(info.params or {})
    arts = dict(params.get(ARTIFACTS_KEY) or {})
    stored = arts.get("dir")
    if not stored or Path(stored).is_absolute():
        return info
    base = registry_dir(target if isinstance(target, Engine) else target.get_bind())
    candidates = [base / stored] if base is not None else []
    if arts.get("dir_at_publish"):
        candidates.append(Path(arts["dir_at_publish"]))
    found = next((c for c in candidates if c.is_dir()), candidates[0] if candidates else Path(stored))
    arts["dir"] = str(found)
    params[ARTIFACTS_KEY] = arts
    return dataclasses.replace(info, params=params)


def get_model_version(target: Target, model_version: str = "latest") -> ModelVersionInfo:
    """A model version (``"latest"`` = highest id; NotFoundError if absent), artifacts resolved.

    The public way to read one version for loading it (:func:`resolve_artifacts`).
    """
    return resolve_artifacts(target, _read(target, lambda s: _model_version(s, model_version)))


def list_model_versions(target: Target) -> list[ModelVersionInfo]:
    """All model versions, oldest first."""
    return _read(target, lambda s: [_info(m) for m in s.scalars(select(ModelVersion).order_by(ModelVersion.id))])


def latest_model_version(target: Target) -> ModelVersionInfo | None:
    """The most recently published model version (highest id), or None."""

    def run(session: Session) -> ModelVersionInfo | None:
        mv = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1)).first()
        return _info(mv) if mv is not None else None

    return _read(target, run)


def set_threshold(
    target: Target,
    value: float,
    model_version: str = "latest",
    vocab: str | None = None,
    label: str | None = None,
) -> None:
    """Store a threshold for a model version: global, per vocabulary, per label, or per label in a vocabulary."""

    def work(session: Session) -> None:
        mv = _model_version(session, model_version)
        vocabulary_id = _vocabulary_id(session, vocab) if vocab is not None else None
        label_id = None
        if label is not None:
            text = normalize_label(label)
            label_id = _label_ids(session, [text]).get(text)
            if label_id is None:
                raise NotFoundError(f"unknown label {label!r}")
        _set_threshold(session, mv.id, float(value), vocabulary_id, label_id)

    _write(target, work)


def get_threshold(
    target: Target, model_version: str = "latest", vocab: str | None = None, label: str | None = None
) -> float | None:
    """The most specific threshold: label-in-vocabulary > label > vocabulary > global; None if none."""

    def run(session: Session) -> float | None:
        mv = _model_version(session, model_version)
        vocabulary_id = _vocabulary_id(session, vocab) if vocab is not None else None
        label_id = None
        if label is not None:
            text = normalize_label(label)
            label_id = _label_ids(session, [text]).get(text)
        candidates = []
        if label_id is not None:
            if vocabulary_id is not None:
                candidates.append(threshold_target("label", vocabulary_id, label_id))
            candidates.append(threshold_target("label", None, label_id))
        if vocabulary_id is not None:
            candidates.append(threshold_target("vocabulary", vocabulary_id, None))
        candidates.append(threshold_target("global", None, None))
        rows = session.execute(
            select(Threshold.target, Threshold.value).where(
                Threshold.model_version_id == mv.id, Threshold.target.in_(candidates)
            )
        )
        found = {t: v for t, v in rows}
        return next((float(found[c]) for c in candidates if c in found), None)

    return _read(target, run)


def load_embedding_matrix(
    target: Target, vocab: str, model_version: str = "latest", *, strict: bool = True
) -> tuple[list[str], np.ndarray, list[str | None]]:
    """A vocabulary's label embeddings under a model version, for scoring (paper §3, Fig. 2b).

    One query joins memberships, labels and embeddings (model version resolved in a subquery); the
    vectors are concatenated into one buffer and viewed with ``np.frombuffer`` (no per-row numpy).

    Args:
        target: Engine or Session.
        vocab: vocabulary name.
        model_version: ``"latest"`` or a name.
        strict: labels without an embedding for this version raise NotFoundError (True) or are
            skipped with a warning (False).

    Returns:
        (labels, matrix, kinds): normalised texts in code-point order, a writable (n, dim) float32
        matrix whose row i is f_t(labels[i]), and each label's kind (or None).
    """

    def run(session: Session) -> tuple[list[str], np.ndarray, list[str | None]]:
        if model_version == "latest":
            mv_id = select(ModelVersion.id).order_by(ModelVersion.id.desc()).limit(1).scalar_subquery()
        else:
            mv_id = select(ModelVersion.id).where(ModelVersion.name == model_version).scalar_subquery()
        stmt = (
            select(Label.text, VocabularyLabel.kind, LabelEmbedding.dim, LabelEmbedding.vector)
            .select_from(VocabularyLabel)
            .join(Vocabulary, Vocabulary.id == VocabularyLabel.vocabulary_id)
            .join(Label, Label.id == VocabularyLabel.label_id)
            .outerjoin(
                LabelEmbedding,
                (LabelEmbedding.label_id == VocabularyLabel.label_id) & (LabelEmbedding.model_version_id == mv_id),
            )
            .where(Vocabulary.name == vocab)
        )
        # The only query when all is well; Core (not ORM) execution: no per-row ORM wrapping.
        rows = session.connection().execute(stmt).all()
        # Sort here, not in SQL: an ORDER BY makes SQLite copy every 2 KiB vector through a temp
        # b-tree (2x slower). Python orders str by code point, like SQLite BINARY / PostgreSQL "C".
        rows.sort(key=itemgetter(0))
        if not rows:
            _vocabulary_id(session, vocab)  # raises NotFoundError if unknown
            mv = _model_version(session, model_version)
            return [], np.zeros((0, mv.embed_dim), dtype=np.float32), []
        texts, kinds, dims, vectors = zip(*rows)
        if None in vectors:  # C-level scans (100k rows): no per-row Python on the happy path
            missing = [t for t, v in zip(texts, vectors) if v is None]
            mv = _model_version(session, model_version)  # raises NotFoundError for an unknown version
            msg = (
                f"{len(missing)} label(s) of vocabulary {vocab!r} have no embedding for model version "
                f"{mv.name!r} (e.g. {missing[:3]}); run `ovc vocab add` / vocab-refresh for this version"
            )
            if strict:
                raise NotFoundError(msg)
            log.warning(msg)
            keep = [i for i, v in enumerate(vectors) if v is not None]
            texts, kinds, dims, vectors = ([seq[i] for i in keep] for seq in (texts, kinds, dims, vectors))
        if not texts:
            return [], np.zeros((0, mv.embed_dim), dtype=np.float32), []
        dim = dims[0]
        if dims.count(dim) != len(dims):
            raise RegistryError(f"vocabulary {vocab!r}: embeddings of mixed dims under {model_version!r}")
        buf = bytearray().join(vectors)  # one copy; bytearray -> writable array
        matrix = np.frombuffer(buf, dtype="<f4").reshape(len(texts), dim)  # (n*dim,) -> (n, dim)
        if sys.byteorder != "little":
            matrix = matrix.astype(np.float32)
        return list(texts), matrix, list(kinds)

    return _read(target, run)


def counts(target: Target) -> dict[str, int]:
    """Row counts of every registry table (for reports and tests)."""
    tables = {
        "model_versions": ModelVersion,
        "vocabularies": Vocabulary,
        "labels": Label,
        "vocabulary_labels": VocabularyLabel,
        "label_embeddings": LabelEmbedding,
        "thresholds": Threshold,
    }
    return _read(
        target,
        lambda s: {name: int(s.scalar(select(func.count()).select_from(m)) or 0) for name, m in tables.items()},
    )
