"""SQL registry of model versions, vocabularies, label embeddings and thresholds (paper §3, Fig. 2b).

Modules, lowest first: ``errors`` (the RegistryError family), ``models`` (tables), ``db`` (engines,
migrations), ``labels`` (normalisation, validation), ``transactions`` (write transactions, retries,
read sessions), ``queries`` (read-only lookups, embedding matrices), ``thresholds`` (the one
precedence), ``store`` (writes: publish, add/remove labels), ``publish`` (the pipeline stage).

Label embeddings are precomputed into a database so that classifying against a vocabulary costs a
matrix product; new labels are embedded incrementally. SQLite (embedded default) and PostgreSQL are
served by the same SQLAlchemy code and the same Alembic migrations.

    from ovc.registry import open_registry, add_labels, load_embedding_matrix
    engine = open_registry(cfg)                        # writers: resolves the URL, migrates if behind
    engine = open_registry_readonly(cfg)               # readers: never create, migrate or lock
    add_labels(engine, "retail", ["Red Car", ("running", "action")], encode_fn)
    labels, matrix, kinds = load_embedding_matrix(engine, "retail")   # matrix: (n, dim) float32
"""

from ovc.registry.db import (
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    open_registry,
    open_registry_readonly,
    resolve_url,
    session_factory,
    upgrade,
)
from ovc.registry.errors import (
    EncodeError,
    InvalidNameError,
    NotFoundError,
    ReadOnlyRegistryError,
    RegistryBusyError,
    RegistryError,
    RegistryNotFoundError,
    RegistrySchemaError,
)
from ovc.registry.store import (
    AddLabelsResult,
    LabelIssue,
    LabelPlan,
    LabelSpec,
    ModelVersionInfo,
    PublishResult,
    VocabularyInfo,
    add_labels,
    counts,
    get_model_version,
    get_threshold,
    label_thresholds,
    latest_model_version,
    list_labels,
    list_model_versions,
    list_vocabularies,
    load_embedding_matrix,
    normalize_label,
    plan_labels,
    publish_model_version,
    read_label_file,
    remove_labels,
    remove_vocabulary,
    set_threshold,
    sha256_file,
    sync_vocabulary,
    validate_labels,
)

__all__ = [
    "AddLabelsResult",
    "EncodeError",
    "InvalidNameError",
    "LabelIssue",
    "LabelPlan",
    "LabelSpec",
    "ModelVersionInfo",
    "NotFoundError",
    "PublishResult",
    "ReadOnlyRegistryError",
    "RegistryBusyError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistrySchemaError",
    "VocabularyInfo",
    "add_labels",
    "counts",
    "current_revision",
    "downgrade",
    "get_model_version",
    "get_threshold",
    "head_revision",
    "label_thresholds",
    "latest_model_version",
    "list_labels",
    "list_model_versions",
    "list_vocabularies",
    "load_embedding_matrix",
    "make_engine",
    "normalize_label",
    "plan_labels",
    "open_registry",
    "open_registry_readonly",
    "publish_model_version",
    "read_label_file",
    "remove_labels",
    "remove_vocabulary",
    "resolve_url",
    "session_factory",
    "set_threshold",
    "sha256_file",
    "sync_vocabulary",
    "upgrade",
    "validate_labels",
]
