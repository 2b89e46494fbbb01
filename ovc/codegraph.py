"""The package's import graph, read from source (``ast``; nothing is imported or run).

One graph serves two checks that used to be kept by hand:

* **Layers point down.** :data:`LAYERS` orders the subpackages; a module may import only modules
  of its own layer or of lower ones, and no two subpackages import each other (directly or
  through others). ``tests/test_layers.py`` walks every module of ``ovc/``.
* **DVC deps cannot drift.** A stage's code deps are the files its stage module imports,
  transitively. ``python -m ovc.codegraph --write`` rewrites the ``ovc/`` entries of each stage's
  ``deps`` in ``dvc.yaml`` (data deps are kept); ``--check`` (and a test) fail when they differ.

What counts as an import: ``import``/``from ... import`` anywhere in a module (function-level
imports run too, only later), relative imports, and string constants naming a module in the
``"ovc.pkg.module"`` / ``"ovc.pkg.module:function"`` form — the dispatch tables of stages,
adapters and benchmarks import by name. Imports under ``if TYPE_CHECKING:`` never run and are
skipped. Importing ``ovc.a.b`` also runs ``ovc/__init__.py`` and ``ovc/a/__init__.py``: the DVC
closure follows those, the layer check (which is about what a module asks for) does not.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ovc"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

# Lowest first. A module may import modules of its own layer or of a lower one. The trainer sits
# above everything a published model needs (registry, infer), so the library that serves a model
# never imports its trainer (open_clip keeps `open_clip_train` apart the same way).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ovc.errors", "ovc.fileio", "ovc.config", "ovc.paths"),  # foundation
    ("ovc.data",),  # manifests, schemas, video reading, synthetic world, adapters
    ("ovc.models",),  # CLIP, LLM backends, encoders, methods and their weights
    ("ovc.evaluate",),  # metrics, calibration, plots, tables (pure numpy)
    ("ovc.registry",),  # SQL registry of model versions, vocabularies, embeddings
    ("ovc.infer",),  # classify with a published model
    ("ovc.train", "ovc.synth"),  # training loop, bootstrap CLIP, synthetic labels
    ("ovc.stages", "ovc.pipeline"),  # one thin I/O module per DVC stage
    ("ovc.serve", "ovc.bench", "ovc.cli", "ovc.codegraph"),  # entry points and dev tools
    ("ovc",),  # the package root: its lazy public API may reach anything
)

# Files that are loaded by path (Alembic) rather than imported: not part of the import graph.
_SKIP_PARTS = ("migrations",)
_DOTTED = re.compile(r"^(ovc(?:\.[A-Za-z_]\w*)+)(?::[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class Edge:
    """``src`` imports ``dst`` at ``line`` of ``src``'s file.

    ``eager``: the import runs when ``src`` is imported (module level), not later inside a
    function. ``by_name``: a string naming the module (a dispatch table), not an import statement.
    """

    src: str
    dst: str
    line: int
    eager: bool = True
    by_name: bool = False


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Module name -> source file for every module of the package (packages -> ``__init__.py``)."""
    out: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        if any(part in _SKIP_PARTS for part in rel.parts) or "__pycache__" in rel.parts:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` names or lies in (``ovc.a.b.func`` -> ``ovc.a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _runtime_nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """(node, eager) for every node except those under ``if TYPE_CHECKING:`` (they never run);
    ``eager`` is False inside a function body (it runs when called, not on import)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, True)]
    while stack:
        node, eager = stack.pop()
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                stack.extend((n, eager) for n in node.orelse)
                continue
        yield node, eager
        inner = eager and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """The package-internal imports of one module (see the module docstring for what counts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Edge] = []

    def add(name: str, line: int, eager: bool, by_name: bool = False) -> None:
        target = name if by_name else _resolve(name, modules)
        if target is not None and target != module:
            found.append(Edge(module, target, line, eager, by_name))

    for node, eager in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name, node.lineno, eager)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in modules else base, node.lineno, eager)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _DOTTED.match(node.value)
            if m and m.group(1) in modules:  # exact names only: prose in docstrings names no module
                add(m.group(1), node.lineno, False, by_name=True)
    return sorted(set(found), key=lambda e: (e.dst, e.line))


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, list[Edge]]:
    """Module -> its package-internal imports, for every module of the package."""
    modules = module_files(package_dir)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _parents(module: str) -> Iterator[str]:
    """The packages whose ``__init__`` runs when ``module`` is imported (``ovc.a.b`` -> ovc, ovc.a)."""
    parts = module.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def closure(roots: Iterable[str], graph: dict[str, list[Edge]]) -> set[str]:
    """Every module that running ``roots`` can execute.

    A module that is used contributes all its imports (module level, in functions, by name). A
    package that only runs because a module inside it is imported contributes its ``__init__``
    and what that imports at module level (a lazy ``__getattr__`` re-export is not followed).
    """
    used: set[str] = set()
    inits: set[str] = set()
    todo: list[tuple[str, bool]] = [(r, True) for r in roots]
    while todo:
        mod, full = todo.pop()
        if mod not in graph or mod in used or (not full and mod in inits):
            continue
        (used if full else inits).add(mod)
        todo.extend((e.dst, True) for e in graph[mod] if full or e.eager)
        todo.extend((p, False) for p in _parents(mod))
    return used | inits


# --- layers -----------------------------------------------------------------------------------


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the unit it belongs to) by the longest matching entry of :data:`LAYERS`."""
    best: tuple[int, str] | None = None
    for index, units in enumerate(LAYERS):
        for unit in units:
            inside = module == unit or (unit != PACKAGE and module.startswith(unit + "."))  # the root holds only itself
            if inside and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    if best is None:
        raise KeyError(f"{module} is in no layer of ovc.codegraph.LAYERS: add its subpackage there")
    return best


def layer_violations(graph: dict[str, list[Edge]]) -> list[str]:
    """Imports that point up a layer, and cycles between units (subpackages); empty when clean."""
    problems: list[str] = []
    unit_edges: dict[str, dict[str, Edge]] = {}
    for module, edges in graph.items():
        src_layer, src_unit = layer_of(module)
        for e in edges:
            if e.by_name:  # a name in a table is data until something imports it
                continue
            dst_layer, dst_unit = layer_of(e.dst)
            if dst_layer > src_layer:
                problems.append(
                    f"upward import: {e.src} (layer {src_layer}, {src_unit}) imports {e.dst} "
                    f"(layer {dst_layer}, {dst_unit}) at line {e.line}"
                )
            if dst_unit != src_unit:
                unit_edges.setdefault(src_unit, {}).setdefault(dst_unit, e)
    for cycle in _cycles({u: set(d) for u, d in unit_edges.items()}):
        hops = [unit_edges[a][b] for a, b in zip(cycle, cycle[1:] + cycle[:1])]
        problems.append("import cycle: " + " -> ".join(f"{h.src}:{h.line} -> {h.dst}" for h in hops))
    module_edges = {m: {e.dst for e in edges if not e.by_name} for m, edges in graph.items()}
    for cycle in _cycles(module_edges):
        if len({layer_of(m)[1] for m in cycle}) == 1:  # across units it is reported above
            problems.append("module import cycle: " + " -> ".join(cycle + cycle[:1]))
    return problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_one_cycle(sorted(c), edges) for c in components]


def _one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A concrete cycle inside a strongly connected component, starting at its first node."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(edges.get(path[-1], set()) & members)
        if start in nxt and len(path) > 1:
            return path
        step = next((n for n in nxt if n not in seen), None)
        if step is None:  # every successor seen: close the loop at the earliest one
            back = next(n for n in nxt)
            return path[path.index(back) :]
        path.append(step)
        seen.add(step)


# --- DVC deps ---------------------------------------------------------------------------------


def stage_modules() -> dict[str, str]:
    """DVC stage name -> the module of its stage function (from :data:`ovc.pipeline.STAGES`)."""
    from ovc.pipeline import STAGES

    return {name: target.split(":")[0] for name, target in STAGES.items()}


def code_deps(module: str, graph: dict[str, list[Edge]] | None = None, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Repo-relative source files that running ``module`` can execute, sorted.

    A whole subpackage collapses to its directory when every one of its modules is needed (a
    shorter dvc.yaml; DVC ignores ``__pycache__`` per ``.dvcignore``).
    """
    graph = graph if graph is not None else import_graph(package_dir)
    modules = module_files(package_dir)
    needed = closure([module], graph)
    repo = package_dir.parent

    def rel(p: Path) -> str:
        return p.relative_to(repo).as_posix()

    collapsed: set[str] = set()
    # deepest packages first, so a parent can absorb already-collapsed children
    packages = sorted(
        (m for m, p in modules.items() if p.name == "__init__.py" and m != PACKAGE), key=lambda m: -m.count(".")
    )
    for pkg in packages:
        members = [m for m in modules if m == pkg or m.startswith(pkg + ".")]
        if all(m in needed for m in members):
            collapsed.add(pkg)
    out: set[str] = set()
    for m in needed:
        top = next((p for p in sorted(collapsed, key=len) if m == p or m.startswith(p + ".")), None)
        out.add(rel(modules[top].parent) if top else rel(modules[m]))
    return sorted(out)


def _is_code_dep(dep: str) -> bool:
    return dep == PACKAGE or dep.startswith(PACKAGE + "/")


def dvc_code_deps(dvc_yaml: Path = REPO_DIR / "dvc.yaml") -> dict[str, list[str]]:
    """Stage -> the ``ovc/`` entries of its ``deps`` as written in ``dvc.yaml``."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: sorted(d for d in (spec.get("deps") or []) if _is_code_dep(str(d))) for name, spec in stages.items()}


def expected_code_deps(package_dir: Path = PACKAGE_DIR, stages: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Stage -> the ``ovc/`` deps its stage module's imports call for.

    Args:
        package_dir: the package to read (the installed ``ovc/`` by default).
        stages: stage name -> stage module (default: :func:`stage_modules`).
    """
    graph = import_graph(package_dir)
    stages = stage_modules() if stages is None else stages
    return {stage: code_deps(module, graph, package_dir) for stage, module in stages.items()}


def deps_drift(
    dvc_yaml: Path = REPO_DIR / "dvc.yaml", package_dir: Path = PACKAGE_DIR, stages: dict[str, str] | None = None
) -> list[str]:
    """Differences between dvc.yaml's code deps and the derived ones; empty when in step."""
    written, expected = dvc_code_deps(dvc_yaml), expected_code_deps(package_dir, stages)
    problems = []
    for stage in sorted(set(written) | set(expected)):
        if stage not in expected:
            problems.append(f"dvc.yaml stage {stage!r} is not in ovc.pipeline.STAGES")
            continue
        if stage not in written:
            problems.append(f"stage {stage!r} of ovc.pipeline.STAGES is missing from dvc.yaml")
            continue
        missing = sorted(set(expected[stage]) - set(written[stage]))
        extra = sorted(set(written[stage]) - set(expected[stage]))
        if missing:
            problems.append(f"stage {stage!r}: dvc.yaml misses code it runs: {', '.join(missing)}")
        if extra:
            problems.append(f"stage {stage!r}: dvc.yaml lists code it does not import: {', '.join(extra)}")
    return problems


def write_dvc_deps(
    dvc_yaml: Path = REPO_DIR / "dvc.yaml", package_dir: Path = PACKAGE_DIR, stages: dict[str, str] | None = None
) -> bool:
    """Rewrite each stage's ``ovc/`` deps in place (comments and data deps kept); True if changed."""
    from ruamel.yaml import YAML

    from ovc.fileio import atomic_write_bytes

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    text = dvc_yaml.read_text()
    doc = yaml.load(text)
    expected = expected_code_deps(package_dir, stages)
    for stage, spec in doc["stages"].items():
        if stage not in expected:
            continue
        deps = spec.get("deps")
        if deps is None:
            spec["deps"] = deps = []
        data_deps = [d for d in deps if not _is_code_dep(str(d))]
        new = list(expected[stage]) + data_deps
        if [str(d) for d in deps] != [str(d) for d in new]:
            deps[:] = new  # in place: ruamel keeps the list's comments and style
    buf = io.StringIO()
    yaml.dump(doc, buf)
    if buf.getvalue() == text:
        return False
    atomic_write_bytes(dvc_yaml, buf.getvalue().encode("utf-8"))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovc.codegraph", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail (exit 1) when dvc.yaml's code deps or the layers are off"
    )
    parser.add_argument("--write", action="store_true", help="rewrite the ovc/ deps of every stage in dvc.yaml")
    args = parser.parse_args(argv)
    if args.write:
        changed = write_dvc_deps()
        print("dvc.yaml: code deps rewritten" if changed else "dvc.yaml: code deps already in step")
    problems = deps_drift() + layer_violations(import_graph())
    for p in problems:
        print(p, file=sys.stderr)
    if args.check and problems:
        return 1
    if not problems:
        print("layers and dvc.yaml code deps: in step")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
