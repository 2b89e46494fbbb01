"""Synthetic labels as data: parsing a model's reply into labels, normalising them against the
vocabulary, and the ``labels.parquet`` schema (one row per (video, label) with its provenance).

    parse_label_list('```json\\n["Dog", "playing  guitar"]\\n```')   # ['Dog', 'playing  guitar']
    normalize_label(" Playing  Guitar. ")                             # 'playing guitar'
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import pandera.pandas as pa

from ovc.data.schemas import _NONEMPTY

SYNTHETIC_VERTICAL = "Synthetic"  # vertical of labels a provider invents (paper §4.4), if kept
LABEL_COLUMNS = ["video_id", "label", "provider", "model", "score", "in_vocabulary", "already_labelled"]

SYNTH_LABELS_SCHEMA = pa.DataFrameSchema(
    {
        "video_id": pa.Column(str, _NONEMPTY),
        "label": pa.Column(str, _NONEMPTY),
        "provider": pa.Column(str, _NONEMPTY),
        "model": pa.Column(str),
        "score": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "in_vocabulary": pa.Column(bool),
        "already_labelled": pa.Column(bool),
    },
    unique=["video_id", "label"],
    strict=False,
    name="synthetic labels",
)

_STRIP = " \t\r\n.,;:!?\"'`*•·-–—()[]{}"
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•·])\s*")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)```", re.S)


class MalformedReplyError(ValueError):
    """A provider reply that is not a label list (or not the API's reply shape); names the problem."""


def normalize_label(text: Any) -> str | None:
    """Lower case, NFKC, underscores -> spaces, single spaces, no surrounding punctuation/quotes.
    None for something that is not a non-empty string afterwards."""
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        return None
    s = unicodedata.normalize("NFKC", str(text)).replace("_", " ").lower()
    s = " ".join(s.split()).strip(_STRIP)
    s = " ".join(s.split())
    return s or None


def _from_json(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if isinstance(value, dict):
        for key in ("labels", "tags", "objects", "items"):
            if isinstance(value.get(key), list):
                return _from_json(value[key])
    return None


def parse_label_list(text: str) -> list[str]:
    """A model's free-text answer -> raw label strings.

    Accepts a JSON list (``["dog", "ball"]``), a JSON object with a ``labels`` list, either inside a
    markdown code fence or embedded in prose, or a comma/semicolon/newline separated list (bullets
    and numbering stripped). An empty answer gives ``[]``.

    Raises:
        MalformedReplyError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise MalformedReplyError(f"reply content is {type(text).__name__}, not text")
    body = text.strip()
    fenced = _FENCE.search(body)
    if fenced:
        body = fenced.group(1).strip()
    for candidate in (body, body[body.find("[") : body.rfind("]") + 1] if "[" in body and "]" in body else ""):
        if not candidate:
            continue
        try:
            parsed = _from_json(json.loads(candidate))
        except json.JSONDecodeError:
            continue
        if parsed is not None:
            return parsed
    parts = re.split(r"[\n,;]", body)
    return [p for p in (_NUMBERING.sub("", x).strip() for x in parts) if p]


def guess_kind(label: str) -> str:
    """Kind of an invented label for the vocabulary schema: ``action`` if a word ends in "ing"
    ("playing guitar"), else ``entity`` — a heuristic, only used when ``keep_unknown`` is on."""
    return "action" if any(w.endswith("ing") and len(w) > 4 for w in label.split()) else "entity"
