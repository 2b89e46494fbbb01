"""Typed config: params.yaml <-> dataclasses, overrides, clear errors; CLI plumbing."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from ovc.cli import app
from ovc.config import Config, ConfigError, load_config


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_params_yaml_covers_every_config_field(repo_root):
    """params.yaml holds every knob (DVC tracks it), and nothing the typed config does not know."""
    on_disk = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert _keys(on_disk) == _keys(Config().to_dict())


def test_params_yaml_every_field_commented(repo_root):
    lines = [ln for ln in (repo_root / "params.yaml").read_text().splitlines() if ln.startswith("  ") and ":" in ln]
    uncommented = [ln for ln in lines if "#" not in ln]
    assert not uncommented, f"params.yaml fields without a comment: {uncommented}"


def test_load_config_defaults_and_overrides(repo_root):
    cfg = load_config(repo_root / "params.yaml", ["world.seed=7", "clean.drop_verticals=[Games, Toys]", "loss.tau=0.5"])
    assert cfg.world.seed == 7
    assert cfg.clean.drop_verticals == ["Games", "Toys"]
    assert cfg.loss.tau == 0.5
    # untouched values come from the file / defaults
    assert cfg.world.size == Config().world.size


def test_override_unknown_key_names_it(repo_root):
    with pytest.raises(ConfigError, match=r"world.*unknown key.*'sede'"):
        load_config(repo_root / "params.yaml", ["world.sede=1"])


def test_override_wrong_type_names_it(repo_root):
    with pytest.raises(ConfigError, match=r"world\.n_train: expected an integer"):
        load_config(repo_root / "params.yaml", ["world.n_train=many"])


def test_int_accepted_for_float_but_not_bool_for_int(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("loss:\n  tau: 1\nworld:\n  seed: true\n")
    with pytest.raises(ConfigError, match="world.seed"):
        load_config(p)
    p.write_text("loss:\n  tau: 1\n")
    assert load_config(p).loss.tau == 1.0


def test_missing_explicit_params_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_dump_params_roundtrips(tmp_path):
    from ovc.config import dump_params

    cfg = Config()
    cfg.world.seed = 11
    cfg.llm.backend = "seq2seq"
    p = tmp_path / "params.yaml"
    p.write_text(dump_params(cfg))
    assert load_config(p) == cfg


def test_cli_params_and_lists(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    runner = CliRunner()
    res = runner.invoke(app, ["params", "-S", "world.seed=3"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.output)["world"]["seed"] == 3

    res = runner.invoke(app, ["stage", "--list"])
    assert res.exit_code == 0 and "ingest" in res.output and "clean" in res.output

    res = runner.invoke(app, ["bench", "--list"])
    assert res.exit_code == 0 and "synthworld" in res.output

    res = runner.invoke(app, ["stage", "no_such_stage"])
    assert res.exit_code == 2

    res = runner.invoke(app, ["params", "-S", "world.bogus=1"])
    assert res.exit_code == 2


def test_bench_unknown_name_exits_2():
    res = CliRunner().invoke(app, ["bench", "nope"])
    assert res.exit_code == 2


def test_machine_info_has_cores_and_threads():
    from ovc.bench import machine_info

    info = machine_info()
    assert info["cpu_count"] >= 1 and info["torch_threads"] >= 1
    json.dumps(info)
