"""The paper's claims as verdicts over seeds: mean ± std per (split, method, metric), margin vs a baseline.

``ovc bench paper_claims`` evaluates several training seeds; this module turns their ``metrics.json``
files into

* cells: ``{split: {method: {metric: {"mean", "std", "n"}}}}`` (std over seeds, ddof=1; 0 with one seed);
* claims: one row per :class:`Claim` — ``margin = mean(method) − mean(baseline)`` on the claim's
  (split, metric), ``std`` = the pooled std ``sqrt((std_m² + std_b²) / 2)``, and
  ``holds = margin > 2 × std`` (a claim backed by one seed, std 0, holds on any positive margin —
  the JSON says how many seeds there were). A claim with a ``level`` compares the method's cell
  with that fixed number instead (the calibration claims of §4.5, below);
* the same table as markdown.

Derived metrics are computed per seed, before averaging (:func:`with_derived`): the mean of ratios,
not the ratio of means, so the spread over seeds is the ratio's own.

**Calibration (§4.5).** The paper picks one threshold on the training datasets' validation splits
(argmax of the minimum F1, :mod:`ovc.evaluate.calibration`) and shows (Fig. 6b) that for ours it
works on unseen concepts: the F1 of each open dataset at that threshold is close to what the dataset's
own best threshold would give. Per seed and split, ``f1_calibrated_over_peak`` =
``f1_at_calibrated / peak_f1_<average>`` (the oracle of §4.3, same F1 averaging as the calibration;
1 = the pre-selected threshold is as good as the oracle), and the claim is
``mean − (1 − CALIBRATION_TOLERANCE) > 2 × std``: calibrated F1 within 10 % of the oracle, beyond
the spread over seeds. §4.5 prints no calibrated F1 (Fig. 6 is a plot), so the band is set from
Table 2 (oracle peak F1): on Fig. 6b's two open datasets ours ("+ Temporal Modeling") leads the
frozen CLIP + LLM baseline ("Fixed LLM Prompts") by 59.6 vs 50.2 (TAO, 15.8 % of ours') and 52.6 vs
51.4 (ActivityNet, 2.3 %), 9 % on average. The band lets calibration cost about what the method gains
over that baseline: ours at the pre-selected threshold (≥ 0.90 of its oracle) is then still about as
good as the baseline at *its* oracle threshold (0.91 of ours' on average) — §4.5's point: one
threshold gives ours F1 "simultaneously high" on both datasets, the baseline's "poor" on TAO and
"modest" on ActivityNet. The comparison itself, ours vs the frozen
CLIP + LLM baseline at their calibrated thresholds, is an ordinary claim on ``f1_at_calibrated``.

Each claim names the split built to test it (DESIGN.md "The offline benchmark as an instrument",
``ovc/data/synthworld.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard


@dataclass(frozen=True)
class Claim:
    """One claim: ``method`` beats ``baseline`` on ``metric`` of ``split``.

    Attributes:
        claim: what the paper says (with its section), as the table's first column.
        split: the evaluation split built to test it.
        metric: a metrics.json key, or a per-seed derived one (:func:`with_derived`).
        method: the method that should win.
        baseline: the method it is compared with; with ``level``, ``method`` itself (the metric is a
            ratio to the method's own reference, e.g. its oracle peak F1).
        level: compare ``method``'s cell with this fixed number instead of a baseline's cell:
            ``margin = mean − level``, ``std`` = the method's std over seeds (a fixed level has no
            spread, so nothing is pooled), ``holds = margin > 2 × std``. None: an ordinary claim.
    """

    claim: str
    split: str
    metric: str
    method: str
    baseline: str
    level: float | None = None

    def __post_init__(self) -> None:
        if self.level is not None and self.baseline != self.method:
            raise ValueError(
                f"claim {self.claim!r}: a level claim judges {self.method!r} alone; baseline must be {self.method!r}, "
                f"got {self.baseline!r}"
            )


#: Calibrated F1 may fall this fraction below the oracle peak F1 (§4.5; why 10 %: module doc).
CALIBRATION_TOLERANCE = 0.10
#: The open splits the calibration claims are judged on: every open-vocabulary test of the world.
CALIBRATION_SPLITS = (
    "open_entities",
    "open_actions_related",
    "open_actions",
    "open_rare",
    "open_synonyms",
    "open_temporal",
)


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
    # Table 3b (open datasets; rows: spatial reg. with the frozen backbone, without it, without it and
    # the backbone unfrozen): the regularisation's gain is on actions (ActivityNet 53.8 vs
    # 32.5); on objects (TAO) the unregularised branch was *higher* (62.1 vs 56.6); full fine-tuning is
    # below both (42.7 / 28.3). ours_no_reg = ours at λ = 0 (ovc/models/video_encoder.py).
    Claim(
        "Weight regularisation keeps open-vocabulary ability (§3.2, Table 3b: actions 53.8 vs 32.5 at λ = 0)",
        "open_actions_related",
        "aupr_macro_novel",
        "ours",
        "ours_no_reg",
    ),
    Claim(
        "Weight regularisation keeps open-vocabulary ability (§3.2) on novel entities "
        "(Table 3b itself has objects 56.6 with vs 62.1 without)",
        "open_entities",
        "aupr_macro_novel",
        "ours",
        "ours_no_reg",
    ),
    Claim(
        "A frozen backbone beats full fine-tuning even without regularisation (Table 3b: objects 62.1 vs 42.7)",
        "open_entities",
        "aupr_macro_novel",
        "ours_no_reg",
        "vificlip",
    ),
    Claim("Training adds to the untrained start (ours)", "val", "aupr_macro", "ours", "ours_step0"),
    Claim("Training adds to the untrained start (CoOp*)", "val", "aupr_macro", "coop", "coop_step0"),
    # §4.5 / Fig. 6b: one threshold calibrated on the closed validation data, the two open datasets
    *(
        Claim(
            "One calibrated threshold works for unseen concepts (§4.5), vs the frozen CLIP + LLM baseline",
            split,
            "f1_at_calibrated",
            "ours",
            "clip_fixed_attributes",
        )
        for split in ("open_entities", "open_actions_related")
    ),
    *(
        Claim(
            f"One calibrated threshold transfers (§4.5): calibrated F1 ≥ {1 - CALIBRATION_TOLERANCE:.0%} of the oracle's",
            split,
            "f1_calibrated_over_peak",
            "ours",
            "ours",
            level=1 - CALIBRATION_TOLERANCE,
        )
        for split in CALIBRATION_SPLITS
    ),
)

_RESERVED = ("calibrated_threshold",)


def _with_quotient(metrics: Mapping[str, Any], key: str, numerator: str, denominator: str) -> dict[str, Any]:
    """A copy of a metrics.json object where every (split, method) entry with a number ``numerator``
    and a positive number ``denominator`` also has ``key`` = numerator / denominator."""
    out: dict[str, Any] = {}
    for split, methods in metrics.items():
        if split in _RESERVED or not isinstance(methods, Mapping):
            out[split] = methods
            continue
        out[split] = {}
        for method, entry in methods.items():
            entry = dict(entry)
            num, den = entry.get(numerator), entry.get(denominator)
            if _is_number(num) and _is_number(den) and den > 0:
                entry[key] = num / den
            out[split][method] = entry
    return out


def _is_number(v: Any) -> TypeGuard[float]:
    """A finite int/float (not a bool, not None: undefined metrics are null in metrics.json)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def with_ratio(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a metrics.json object where every entry with both ``aupr_macro_novel`` and
    ``aupr_macro_known`` also has ``aupr_ratio_novel_known`` = novel / known (per seed, before
    averaging: on ``open_synonyms`` the synonym-to-base-word ratio of §3.1's claim; 1 = the new
    words work as well as the words CLIP knows)."""
    return _with_quotient(metrics, "aupr_ratio_novel_known", "aupr_macro_novel", "aupr_macro_known")


def with_calibration_ratio(metrics: Mapping[str, Any], average: str = "micro") -> dict[str, Any]:
    """A copy of a metrics.json object where every entry with ``f1_at_calibrated`` and a positive oracle
    ``peak_f1_<average>`` also has ``f1_calibrated_over_peak`` = their ratio (§4.5: 1 = the threshold
    calibrated on val is as good on this split as the split's own best one).

    Args:
        metrics: one seed's metrics.json object.
        average: ``evaluate.calibration_average``, the F1 averaging ``f1_at_calibrated`` was computed
            with ("micro" | "macro"), so numerator and oracle are the same F1.
    """
    if average not in ("micro", "macro"):
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")
    return _with_quotient(metrics, "f1_calibrated_over_peak", "f1_at_calibrated", f"peak_f1_{average}")


def with_derived(metrics: Mapping[str, Any], average: str = "micro") -> dict[str, Any]:
    """Every per-seed derived metric the claims read: :func:`with_ratio` and :func:`with_calibration_ratio`.

    Args:
        metrics: one seed's metrics.json object.
        average: ``evaluate.calibration_average`` (see :func:`with_calibration_ratio`).
    """
    return with_calibration_ratio(with_ratio(metrics), average)


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
                    if _is_number(v):
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


def level_verdict(method: Mapping[str, Any], level: float) -> tuple[float, float, bool]:
    """(margin, std, holds) of a cell ``{"mean", "std"}`` against a fixed ``level``: margin = mean − level,
    std = the cell's own (pooling with a spread-free level would shrink it by √2), holds = margin > 2 × std."""
    margin = float(method["mean"]) - float(level)
    std = float(method["std"])
    return margin, std, margin > 2 * std


def evaluate_claims(
    cells: Mapping[str, Any], claims: Sequence[Claim] = PAPER_CLAIMS
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Verdicts of ``claims`` on aggregated cells (:func:`aggregate`).

    Returns:
        (rows, skipped): rows ``{claim, split, metric, method, baseline, margin, std, holds, n_seeds}``
        for claims whose cells have values (a claim with a ``level`` also has ``level``, and only
        needs the method's cell); skipped ``{claim, reason}`` for the others (a split or method
        that was not evaluated, or a metric undefined on it).
    """
    rows, skipped = [], []
    for c in claims:
        cm = cells.get(c.split, {}).get(c.method, {}).get(c.metric)
        cb = cells.get(c.split, {}).get(c.baseline, {}).get(c.metric)  # a level claim: the same cell
        missing = list(
            dict.fromkeys(
                name for name, cell in ((c.method, cm), (c.baseline, cb)) if cell is None or cell["mean"] is None
            )
        )
        if missing:
            skipped.append({"claim": c.claim, "reason": f"no {c.metric} of {', '.join(missing)} on {c.split}"})
            continue
        assert cm is not None and cb is not None  # both checked above
        margin, std, holds = level_verdict(cm, c.level) if c.level is not None else verdict(cm, cb)
        row = {
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
        if c.level is not None:
            row["level"] = c.level
        rows.append(row)
    return rows, skipped


def claims_markdown(
    rows: Sequence[Mapping[str, Any]], cells: Mapping[str, Any], skipped: Sequence[Mapping[str, str]] = ()
) -> str:
    """The claims table (values ×100): claim, split, metric, method and baseline mean ± std, margin, 2σ, verdict.

    A row with a ``level`` shows the level in the baseline column ("level 90.0") and its margin is
    mean − level; its std is the method's own.
    """
    lines = [
        "| Claim | Split | Metric | Method (mean ± std) | Baseline (mean ± std) | Margin | 2 × pooled std | Holds |",
        "|:---|:---|:---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        m = cells[r["split"]][r["method"]][r["metric"]]
        if r.get("level") is not None:
            base = f"level {100 * r['level']:.1f}"  # a fixed number: no mean ± std
        else:
            b = cells[r["split"]][r["baseline"]][r["metric"]]
            base = f"{r['baseline']} {100 * b['mean']:.1f} ± {100 * b['std']:.1f}"
        lines.append(
            f"| {r['claim']} | {r['split']} | {r['metric']} | {r['method']} {100 * m['mean']:.1f} ± {100 * m['std']:.1f} | "
            f"{base} | {100 * r['margin']:+.1f} | {200 * r['std']:.1f} | {'yes' if r['holds'] else 'no'} |"
        )
    for s in skipped:
        lines.append(f"| {s['claim']} | – | – | – | – | – | – | not tested: {s['reason']} |")
    return "\n".join(lines) + "\n"
