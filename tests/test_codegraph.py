"""The import graph of ovc/ (ovc.codegraph): layers point down, no cycles, DVC code deps derived.

The tests on the real tree are the guards; the ones on a small package made here show that each
kind of regression (an upward import, a cycle, a stage that imports a module dvc.yaml misses)
is caught, so the guards cannot pass vacuously.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ovc import codegraph
from ovc.codegraph import closure, code_deps, deps_drift, import_graph, layer_violations, write_dvc_deps


def _package(root: Path, files: dict[str, str]) -> Path:
    """Write a throwaway package named ``ovc`` under ``root`` (module path -> source)."""
    pkg = root / "ovc"
    for rel, src in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))
    for d in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return pkg


# --- the real tree ------------------------------------------------------------------------------


def test_layers_point_down_and_no_cycles():
    problems = layer_violations(import_graph())
    assert problems == [], "\n".join(problems)


def test_dvc_yaml_code_deps_are_what_each_stage_imports():
    problems = deps_drift()
    assert problems == [], "\n".join(problems) + "\nfix: python -m ovc.codegraph --write"


def test_every_module_sits_in_a_layer():
    for module in import_graph():
        codegraph.layer_of(module)  # raises naming the module otherwise


# --- the checks catch regressions ----------------------------------------------------------------


def test_upward_import_is_reported_with_file_line(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "data/video.py": "import os\n\ndef read():\n    from ovc.train.loop import run  # upward, inside a function\n",
            "train/loop.py": "from ovc.data.video import read\n\ndef run():\n    pass\n",
        },
    )
    problems = layer_violations(import_graph(pkg))
    assert any("upward import: ovc.data.video" in p and "ovc.train.loop" in p and "line 4" in p for p in problems), (
        problems
    )


def test_cycle_between_subpackages_and_between_modules_is_reported(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "registry/store.py": "from ovc.infer import classifier\n",
            "infer/classifier.py": "from ovc.registry.store import x\n",
            "train/a.py": "from ovc.train import b\n",
            "train/b.py": "import ovc.train.a\n",
        },
    )
    problems = layer_violations(import_graph(pkg))
    assert any(
        p.startswith("import cycle:") and "ovc.registry.store" in p and "ovc.infer.classifier" in p for p in problems
    ), problems
    assert any(p.startswith("module import cycle:") and "ovc.train.a" in p and "ovc.train.b" in p for p in problems), (
        problems
    )


def test_type_checking_imports_and_names_in_tables_are_not_layer_edges(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "data/video.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ovc.train.loop import run
                TABLE = {"x": "ovc.train.loop:run"}
            """,
            "train/loop.py": "def run():\n    pass\n",
        },
    )
    assert layer_violations(import_graph(pkg)) == []


def test_closure_follows_function_imports_and_dispatch_tables_but_not_lazy_reexports(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "def __getattr__(name):\n    import ovc.infer.api\n",
            "data/ingest.py": 'ADAPTERS = {"k": "ovc.data.kinetics:read"}\n\ndef ingest():\n    from ovc.data import video\n',
            "data/kinetics.py": "from .video import read\n",
            "data/video.py": "def read():\n    pass\n",
            "data/unused.py": "",
            "infer/api.py": "",
        },
    )
    graph = import_graph(pkg)
    got = closure(["ovc.data.ingest"], graph)
    assert {"ovc.data.ingest", "ovc.data.video", "ovc.data.kinetics", "ovc.data", "ovc"} <= got
    assert "ovc.data.unused" not in got and "ovc.infer.api" not in got
    deps = code_deps("ovc.data.ingest", graph, pkg)
    assert "ovc/data/video.py" in deps and "ovc/data/unused.py" not in deps


def test_drift_is_reported_both_ways_and_write_fixes_it(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "pipeline.py": 'STAGES = {"clean": "ovc.data.clean:clean"}\n',
            "data/clean.py": "from ovc.data.schemas import S\n",
            "data/schemas.py": "S = 1\n",
            "data/other.py": "",
        },
    )
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(
        "stages:\n  clean:\n    cmd: ovc stage clean  # keep me\n    deps:\n      - ovc/data/clean.py\n"
        "      - ovc/data/other.py\n      - data/raw\n    outs:\n      - data/clean\n"
    )
    stages = {"clean": "ovc.data.clean"}
    problems = deps_drift(dvc_yaml, pkg, stages)
    assert any("misses code it runs" in p and "ovc/data/schemas.py" in p for p in problems), problems
    assert any("does not import" in p and "ovc/data/other.py" in p for p in problems), problems
    assert write_dvc_deps(dvc_yaml, pkg, stages) is True
    assert deps_drift(dvc_yaml, pkg, stages) == []
    text = dvc_yaml.read_text()
    assert "# keep me" in text and "- data/raw" in text and "ovc/data/schemas.py" in text
    assert write_dvc_deps(dvc_yaml, pkg, stages) is False  # idempotent


@pytest.mark.parametrize("module", ["ovc.nowhere", "ovc_other.x"])
def test_module_outside_the_layers_is_an_error_naming_it(module):
    with pytest.raises(KeyError, match=module.replace(".", r"\.")):
        codegraph.layer_of(module)
