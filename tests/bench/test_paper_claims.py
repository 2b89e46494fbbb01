"""`ovc bench paper_claims --quick`: the whole machinery (shared project, seeds, aggregation, claims, markdown)."""

import math

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_paper_claims_quick_table_shape(tmp_path, monkeypatch):
    from ovc.bench.paper_claims import QUICK_EVAL, bench_paper_claims
    from ovc.evaluate.claims import PAPER_CLAIMS

    monkeypatch.setenv("OVC_PARAMS", str(REPO_ROOT / "params.yaml"))
    out = bench_paper_claims(quick=True, seeds=(0, 1, 2), out_dir=tmp_path)
    assert out["seeds"] == [0, 1, 2]
    cells = out["cells"]
    for split in ("val", "open_synonyms", "open_temporal", "open_actions_related"):
        assert set(cells[split]) == set(QUICK_EVAL)
    syn = cells["open_synonyms"]["coop"]
    assert (
        syn["aupr_macro_novel"]["n"] == 3
        and syn["aupr_macro_known"]["n"] == 3
        and syn["aupr_ratio_novel_known"]["n"] == 3
    )
    assert cells["val"]["coop"]["aupr_macro_novel"]["n"] == 0  # val has no novel label
    trained = cells["val"]["coop"]["aupr_macro"]
    assert trained["n"] == 3 and trained["std"] >= 0
    assert cells["val"]["coop_step0"]["aupr_macro"]["std"] == pytest.approx(
        0.0, abs=1e-12
    )  # untrained: same for every seed
    # every claim is either judged or skipped with a reason; only the CoOp* one can be judged here
    assert len(out["claims"]) + len(out["claims_skipped"]) == len(PAPER_CLAIMS)
    (row,) = out["claims"]
    assert set(row) == {"claim", "split", "metric", "method", "baseline", "margin", "std", "holds", "n_seeds"}
    assert (row["method"], row["baseline"], row["n_seeds"]) == ("coop", "coop_step0", 3)
    assert (
        isinstance(row["holds"], bool)
        and math.isfinite(row["margin"])
        and row["holds"] == (row["margin"] > 2 * row["std"])
    )
    md = (tmp_path / "claims.md").read_text().splitlines()
    table = [line for line in md if line.startswith("|")]
    assert len(table) == 2 + len(PAPER_CLAIMS)
    for seed in (0, 1, 2):
        assert (tmp_path / "seeds" / str(seed) / "metrics.json").exists()
