"""gouache's layering, checked on the source (docs/architecture.md explains it).

Every module under ``src/gouache`` is parsed with :mod:`ast`; an import counts wherever it is written
(at the top, inside a function, under ``TYPE_CHECKING``), relative imports are resolved, and
``importlib.resources.files("gouache.X")`` and ``import_module("gouache.X")`` count as importing X.
Nothing is imported: the checks read the files.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A unit may import only from units of strictly lower layers (and from itself).
# A unit is a subpackage of gouache, or a group of modules at the package root: "base" (layer 1)
# and the command line ("cli" with ``__main__``); "gouache" is the root API, src/gouache/__init__.py.
LAYERS: dict[str, int] = {
    "base": 1,
    "metadata": 2,
    "models": 3,
    "prompts": 4,
    "adapters": 5, "sampling": 5,
    "speed": 6, "control": 6, "vision": 6,
    "pipelines": 7,
    "gouache": 8,
    "tiny": 9, "data": 9,
    "train": 10,
    "bench": 11,
    "server": 12, "batch": 12,
    "cli": 13,
}
ROOT_MODULES = {"errors": "base", "images": "base", "progress": "base", "files": "base", "version": "base",
                "bench": "bench", "__main__": "cli"}



@dataclass(frozen=True)
class Import:
    importer: str  # module names, dotted
    imported: str
    line: int


def modules(src: Path | None = None) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module and package of gouache (under ``src``, default SRC)."""
    src = src or SRC
    out = {}
    for path in sorted((src / "gouache").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _known(name: str, known: dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a module (``gouache.__version__`` is the root's)."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names ``node`` imports (before resolving them to modules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        return [f"{base}.{a.name}" for a in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if func in ("files", "import_module") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def imports(src: Path | None = None) -> list[Import]:
    """Every import of one gouache module by another, wherever it is written."""
    known = modules(src)
    out = []
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for name in _targets(node, module, path.name == "__init__.py"):
                target = _known(name, known) if name.split(".")[0] == "gouache" else None
                if target and target != module:
                    out.append(Import(module, target, node.lineno))
    return list(dict.fromkeys(out))  # `from x import a, b` is one import of x


def unit(module: str) -> str:
    """The unit of the layer table a module belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "gouache"
    return ROOT_MODULES.get(parts[1], parts[1]) if len(parts) == 2 else parts[1]


def _upward(found: list[Import]) -> list[Import]:
    return [i for i in found if unit(i.importer) != unit(i.imported)
            and LAYERS.get(unit(i.imported), 0) >= LAYERS.get(unit(i.importer), 0)]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack, on_stack, found = [], set(), []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _graph(found: list[Import], key) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for i in found:
        if key(i.importer) != key(i.imported):
            edges[key(i.importer)].add(key(i.imported))
    return edges


def _listing(found: list[Import]) -> str:
    return "\n".join(f"  {i.importer}:{i.line} ({unit(i.importer)}, layer {LAYERS.get(unit(i.importer))}) imports "
                     f"{i.imported} ({unit(i.imported)}, layer {LAYERS.get(unit(i.imported))})" for i in found)


def test_every_unit_has_a_layer():
    missing = sorted({unit(m) for m in modules()} - set(LAYERS))
    assert not missing, f"put these in LAYERS (and in docs/architecture.md): {missing}"


def test_imports_go_down_the_layers():
    upward = _upward(imports())
    assert not upward, "imports from the same or a higher layer (docs/architecture.md):\n" + _listing(upward)


def test_no_cycles_between_packages():
    cycles = _cycles(_graph(imports(), unit))
    assert not cycles, f"units that import each other, directly or round a loop: {cycles}"


def test_no_cycles_between_subpackages():
    """At any depth: modules of two packages (a subpackage and its parent too, as the server and its
    web UI) that import each other round a loop. Modules of one package may (lazily)."""
    known = modules()

    def package(module: str) -> str:
        return module if known[module].name == "__init__.py" else module.rpartition(".")[0]

    cycles = [c for c in _cycles(_graph(imports(), lambda m: m)) if len({package(m) for m in c}) > 1]
    assert not cycles, f"modules of different packages that import each other, round a loop: {cycles}"


def test_the_checks_see_every_kind_of_import(tmp_path):
    """Inside functions, relative, under TYPE_CHECKING and through importlib.resources."""
    package = tmp_path / "gouache"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "models" / "__init__.py").write_text("from . import registry\n")
    (package / "models" / "registry.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gouache.errors import X\n"
        "def f():\n    from ..server.app import create_app\n"
        "def g():\n    return importlib.resources.files('gouache.tiny.weights')\n")
    (package / "tiny").mkdir()
    (package / "tiny" / "__init__.py").write_text("")
    (package / "server").mkdir()
    (package / "server" / "__init__.py").write_text("")
    (package / "server" / "app.py").write_text("")
    found = {(i.importer, i.imported) for i in imports(tmp_path)}
    assert found == {("gouache.models", "gouache.models.registry"), ("gouache.models.registry", "gouache.errors"),
                     ("gouache.models.registry", "gouache.server.app"), ("gouache.models.registry", "gouache.tiny")}
    assert sorted((i.importer, i.imported) for i in _upward(imports(tmp_path))) == [
        ("gouache.models.registry", "gouache.server.app"), ("gouache.models.registry", "gouache.tiny")]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_a_screen():
    """Functions of src/ stay readable at a glance: at most 60 lines each, docstring included."""
    long = []
    for path in sorted((SRC / "gouache").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these:\n" + "\n".join(long)
