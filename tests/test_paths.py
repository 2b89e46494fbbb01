"""dvc.yaml and the code agree on every path: outs and metrics of each stage = ovc.paths."""

from __future__ import annotations

from pathlib import Path

import yaml

from ovc.paths import DataLayout, stage_outputs
from ovc.pipeline import STAGES

REPO = Path(__file__).resolve().parents[1]


def _entries(items) -> list[str]:
    """dvc.yaml list entries are plain paths or {path: {options}}."""
    out = []
    for item in items or []:
        out.append(next(iter(item)) if isinstance(item, dict) else item)
    return sorted(out)


def test_dvc_yaml_outs_and_metrics_are_the_layout():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    expected = stage_outputs(DataLayout(Path("data")))
    assert list(stages) == list(STAGES) == list(expected)  # same stages, pipeline order
    for name, spec in stages.items():
        want = expected[name]
        assert _entries(spec.get("outs")) == sorted(p.as_posix() for p in want["outs"]), name
        assert _entries(spec.get("metrics")) == sorted(p.as_posix() for p in want["metrics"]), name


def test_layout_follows_the_configured_root(tmp_path):
    from ovc.config import load_config

    cfg = load_config(REPO / "params.yaml", [f"paths.data={tmp_path}"])
    layout = DataLayout.of(cfg)
    assert layout.clean_manifest == tmp_path / "clean" / "manifest.parquet"
    assert layout.run_dir("ours") == tmp_path / "models" / "trained" / "ours"
    every = [p for outs in stage_outputs(layout).values() for kind in outs.values() for p in kind]
    assert all(p.is_relative_to(tmp_path) for p in every)


def test_no_data_path_is_built_by_hand():
    """Code reaches data through ovc.paths (DataLayout / anchored): no ``<cfg>.paths.data`` elsewhere."""
    import ast

    allowed = {REPO / "ovc" / "paths.py", REPO / "ovc" / "config.py"}
    found = []
    for path in sorted([*(REPO / "ovc").rglob("*.py"), *(REPO / "flows").rglob("*.py")]):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "data"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "paths"
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == [], "build data paths with ovc.paths.DataLayout, not by hand: " + ", ".join(found)


def test_dvc_yaml_training_curve_plots_are_the_layout():
    """The train stage's plots in dvc.yaml's top-level ``plots`` are DataLayout's curve files of
    trainable methods, inside the train stage's output (so DVC finds them after `dvc repro`)."""
    from ovc.models.methods import TRAINABLE_METHODS

    layout = DataLayout(Path("data"))
    allowed = {layout.train_curve(m).as_posix() for m in TRAINABLE_METHODS}
    allowed |= {layout.train_curve_png(m).as_posix() for m in TRAINABLE_METHODS}
    files = []
    for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, str):
            files.append(entry)
        else:
            spec = next(iter(entry.values()))
            files += list(spec["y"]) if isinstance(spec.get("y"), dict) else []
    train_plots = [f for f in files if f.startswith(layout.trained.as_posix() + "/")]
    assert train_plots and set(train_plots) <= allowed, sorted(set(train_plots) - allowed)
    assert all(Path(f).is_relative_to(layout.train_plots) for f in train_plots)
    assert {layout.train_curve(m).as_posix() for m in ("ours", "coop")} <= set(train_plots)
