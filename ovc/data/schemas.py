"""pandera schemas of the two agreed tables: the video manifest and the label vocabulary.

Manifest (one row per video)::

    video_id  str        unique, non-empty
    path      str        non-empty; relative paths are relative to the manifest file's directory
    labels    list[str]  non-empty strings, no duplicates within a video; the list itself is
                         non-empty after ``clean`` (``MANIFEST_SCHEMA``), may be empty before
                         (``RAW_MANIFEST_SCHEMA``)
    split     str        train | val | open_entities | open_actions | open_actions_related | open_rare | open_synonyms | open_temporal | ...
    source    str        dataset adapter that produced the row (e.g. "synthworld")
    caption   str        optional column: static caption (objects, colours, scene; never motion)

Vocabulary (one row per (vocab, label))::

    label     str        non-empty
    vertical  str        YouTube-8M-style category ("Shapes", "Actions", "Games", ...)
    kind      str        entity | action
    vocab     str        "train" (closed vocabulary of train/val) or an open split's name
    (vocab, label) unique

Extra columns are allowed (``strict=False``) so adapters can carry more metadata. Validation is
always lazy (all failures collected); :func:`validate` turns pandera's ``SchemaErrors`` into one
:class:`ManifestSchemaError` listing every failure with its rows and ids.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

from ovc.errors import OvcError

KINDS = ("entity", "action")
TRAIN_VOCAB = "train"  # the closed vocabulary, used by the train and val splits


class ManifestSchemaError(OvcError, ValueError):
    """A manifest or vocabulary table that violates its schema; the message names the file, the
    columns, the failing rows (index + id) and lists every failure found (lazy validation)."""


def _is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and len(value) > 0


def _is_label_list(value: Any) -> bool:
    """A Python list of distinct non-empty strings (may be empty)."""
    return isinstance(value, list) and all(_is_nonempty_str(v) for v in value) and len(set(value)) == len(value)


_NONEMPTY = pa.Check(_is_nonempty_str, element_wise=True, error="non-empty string")
_LABEL_LIST = pa.Check(_is_label_list, element_wise=True, error="list of distinct non-empty strings")
_LABELS_PRESENT = pa.Check(lambda v: isinstance(v, list) and len(v) > 0, element_wise=True, error="at least one label")


def _manifest_schema(require_labels: bool) -> pa.DataFrameSchema:
    label_checks = [_LABEL_LIST, _LABELS_PRESENT] if require_labels else [_LABEL_LIST]
    return pa.DataFrameSchema(
        {
            "video_id": pa.Column(str, _NONEMPTY, unique=True),
            "path": pa.Column(str, _NONEMPTY),
            "labels": pa.Column(object, label_checks),
            "split": pa.Column(str, _NONEMPTY),
            "source": pa.Column(str),
            "caption": pa.Column(str, required=False, nullable=True),
        },
        strict=False,
        name="manifest" if require_labels else "raw manifest",
    )


MANIFEST_SCHEMA = _manifest_schema(require_labels=True)  # after `clean`: every video has a label
RAW_MANIFEST_SCHEMA = _manifest_schema(require_labels=False)  # ingest output: empty lists allowed

VOCABULARY_SCHEMA = pa.DataFrameSchema(
    {
        "label": pa.Column(str, _NONEMPTY),
        "vertical": pa.Column(str, _NONEMPTY),
        "kind": pa.Column(str, pa.Check.isin(list(KINDS))),
        "vocab": pa.Column(str, _NONEMPTY),
    },
    unique=["vocab", "label"],
    strict=False,
    name="vocabulary",
)

_ID_COLUMNS = ("video_id", "label")  # columns that identify a row in error messages
_MAX_ROWS_SHOWN = 20  # per failure group; the total count is always given


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value.tolist() if hasattr(value, "tolist") else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_failures(failure_cases: pd.DataFrame, df: pd.DataFrame, source: str) -> str:
    """Human-readable summary of pandera ``SchemaErrors.failure_cases``, one line per (column,
    check) with every failing row index, its id (video_id / vocab:label) and the failing value.

    Args:
        failure_cases: pandera's table (schema_context, column, check, failure_case, index).
        df: the validated frame (to look ids up by row index).
        source: what was validated (a file path or a description) for the first line.
    """
    fc = failure_cases.copy()
    fc["column"] = fc["column"].map(lambda c: "<table>" if c is None or c != c else str(c))
    fc["check"] = fc["check"].astype(str)
    groups: list[str] = []
    columns = sorted(set(fc["column"]))
    for (column, check), rows in fc.groupby(["column", "check"], sort=True, dropna=False):
        items: list[str] = []
        seen: set[Any] = set()
        for _, r in rows.iterrows():
            idx = r["index"]
            if idx is None or idx != idx:  # table-level failure (missing column, wrong dtype, ...)
                items.append(_short(r["failure_case"], 200))
                continue
            idx = int(idx)
            if idx in seen:  # multi-column checks report each row once per column
                continue
            seen.add(idx)
            ident = ""
            if idx in df.index:
                row = df.loc[idx]
                if "video_id" in df.columns:
                    ident = f" video_id={_short(row['video_id'])}"
                elif "label" in df.columns:
                    vocab = f"{row['vocab']}:" if "vocab" in df.columns else ""
                    ident = f" label={vocab}{row['label']}"
            value = _short(r["failure_case"])
            items.append(f"row {idx}{ident} value={value}")
        shown = items[:_MAX_ROWS_SHOWN]
        more = f"; ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
        groups.append(f"  - column {column!r}, check {check!r}: {len(items)} failure(s): " + "; ".join(shown) + more)
    header = (
        f"{source}: {len(groups)} schema violation(s) in column(s) {', '.join(columns)} ({len(fc)} failure case(s)):"
    )
    return "\n".join([header, *groups])


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema, source: str) -> pd.DataFrame:
    """Validate ``df`` lazily against ``schema``; raise one :class:`ManifestSchemaError` listing
    every failure (names ``source``, columns, rows and ids). Returns the validated frame.

    Args:
        df: the table.
        schema: one of MANIFEST_SCHEMA, RAW_MANIFEST_SCHEMA, VOCABULARY_SCHEMA.
        source: the file path (or a description) named in the error message.
    """
    try:
        return schema.validate(df, lazy=True)
    except SchemaErrors as e:
        raise ManifestSchemaError(format_failures(e.failure_cases, df, source)) from None
    except SchemaError as e:  # pragma: no cover - lazy=True reports through SchemaErrors
        raise ManifestSchemaError(f"{source}: {e}") from None
