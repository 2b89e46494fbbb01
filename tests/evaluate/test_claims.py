"""Claims logic on constructed numbers: mean ± std over seeds, pooled-std margin, both verdicts."""

import math

import pytest

from ovc.evaluate.claims import PAPER_CLAIMS, Claim, aggregate, claims_markdown, evaluate_claims, verdict, with_ratio


def _metrics(ours: float, base: float, novel_ours: float | None) -> dict:
    return {
        "open_synonyms": {
            "ours": {"aupr_macro": ours, "aupr_macro_novel": novel_ours},
            "coop": {"aupr_macro": base, "aupr_macro_novel": 0.30},
        },
        "calibrated_threshold": 0.5,
    }


def test_aggregate_mean_std_and_nulls():
    cells = aggregate([_metrics(0.50, 0.40, 0.36), _metrics(0.52, 0.41, None), _metrics(0.54, 0.39, 0.40)])
    c = cells["open_synonyms"]["ours"]["aupr_macro"]
    assert c["mean"] == pytest.approx(0.52) and c["std"] == pytest.approx(0.02) and c["n"] == 3  # ddof=1
    novel = cells["open_synonyms"]["ours"]["aupr_macro_novel"]
    assert novel["n"] == 2 and novel["mean"] == pytest.approx(0.38)  # the null seed is left out
    assert "calibrated_threshold" not in cells


def test_verdict_holds_and_does_not_hold():
    # margin 0.10, pooled std sqrt((0.02² + 0.02²)/2) = 0.02 -> 0.10 > 0.04: holds
    assert verdict({"mean": 0.5, "std": 0.02}, {"mean": 0.4, "std": 0.02}) == (
        pytest.approx(0.1),
        pytest.approx(0.02),
        True,
    )
    # same margin, spread 0.08 and 0.04 -> pooled sqrt(0.004) = 0.0632; 0.10 < 0.126: does not hold
    m, s, holds = verdict({"mean": 0.5, "std": 0.08}, {"mean": 0.4, "std": 0.04})
    assert s == pytest.approx(math.sqrt(0.004)) and not holds
    assert verdict({"mean": 0.4, "std": 0.0}, {"mean": 0.5, "std": 0.0})[2] is False  # negative margin never holds


def test_evaluate_claims_rows_skips_and_markdown():
    cells = aggregate([_metrics(0.50, 0.40, 0.45), _metrics(0.52, 0.41, 0.47), _metrics(0.54, 0.39, 0.46)])
    claims = [
        Claim("all labels", "open_synonyms", "aupr_macro", "ours", "coop"),  # 0.52 vs 0.40, std ~0.014: holds
        Claim("novel", "open_synonyms", "aupr_macro_novel", "coop", "ours"),  # 0.30 vs 0.46: does not hold
        Claim("missing", "open_temporal", "aupr_macro", "ours", "ours_no_temporal"),
    ]
    rows, skipped = evaluate_claims(cells, claims)
    assert [r["holds"] for r in rows] == [True, False]
    assert set(rows[0]) == {"claim", "split", "metric", "method", "baseline", "margin", "std", "holds", "n_seeds"}
    assert rows[0]["margin"] == pytest.approx(0.12) and rows[0]["n_seeds"] == 3
    assert skipped == [{"claim": "missing", "reason": "no aupr_macro of ours, ours_no_temporal on open_temporal"}]
    md = claims_markdown(rows, cells, skipped).splitlines()
    assert md[0].startswith("| Claim | Split | Metric |") and len(md) == 2 + 3
    assert md[2].endswith("| yes |") and md[3].endswith("| no |") and "not tested" in md[4]
    assert "ours 52.0 ± 2.0" in md[2] and "+12.0" in md[2]


def test_paper_claims_name_the_splits_built_for_them():
    splits = {c.split for c in PAPER_CLAIMS}
    assert {"open_synonyms", "open_temporal", "open_actions_related", "open_actions", "open_entities", "val"} <= splits
    assert any(
        c.method == "ours" and c.baseline == "ours_no_temporal" and c.split == "open_temporal" for c in PAPER_CLAIMS
    )


def test_ratio_of_novel_to_known_per_seed():
    m = {
        "open_synonyms": {
            "ours": {"aupr_macro_novel": 0.3, "aupr_macro_known": 0.6},
            "coop": {"aupr_macro_novel": 0.2, "aupr_macro_known": None},
        },
        "calibrated_threshold": 0.5,
    }
    r = with_ratio(m)
    assert r["open_synonyms"]["ours"]["aupr_ratio_novel_known"] == pytest.approx(0.5)
    assert (
        "aupr_ratio_novel_known" not in r["open_synonyms"]["coop"]
        and "aupr_ratio_novel_known" not in m["open_synonyms"]["ours"]
    )
    cells = aggregate(
        [
            with_ratio(m),
            with_ratio({**m, "open_synonyms": {"ours": {"aupr_macro_novel": 0.4, "aupr_macro_known": 0.5}}}),
        ]
    )
    assert cells["open_synonyms"]["ours"]["aupr_ratio_novel_known"]["mean"] == pytest.approx(
        (0.5 + 0.8) / 2
    )  # mean of per-seed ratios
