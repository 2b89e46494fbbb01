"""Registry writes: publish a model version, grow and shrink vocabularies incrementally.

Split along its seams (all names stay importable from here and from :mod:`ovc.registry`): label
policy in :mod:`ovc.registry.labels`, transactions and retries in :mod:`ovc.registry.transactions`,
read-only queries in :mod:`ovc.registry.queries`, thresholds in :mod:`ovc.registry.thresholds`.

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

import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, Table, delete, exists, insert, select
from sqlalchemy.orm import Session

from ovc.registry.errors import (  # noqa: F401 - re-exported: ovc.registry.store.<Error> keeps working
    EncodeError,
    InvalidNameError,
    NotFoundError,
    ReadOnlyRegistryError,
    RegistryBusyError,
    RegistryError,
)
from ovc.registry.labels import (  # noqa: F401 - re-exported
    DEFAULT_MAX_LABEL_CHARS,
    LabelIssue,
    LabelLike,
    LabelSpec,
    check_vocab_name,
    normalize_label,
    read_label_file,
    sha256_file,
    validate_labels,
)
from ovc.registry.models import (
    Label,
    LabelEmbedding,
    ModelVersion,
    Vocabulary,
    VocabularyLabel,
)
from ovc.registry.queries import (  # noqa: F401 - re-exported
    ARTIFACTS_KEY,
    ModelVersionInfo,
    VocabularyInfo,
    counts,
    embedded_texts,
    find_label_ids,
    find_vocabulary_id,
    get_model_version,
    latest_model_version,
    list_labels,
    list_model_versions,
    list_vocabularies,
    load_embedding_matrix,
    model_version_info,
    resolve_artifacts,
    resolve_model_version,
    reusable_vectors,
)
from ovc.registry.thresholds import get_threshold, label_thresholds, set_threshold  # noqa: F401 - re-exported
from ovc.registry.thresholds import (
    store_threshold as _set_threshold,  # one name the publish test can patch
)
from ovc.registry.transactions import (
    CHUNK,
    Target,
    chunks,
    insert_ignore,
    read_session,
    write_transaction,
)

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]

DEFAULT_BATCH_SIZE = 256  # labels per encode_fn call
_AUTO_NAME = re.compile(r"v(\d+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")


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


def _ensure_vocabulary(session: Session, name: str) -> int:
    stmt = insert_ignore(session, Vocabulary.__table__)
    if stmt is not None:
        session.execute(stmt, [{"name": name}])
    elif session.scalar(select(Vocabulary.id).where(Vocabulary.name == name)) is None:
        session.execute(insert(Vocabulary), [{"name": name}])
    return find_vocabulary_id(session, name)


def _ensure_labels(session: Session, texts: Sequence[str]) -> dict[str, int]:
    """Insert missing label rows (sorted: concurrent writers lock rows in the same order) -> ids."""
    texts = sorted(set(texts))
    stmt = insert_ignore(session, Label.__table__)
    for chunk in chunks(texts):
        if stmt is not None:
            session.execute(stmt, [{"text": t} for t in chunk])
        else:
            have = find_label_ids(session, chunk)
            missing = [{"text": t} for t in chunk if t not in have]
            if missing:
                session.execute(insert(Label), missing)
    ids = find_label_ids(session, texts)
    assert len(ids) == len(texts), "label rows missing after insert"
    return ids


def _link_labels(session: Session, vocabulary_id: int, specs: Sequence[LabelSpec], ids: Mapping[str, int]) -> int:
    """Link labels to a vocabulary; returns how many links are new (existing links are kept as is)."""
    table = cast(Table, VocabularyLabel.__table__)  # declarative __table__ is typed FromClause
    wanted = sorted((ids[s.text], s.kind) for s in specs)
    added = 0
    for chunk in chunks(wanted):
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
        stmt = insert_ignore(session, table)
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
    table = cast(Table, LabelEmbedding.__table__)  # declarative __table__ is typed FromClause
    items = sorted((ids[t], v) for t, v in vectors.items())
    for chunk in chunks(items):
        label_ids = [lid for lid, _ in chunk]
        session.execute(
            delete(table).where(
                table.c.model_version_id == mv.id,
                table.c.label_id.in_(label_ids),
                table.c.encoder_digest != mv.encoder_digest,
            )
        )
        rows = [
            {
                "model_version_id": mv.id,
                "label_id": lid,
                "encoder_digest": mv.encoder_digest,
                "dim": mv.embed_dim,
                "vector": vec,
            }
            for lid, vec in chunk
        ]
        stmt = insert_ignore(session, table)
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
        vname = check_vocab_name(vname)
        specs[vname], vissues = validate_labels(labels, max_label_chars)
        if vissues:
            issues[vname] = vissues
            log.warning("vocabulary %r: %d label(s) rejected, e.g. %s", vname, len(vissues), vissues[0])
    texts = sorted({s.text for vs in specs.values() for s in vs})

    vectors = read_session(target, lambda s: reusable_vectors(s, texts, encoder_digest, embed_dim))
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
        mv = model_version_info(row)
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

    result = write_transaction(target, work)
    log.info(
        "published model version %s: %d labels (%d encoded, %d reused), threshold %s",
        result.model_version,
        result.labels_embedded,
        result.encoded,
        result.reused,
        result.threshold,
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
    stmt = (
        select(Label.text)
        .join(VocabularyLabel, VocabularyLabel.label_id == Label.id)
        .where(VocabularyLabel.vocabulary_id == vid)
    )
    return set(session.connection().execute(stmt).scalars())


def _embedded_set(session: Session, mv: ModelVersionInfo, texts: Sequence[str]) -> set[str]:
    """Which of ``texts`` have an embedding for ``mv`` by its encoder: linear in len(texts).

    Large inputs read the version's embedded texts in one query (no per-chunk IN lists); small ones
    ask about their own texts only (cheap on a registry holding millions of labels).
    """
    if len(texts) <= 4 * CHUNK:
        return embedded_texts(session, mv, texts)
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
        mv = resolve_model_version(session, model_version) if model_version is not None else None
        present = _vocabulary_texts(session, vocab)
        link = [s for s in specs if present is None or s.text not in present]
        embed: list[str] = []
        vectors: dict[str, bytes] = {}
        if mv is not None:
            have = _embedded_set(session, mv, [s.text for s in specs])
            embed = [s.text for s in specs if s.text not in have]
            vectors = reusable_vectors(session, embed, mv.encoder_digest, mv.embed_dim, exclude_mv=mv.id)
        return LabelPlan(present is not None, mv, link, len(specs) - len(link), embed, vectors)

    return read_session(target, run)


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

    vocab = check_vocab_name(vocab)
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
        vocab,
        len(plan.link),
        plan.present,
        n_encode,
        len(plan.vectors),
    )
    vectors = plan.vectors
    result.reused = len(vectors)
    link_texts = {s.text for s in plan.link}
    embed_set = set(plan.embed)
    # One ordered work list: every label that needs a link or an embedding, each handled in one batch.
    work_specs = [s for s in specs if s.text in link_texts or s.text in embed_set]
    bar = tqdm(  # total = every label this call links or embeds, not one batch
        total=len(work_specs), unit="label", desc=f"vocab {vocab}", disable=None if progress is None else not progress
    )
    try:
        if not work_specs:  # a new, empty vocabulary (no labels given)
            write_transaction(target, lambda session: _ensure_vocabulary(session, vocab))
        for start in range(0, len(work_specs), write_batch):
            batch = work_specs[start : start + write_batch]
            todo = [s.text for s in batch if s.text in embed_set and s.text not in vectors]
            if todo:  # outside any transaction: no lock held while the model runs
                vectors.update(_to_bytes(todo, _encode(encode_fn, todo, mv.embed_dim, batch_size)))  # type: ignore[arg-type, union-attr]
                result.encoded += len(todo)
            added = write_transaction(
                target,
                functools.partial(
                    _write_label_batch,
                    vocab=vocab,
                    batch=batch,
                    mv=mv,
                    vectors=vectors,
                    encode_fn=encode_fn,
                    batch_size=batch_size,
                    result=result,
                ),
            )
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
        resolve_model_version(session, mv.name)  # still published?
        have = embedded_texts(session, mv, texts)  # re-check: a concurrent writer may have added some
        still = [t for t in texts if t not in have]
        late = [t for t in still if t not in vectors]
        if late:  # rare: state changed since planning (e.g. another encoder's row was replaced)
            if encode_fn is None:
                raise RegistryError(f"{len(late)} label(s) of {vocab!r} need embeddings but no encode_fn was given")
            vectors.update(_to_bytes(late, _encode(encode_fn, late, mv.embed_dim, batch_size)))
            result.encoded += len(late)
        _store_embeddings(session, mv, ids, {t: vectors[t] for t in still})
    return added


def sync_vocabulary(
    target: Target,
    vocab: str,
    labels: Iterable[LabelLike],
    encode_fn: EncodeFn | None = None,
    model_version: str | None = "latest",
    *,
    prune: bool = False,
    **kw: Any,
) -> tuple[AddLabelsResult, int]:
    """Make ``vocab`` hold ``labels``: :func:`add_labels` (what ``ovc vocab add`` runs), then with
    ``prune`` unlink the labels that are no longer in the input (embeddings stay cached).

    Returns:
        (the add result, number of labels unlinked).
    """
    labels = list(labels)  # read twice: added, then the set to keep
    result = add_labels(target, vocab, labels, encode_fn, model_version, **kw)
    specs, _ = validate_labels(labels, kw.get("max_label_chars", DEFAULT_MAX_LABEL_CHARS))
    removed = 0
    if prune:
        keep = {s.text for s in specs}
        stale = [s.text for s in list_labels(target, vocab) if s.text not in keep]
        if stale:
            removed = int(remove_labels(target, vocab, stale)["removed"])
    return result, removed


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
        vocabulary_id = find_vocabulary_id(session, vocab)
        ids = list(find_label_ids(session, texts).values())
        removed = 0
        for chunk in chunks(ids):
            removed += cast(
                CursorResult,
                session.execute(  # DML returns a CursorResult (rowcount)
                    delete(VocabularyLabel).where(
                        VocabularyLabel.vocabulary_id == vocabulary_id, VocabularyLabel.label_id.in_(chunk)
                    )
                ),
            ).rowcount
        pruned = _prune(session, ids) if prune_orphans else 0
        return {"removed": removed, "not_present": len(texts) - removed, "pruned": pruned}

    out = write_transaction(target, work)
    out["issues"] = [asdict(i) for i in issues]
    return out


def _prune(session: Session, label_ids: Sequence[int]) -> int:
    """Delete labels among ``label_ids`` that belong to no vocabulary (cascades to embeddings)."""
    pruned = 0
    linked = exists().where(VocabularyLabel.label_id == Label.id)
    for chunk in chunks(list(label_ids)):
        pruned += cast(CursorResult, session.execute(delete(Label).where(Label.id.in_(chunk), ~linked))).rowcount
    return pruned


def remove_vocabulary(target: Target, vocab: str, *, prune_orphans: bool = False) -> dict[str, int]:
    """Delete a vocabulary, its memberships and its thresholds. Returns ``{"labels", "pruned"}``."""

    def work(session: Session) -> dict[str, int]:
        vocabulary_id = find_vocabulary_id(session, vocab)
        ids = list(
            session.scalars(select(VocabularyLabel.label_id).where(VocabularyLabel.vocabulary_id == vocabulary_id))
        )
        session.execute(delete(Vocabulary).where(Vocabulary.id == vocabulary_id))  # FK cascades
        return {"labels": len(ids), "pruned": _prune(session, ids) if prune_orphans else 0}

    return write_transaction(target, work)
