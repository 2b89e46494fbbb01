"""`ovc bench paper_claims --quick`: the whole machinery (shared project, seeds, aggregation, claims, markdown)."""

import math

import pytest

from tests.helpers import REPO_ROOT


def test_full_bench_trains_what_the_claims_compare_with_the_claims_profile(tmp_path):
    """The full bench trains and evaluates exactly the methods the claims name (ours_no_reg included:
    §3.2's claims need it, the default pipeline does not train it), longer than the default run;
    the quick one stays CoOp*-only."""
    from ovc.bench.paper_claims import CLAIMS_EPOCHS, QUICK_EVAL, QUICK_METHODS, bench_overrides, claim_methods
    from ovc.config import load_config
    from ovc.evaluate.claims import PAPER_CLAIMS, Claim

    params = REPO_ROOT / "params.yaml"
    base = load_config(params)
    assert "ours_no_reg" not in base.train.methods and "ours_no_reg" not in base.evaluate.methods
    cfg = load_config(params, bench_overrides(base, tmp_path / "data", quick=False))
    named = {m for c in PAPER_CLAIMS for m in (c.method, c.baseline)}
    assert set(cfg.evaluate.methods) == named and "ours_no_reg" in cfg.train.methods
    assert set(cfg.train.methods) == {m for m in named if not m.endswith("_step0") and not m.startswith("clip_")}
    assert "dualcoop" not in cfg.train.methods  # no claim compares it: the budget goes to longer training
    assert cfg.evaluate.main_method == base.evaluate.main_method
    assert cfg.paths.data == str(tmp_path / "data")
    # the claims profile trains full epochs, longer than the default run, with a val curve
    assert (cfg.train.epochs, cfg.train.max_steps_per_epoch) == (CLAIMS_EPOCHS, 0)
    assert cfg.train.epochs * 25 > base.train.epochs * base.train.max_steps_per_epoch and cfg.train.eval_every > 0
    quick = load_config(params, bench_overrides(base, tmp_path / "data", quick=True))
    assert (quick.train.methods, quick.evaluate.methods) == (list(QUICK_METHODS), list(QUICK_EVAL))
    train, evaluate = claim_methods([Claim("c", "val", "aupr_macro", "coop", "coop_step0")])
    assert (train, sorted(evaluate)) == (["coop"], ["coop", "coop_step0"])
    with pytest.raises(ValueError, match="nope"):
        claim_methods([Claim("c", "val", "aupr_macro", "nope", "coop")])


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
    for split in ("open_entities", "open_actions"):  # §4.5's calibrated-to-oracle ratio, per seed
        assert cells[split]["coop"]["f1_calibrated_over_peak"]["n"] == 3
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
        assert (tmp_path / "seeds" / str(seed) / "train_curve_coop.csv").exists()
    curve = out["curves"]["coop"]  # each seed's val curve: where it ended and whether it flattened
    assert curve["steps"]["n"] == 3 and curve["steps"]["mean"] > 0
    assert curve["final_val_aupr_macro"]["n"] == 3 and 0 <= curve["final_val_aupr_macro"]["mean"] <= 1
    assert curve["curve_last_quarter_change"]["n"] == 3
