"""`ovc bench paper_claims --quick`: the whole machinery (shared project, seeds, aggregation, claims, markdown)."""

import math

import pytest

from tests.helpers import REPO_ROOT


def test_full_bench_adds_ours_no_reg_to_params_method_lists(tmp_path):
    """The full bench trains and evaluates params.yaml's methods plus ours_no_reg (§3.2's claims need it;
    the default pipeline does not train it); the quick one stays CoOp*-only."""
    from ovc.bench.paper_claims import CLAIMS_EPOCHS, QUICK_EVAL, QUICK_METHODS, bench_overrides
    from ovc.config import load_config

    params = REPO_ROOT / "params.yaml"
    base = load_config(params)
    assert "ours_no_reg" not in base.train.methods and "ours_no_reg" not in base.evaluate.methods
    cfg = load_config(params, bench_overrides(base, tmp_path / "data", quick=False))
    assert cfg.train.methods == [*base.train.methods, "ours_no_reg"]
    assert cfg.evaluate.methods == [*base.evaluate.methods, "ours_no_reg"]
    assert cfg.paths.data == str(tmp_path / "data")
    # the claims profile trains full epochs, longer than the default run, with a val curve
    assert (cfg.train.epochs, cfg.train.max_steps_per_epoch) == (CLAIMS_EPOCHS, 0)
    assert cfg.train.epochs > base.train.epochs and cfg.train.eval_every > 0
    quick = load_config(params, bench_overrides(base, tmp_path / "data", quick=True))
    assert (quick.train.methods, quick.evaluate.methods) == (list(QUICK_METHODS), list(QUICK_EVAL))
    again = load_config(params, bench_overrides(cfg, tmp_path / "data", quick=False))  # already listed: not twice
    assert again.train.methods.count("ours_no_reg") == again.evaluate.methods.count("ours_no_reg") == 1


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
