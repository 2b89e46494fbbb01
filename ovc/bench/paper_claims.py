"""Benchmark ``paper_claims``: train and evaluate several seeds, then a verdict per claim of the paper.

    ovc bench paper_claims            # the claims profile, seeds 0 1 2, in data/bench/paper_claims/
    ovc bench paper_claims --quick    # tiny world and budget (QUICK_OVERRIDES), CoOp* only: CI's shape check

The full run trains and evaluates the methods the claims compare (:func:`claim_methods`;
``ours_no_reg``, the λ = 0 ablation of §3.2, included: kept out of the default pipeline, whose budget
it would not fit) with the claims profile (:data:`CLAIMS_PROFILE`: full epochs, a val curve).

One project (ingest -> clean -> bootstrap_clip -> attributes, once; the world and the bootstrapped CLIP are the
same for every seed, so the evaluation videos are paired), then per seed ``train`` and ``evaluate``
with ``train.seed`` = ``evaluate.seed`` = the seed (initialisation, batch order, negatives, frame
offsets, the weight-regularisation α). Each seed's ``metrics.json`` is kept under
``<out>/seeds/<seed>/``. Prints one JSON object: ``seeds``, ``cells`` (mean ± std over seeds of every
(split, method, metric), the novel-only metrics and the per-seed derived ratios included), ``claims``
(:mod:`ovc.evaluate.claims`: ``{claim, split, metric, method, baseline, margin, std, holds}``, holds =
margin > 2 × pooled std; the §4.5 calibration claims also carry their ``level``),
``claims_skipped`` and the path of the same table as markdown (``<out>/claims.md``).

Params come from ``params.yaml`` (or ``$OVC_PARAMS``) with ``paths.data`` pointed at the bench's own
directory, so the project's ``data/`` is never touched.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ovc.config import Config
    from ovc.evaluate.claims import Claim

DEFAULT_SEEDS = (0, 1, 2)
QUICK_METHODS = ("coop",)  # the cheapest trainable method: the quick run checks the machinery, not the paper
QUICK_EVAL = ("coop", "coop_step0", "clip_classname")
# The claims profile: training long enough to learn (the default run's 2 x 12 steps fit `make run`'s
# 15-minute budget, not convergence). Full epochs (25 steps per worker, global batch 32 on the 800 train
# clips), val AUPR every 10 steps so each seed's curve shows whether it flattened (`curves` in the JSON).
CLAIMS_EPOCHS = 2  # passes over the train split per method and seed (50 steps; the bench's 60-min budget, README)
CLAIMS_PROFILE = (f"train.epochs={CLAIMS_EPOCHS}", "train.max_steps_per_epoch=0", "train.eval_every=10")
# per method and seed, from the train stage's summary: did val AUPR flatten over the last quarter?
CURVE_KEYS = ("steps", "final_val_aupr_macro", "curve_last_quarter_change", "curve_last_quarter_range")


def claim_methods(claims: Sequence[Claim] | None = None) -> tuple[list[str], list[str]]:
    """(train, evaluate) method lists of the full bench: exactly the methods the claims compare.

    Evaluated: every method or baseline a claim names (``ours_no_reg``, the λ = 0 ablation of §3.2,
    included; methods no claim names, e.g. DualCoOp*, are left to `make run`'s table — the bench's
    budget goes to training longer). Trained: the trainable ones among them, in the registry's order.
    """
    from ovc.evaluate.claims import PAPER_CLAIMS
    from ovc.models.methods import METHODS

    named = {m for c in (PAPER_CLAIMS if claims is None else claims) for m in (c.method, c.baseline)}
    unknown = sorted(named - set(METHODS))
    if unknown:
        raise ValueError(f"paper_claims: claims name unknown methods {unknown}")
    evaluate = [m for m in METHODS if m in named]
    return [m for m in evaluate if METHODS[m].trainable], evaluate


def bench_overrides(base: Config, project: Path, quick: bool) -> list[str]:
    """The config overrides of the bench project (``paths.data`` = ``project``).

    Args:
        base: the params the bench starts from (params.yaml or ``$OVC_PARAMS``).
        project: the bench's own data directory.
        quick: QUICK_OVERRIDES and CoOp* only; otherwise the claims profile and the methods the claims
            compare (:func:`claim_methods`).
    """
    from ovc.config import QUICK_OVERRIDES

    overrides = [f"paths.data={project}"]
    if quick:
        return [
            *QUICK_OVERRIDES,
            *overrides,
            f"train.methods=[{','.join(QUICK_METHODS)}]",
            f"evaluate.methods=[{','.join(QUICK_EVAL)}]",
            "evaluate.main_method=coop",
        ]
    train, evaluate = claim_methods()
    main = base.evaluate.main_method if base.evaluate.main_method in evaluate else evaluate[0]
    return [
        *overrides,
        *CLAIMS_PROFILE,
        f"train.methods=[{','.join(train)}]",
        f"evaluate.methods=[{','.join(evaluate)}]",
        f"evaluate.main_method={main}",
    ]


def bench_paper_claims(
    quick: bool = False, seeds: tuple[int, ...] = DEFAULT_SEEDS, out_dir: str | Path | None = None
) -> dict[str, Any]:
    """Train + evaluate ``seeds`` and report mean ± std per cell and the claims' verdicts.

    Args:
        quick: tiny world, a few steps, CoOp* only (claims about other methods are listed as skipped).
        seeds: training seeds (>= 3 for a spread worth the name).
        out_dir: where the bench project and its outputs live (default ``<paths.data>/bench/paper_claims``,
            or ``paper_claims_quick`` with ``quick``).
    """
    from ovc.config import default_params_path, load_config
    from ovc.evaluate.claims import (
        aggregate,
        claims_markdown,
        evaluate_claims,
        with_derived,
    )
    from ovc.evaluate.report import load_metrics_json
    from ovc.fileio import atomic_write_bytes
    from ovc.paths import DataLayout
    from ovc.pipeline import run_stage

    t0 = time.time()
    if not seeds:
        raise ValueError("paper_claims: give at least one seed")
    base = load_config(default_params_path())
    out = (
        Path(out_dir)
        if out_dir
        else DataLayout.of(base).root / "bench" / ("paper_claims_quick" if quick else "paper_claims")
    )
    project = out / "data"
    overrides = bench_overrides(base, project, quick)
    cfg = load_config(default_params_path(), overrides)
    timings: dict[str, float] = {}
    shared = ["ingest", "clean", "bootstrap_clip"]
    if "clip_fixed_attributes" in cfg.evaluate.methods:  # the frozen CLIP + LLM baseline of §4.5's claim
        shared.append("attributes")
    for stage in shared:  # shared by every seed (skipped work is cheap: stages resume)
        s0 = time.time()
        run_stage(stage, cfg)
        timings[stage] = round(time.time() - s0, 1)
    per_seed: list[dict[str, Any]] = []
    per_seed_curves: list[dict[str, Any]] = []
    for seed in seeds:
        s0 = time.time()
        seed_cfg = load_config(default_params_path(), [*overrides, f"train.seed={seed}", f"evaluate.seed={seed}"])
        summary = run_stage("train", seed_cfg)["methods"]  # the stage's train_summary.json, as returned
        run_stage("evaluate", seed_cfg)
        layout = DataLayout.of(seed_cfg)
        keep = out / "seeds" / str(seed)
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.eval_metrics, keep / "metrics.json")
        shutil.copyfile(layout.train_summary, keep / "train_summary.json")
        for method in seed_cfg.train.methods:  # each seed's training curves (step, loss, val AUPR)
            if layout.train_curve(method).exists():
                shutil.copyfile(layout.train_curve(method), keep / layout.train_curve(method).name)
        per_seed_curves.append({"train_curve": {m: {k: summary[m].get(k) for k in CURVE_KEYS} for m in summary}})
        # + synonym-to-base and calibrated-to-oracle ratios, per seed before averaging
        per_seed.append(with_derived(load_metrics_json(keep / "metrics.json"), cfg.evaluate.calibration_average))
        timings[f"seed_{seed}"] = round(time.time() - s0, 1)
    cells = aggregate(per_seed)
    curves = aggregate(per_seed_curves).get("train_curve", {})  # {method: {key: mean ± std over seeds}}
    claims, skipped = evaluate_claims(cells)
    md_path = out / "claims.md"
    header = (
        f"Claims of the paper on the offline world, {len(seeds)} seeds ({', '.join(map(str, seeds))}); values ×100; "
        "holds = margin > 2 × pooled std. Regenerate: `ovc bench paper_claims" + (" --quick" if quick else "") + "`\n\n"
    )
    md_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(md_path, (header + claims_markdown(claims, cells, skipped)).encode())
    return {
        "seeds": list(seeds),
        "quick": quick,
        "cells": cells,
        "claims": claims,
        "claims_skipped": skipped,
        "claims_markdown": str(md_path),
        "curves": curves,
        "per_seed_metrics": [str(out / "seeds" / str(s) / "metrics.json") for s in seeds],
        "seconds": round(time.time() - t0, 1),
        "stage_seconds": timings,
        "params": json.loads(
            json.dumps({"train.methods": cfg.train.methods, "evaluate.methods": cfg.evaluate.methods})
        ),
    }
