"""Label policy of the registry: normalisation and validation (one issue per bad label, the rest goes on).

:func:`normalize_label`: Unicode NFC, strip, collapse runs of whitespace to one space, lower-case.
Labels are matched case-insensitively and the stored, embedded text is the normalised one (see
:mod:`ovc.registry.store` for why casing is not kept). Bad input becomes a :class:`LabelIssue`:
empty, longer than ``max_label_chars``, not UTF-8, control/format characters, duplicates within one
input (after normalisation), unknown kind.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovc.registry.errors import InvalidNameError
from ovc.registry.models import LABEL_KINDS

DEFAULT_MAX_LABEL_CHARS = 200  # mirrors RegistryConfig.max_label_chars


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


LabelLike = str | bytes | LabelSpec | tuple  # "text" | b"text" | (text, kind) | LabelSpec


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
    return _validate(((i, *_split_item(item)) for i, item in enumerate(labels, start=1)), max_label_chars)


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


def check_vocab_name(name: str) -> str:
    """A vocabulary name, stripped; InvalidNameError if empty, over 200 characters or with control characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidNameError(f"vocabulary name must be a non-empty string, got {name!r}")
    name = name.strip()
    if len(name) > 200 or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise InvalidNameError(f"invalid vocabulary name {name!r} (max 200 printable characters)")
    return name
