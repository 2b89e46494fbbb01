"""Which model serves: aliases, the promotion gate, promote/rollback by hand (migration 0002)."""

from __future__ import annotations

import json

import pytest

from ovc.registry import aliases, make_engine, publish_model_version, upgrade


def _publish(engine, name: str, aupr: float | None) -> None:
    metrics = {"val": {"ours": {"aupr_micro": aupr}}} if aupr is not None else {}
    publish_model_version(
        engine, name, "a" * 64, encoder_digest="b" * 64, embed_dim=4, params={"method": "ours"}, metrics=metrics
    )


@pytest.fixture()
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    e = make_engine(url)
    yield e
    e.dispose()


def test_gate_promotes_only_when_the_candidate_beats_production_by_the_margin(engine):
    with pytest.raises(Exception, match="no model version"):
        aliases.resolve_version(engine)
    _publish(engine, "v1", 0.50)
    _publish(engine, "v2", 0.60)
    _publish(engine, "v3", None)
    assert aliases.resolve_version(engine) == "v3"  # no production yet: the latest published

    first = aliases.gate(engine, "v1", margin=0.2)
    assert first.promoted and first.reason == "no production version yet"
    assert aliases.resolve_version(engine) == "v1" and aliases.resolve_version(engine, "latest") == "v3"

    rejected = aliases.gate(engine, "v2", margin=0.2)  # 0.60 < 0.50 + 0.2
    assert not rejected.promoted and (rejected.candidate_value, rejected.production_value) == (0.6, 0.5)
    assert aliases.list_aliases(engine) == {"candidate": "v2", "production": "v1"}

    promoted = aliases.gate(engine, "v2", margin=0.05)
    assert promoted.promoted and aliases.resolve_version(engine, "production") == "v2"
    assert not aliases.gate(engine, "v3").promoted  # no metric: never promoted
    assert aliases.resolve_version(engine, "candidate") == "v3"

    hist = [h for h in aliases.history(engine) if h["alias"] == "production"]
    assert [(h["action"], h["from"], h["to"]) for h in hist] == [
        ("promote", None, "v1"),
        ("rejected", "v1", "v2"),
        ("promote", "v1", "v2"),
        ("rejected", "v2", "v3"),
    ]
    assert hist[2]["from_figures"]["value"] == 0.5 and hist[2]["to_figures"]["value"] == 0.6
    assert hist[2]["to_figures"]["metric"] == "val.ours.aupr_micro"

    assert aliases.rollback(engine)["to"] == "v1"
    assert aliases.resolve_version(engine) == "v1"
    with pytest.raises(Exception, match="no earlier version"):
        aliases.rollback(engine)
    with pytest.raises(Exception, match="unknown model version"):
        aliases.promote(engine, "v9")


def test_pin_version_resolves_once_and_is_none_before_any_publish(engine):
    """`ovc vocab add` and the vocab-refresh flow pin their version through this one function."""
    assert aliases.pin_version(engine, "latest") is None and aliases.pin_version(engine) is None  # nothing published
    with pytest.raises(Exception, match="candidate"):
        aliases.pin_version(engine, "candidate")
    _publish(engine, "v1", 0.5)
    _publish(engine, "v2", 0.4)
    assert aliases.pin_version(engine) == "v2"  # no production alias: the latest
    aliases.promote(engine, "v1")
    assert aliases.pin_version(engine, "production") == "v1" and aliases.pin_version(engine, "latest") == "v2"
    assert aliases.pin_version(engine, "v2") == "v2"
    with pytest.raises(Exception, match="v9"):
        aliases.pin_version(engine, "v9")  # an unknown name is named, not embedded with


def test_promote_and_rollback_cli(engine, tmp_path):
    from typer.testing import CliRunner

    from ovc.cli import app

    _publish(engine, "v1", 0.5)
    _publish(engine, "v2", 0.4)
    url = str(engine.url)
    run = CliRunner()
    assert run.invoke(app, ["registry", "promote", "v1", "--registry", url]).exit_code == 0
    aliases.set_alias(engine, "candidate", "v2")
    res = run.invoke(app, ["registry", "promote", "candidate", "--registry", url, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"alias": "production", "action": "promote", "from": "v1", "to": "v2"}
    back = run.invoke(app, ["registry", "rollback", "--registry", url])
    assert back.exit_code == 0 and "v2 -> v1" in back.stdout
    ls = json.loads(run.invoke(app, ["registry", "aliases", "--registry", url, "--json"]).stdout)
    assert ls["aliases"] == {"candidate": "v2", "production": "v1"} and len(ls["history"]) == 4
    bad = run.invoke(app, ["registry", "promote", "nope", "--registry", url])
    assert bad.exit_code == 2 and "unknown model version 'nope'" in bad.stderr


def test_gate_published_reads_the_publish_receipt(tmp_path, monkeypatch):
    """What the train-eval flow's promotion-gate task calls after `publish`."""
    from ovc.config import Config
    from ovc.paths import DataLayout
    from ovc.registry.db import ENV_URL, open_registry

    monkeypatch.delenv(ENV_URL, raising=False)
    cfg = Config()
    cfg.paths.data = str(tmp_path)
    cfg.promote.margin = 0.05
    assert "skipped" in aliases.gate_published(cfg)  # nothing published yet
    engine = open_registry(cfg)
    _publish(engine, "v1", 0.5)
    _publish(engine, "v2", 0.52)
    path = DataLayout.of(cfg).publish_receipt  # where `ovc stage publish` writes its receipt
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"model_version": "v1"}')
    assert aliases.gate_published(cfg)["promoted"] is True
    path.write_text('{"model_version": "v2"}')
    res = aliases.gate_published(cfg)
    assert res["promoted"] is False and "margin 0.05" in res["reason"]
    assert aliases.list_aliases(engine) == {"candidate": "v2", "production": "v1"}
    engine.dispose()


def test_vocab_add_embeds_with_production_by_default_and_takes_aliases(published, registry_copy):
    """`ovc vocab add` resolves --model-version like classify/predict/serve: default `production`."""
    from typer.testing import CliRunner

    from ovc.cli import app
    from ovc.registry.store import list_labels, load_embedding_matrix

    engine = make_engine(registry_copy)
    # v2: the latest, but its files do not exist — embedding with it would fail; production stays v1
    _publish(engine, "v2", 0.1)
    aliases.promote(engine, "v1")
    sets = [a for o in published.overrides for a in ("-S", o)]
    run = CliRunner()

    def add(*argv: str):
        return run.invoke(app, ["vocab", "add", "--vocab", "shop", "--registry", registry_copy, "--json", *sets, *argv])

    res = add("red car")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model_version"] == "v1" and json.loads(res.stdout)["encoded"] == 1

    bad = add("blue car", "--model-version", "candidate")
    assert bad.exit_code == 2 and "no 'candidate' alias is set" in bad.stderr
    assert [x.text for x in list_labels(engine, "shop")] == ["red car"]  # nothing added on the error

    aliases.set_alias(engine, "candidate", "v1")
    res = add("blue car", "--model-version", "candidate")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model_version"] == "v1"
    labels, _, _ = load_embedding_matrix(engine, "shop", "v1")
    assert sorted(labels) == ["blue car", "red car"]
    engine.dispose()
