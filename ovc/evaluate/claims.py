"""The paper's claims as verdicts over seeds: mean ± std per (split, method, metric), margin vs a baseline.

``ovc bench paper_claims`` evaluates several training seeds; this module turns their ``metrics.json``
files into

* cells: ``{split: {method: {metric: {"mean", "std", "n"}}}}`` (std over seeds, ddof=1; 0 with one seed);
* claims: one row per :class:`Claim` — ``margin = mean(method) − mean(baseline)`` on the claim's
  (split, metric), ``std`` = the pooled std ``sqrt((std_m² + std_b²) / 2)``, and
  ``holds = margin > 2 × std`` (a claim backed by one seed, std 0, holds on any positive margin —
  the JSON says how many seeds there were);
* the same table as markdown.

Each claim names the split built to test it (DESIGN.md "The offline benchmark as an instrument",
``ovc/data/synthworld.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    """One claim: ``method`` beats ``baseline`` on ``metric`` of ``split``."""

    claim: str
    split: str
    metric: str
    method: str
    baseline: str


#: The claims of the paper the offline world can test, with the split built for each.
PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "LLM knowledge reaches new words (§3.1): AUPR(synonyms) / AUPR(base words), same videos",
        "open_synonyms",
        "aupr_ratio_novel_known",
        "ours",
        "coop",
    ),
    Claim(
        "LLM knowledge reaches new words (§3.1): synonyms CLIP's text never read",
        "open_synonyms",
        "aupr_macro_novel",
        "ours",
        "coop",
    ),
    Claim(
        "LLM knowledge reaches new words (§3.1), vs the class-name prompt",
        "open_synonyms",
        "aupr_macro_novel",
        "ours",
        "clip_classname",
    ),
    Claim(
        "Temporal modelling (§3.2): time-reversed twins a frame mean cannot see",
        "open_temporal",
        "aupr_macro",
        "ours",
        "ours_no_temporal",
    ),
    Claim(
        "Weight regularisation keeps open-vocabulary ability (§3.2): novel entities vs full fine-tuning",
        "open_entities",
        "aupr_macro_novel",
        "ours",
        "vificlip",
    ),
    Claim(
        "Novel actions related to training actions through language",
        "open_actions_related",
        "aupr_macro_novel",
        "ours",
        "clip_classname",
    ),
    Claim(
        "Novel unrelated actions (stated hard case: rotating, blinking)",
        "open_actions",
        "aupr_macro_novel",
        "ours",
        "clip_classname",
    ),
    Claim("Training adds to the untrained start (ours)", "val", "aupr_macro", "ours", "ours_step0"),
    Claim("Training adds to the untrained start (CoOp*)", "val", "aupr_macro", "coop", "coop_step0"),
)

_RESERVED = ("calibrated_threshold",)


def with_ratio(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a metrics.json object where every entry with both ``aupr_macro_novel`` and
    ``aupr_macro_known`` also has ``aupr_ratio_novel_known`` = novel / known (per seed, before
    averaging: on ``open_synonyms`` the synonym-to-base-word ratio of §3.1's claim; 1 = the new
    words work as well as the words CLIP knows)."""
    out: dict[str, Any] = {}
    for split, methods in metrics.items():
        if split in _RESERVED or not isinstance(methods, Mapping):
            out[split] = methods
            continue
        out[split] = {}
        for method, entry in methods.items():
            entry = dict(entry)
            novel, known = entry.get("aupr_macro_novel"), entry.get("aupr_macro_known")
            if isinstance(novel, (int, float)) and isinstance(known, (int, float)) and known > 0:
                entry["aupr_ratio_novel_known"] = novel / known
            out[split][method] = entry
    return out


def aggregate(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Mean and std over seeds of every numeric (split, method, metric) cell of ``metrics.json`` objects.

    Args:
        per_seed: one metrics.json object per seed.

    Returns:
        ``{split: {method: {metric: {"mean", "std", "n"}}}}``; ``n`` counts the seeds with a value
        (null values — undefined metrics — are left out; a cell with none has mean/std None).
    """
    values: dict[tuple[str, str, str], list[float]] = {}
    for metrics in per_seed:
        for split, methods in metrics.items():
            if split in _RESERVED or not isinstance(methods, Mapping):
                continue
            for method, entry in methods.items():
                for metric, v in entry.items():
                    cell = values.setdefault((split, method, metric), [])
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                        cell.append(float(v))
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (split, method, metric), vs in values.items():
        out.setdefault(split, {}).setdefault(method, {})[metric] = _mean_std(vs)
    return out


def _mean_std(vs: Sequence[float]) -> dict[str, Any]:
    n = len(vs)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vs) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vs) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def verdict(method: Mapping[str, Any], baseline: Mapping[str, Any]) -> tuple[float, float, bool]:
    """(margin, pooled std, holds) of two cells ``{"mean", "std"}``: holds = margin > 2 × pooled std."""
    margin = float(method["mean"]) - float(baseline["mean"])
    std = math.sqrt((float(method["std"]) ** 2 + float(baseline["std"]) ** 2) / 2)
    return margin, std, margin > 2 * std


def evaluate_claims(
    cells: Mapping[str, Any], claims: Sequence[Claim] = PAPER_CLAIMS
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Verdicts of ``claims`` on aggregated cells (:func:`aggregate`).

    Returns:
        (rows, skipped): rows ``{claim, split, metric, method, baseline, margin, std, holds, n_seeds}``
        for claims whose two cells have values; skipped ``{claim, reason}`` for the others (a split
        or method that was not evaluated, or a metric undefined on it).
    """
    rows, skipped = [], []
    for c in claims:
        cm = cells.get(c.split, {}).get(c.method, {}).get(c.metric)
        cb = cells.get(c.split, {}).get(c.baseline, {}).get(c.metric)
        missing = [name for name, cell in ((c.method, cm), (c.baseline, cb)) if cell is None or cell["mean"] is None]
        if missing:
            skipped.append({"claim": c.claim, "reason": f"no {c.metric} of {', '.join(missing)} on {c.split}"})
            continue
        margin, std, holds = verdict(cm, cb)
        rows.append(
            {
                "claim": c.claim,
                "split": c.split,
                "metric": c.metric,
                "method": c.method,
                "baseline": c.baseline,
                "margin": margin,
                "std": std,
                "holds": holds,
                "n_seeds": min(cm["n"], cb["n"]),
            }
        )
    return rows, skipped


def claims_markdown(
    rows: Sequence[Mapping[str, Any]], cells: Mapping[str, Any], skipped: Sequence[Mapping[str, str]] = ()
) -> str:
    """The claims table (values ×100): claim, split, metric, method and baseline mean ± std, margin, 2σ, verdict."""
    lines = [
        "| Claim | Split | Metric | Method (mean ± std) | Baseline (mean ± std) | Margin | 2 × pooled std | Holds |",
        "|:---|:---|:---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        m = cells[r["split"]][r["method"]][r["metric"]]
        b = cells[r["split"]][r["baseline"]][r["metric"]]
        lines.append(
            f"| {r['claim']} | {r['split']} | {r['metric']} | {r['method']} {100 * m['mean']:.1f} ± {100 * m['std']:.1f} | "
            f"{r['baseline']} {100 * b['mean']:.1f} ± {100 * b['std']:.1f} | {100 * r['margin']:+.1f} | {200 * r['std']:.1f} | "
            f"{'yes' if r['holds'] else 'no'} |"
        )
    for s in skipped:
        lines.append(f"| {s['claim']} | – | – | – | – | – | – | not tested: {s['reason']} |")
    return "\n".join(lines) + "\n"
