"""The import graph of gluon_ssd/ and convert/ (DESIGN.md, "Layout"): a DAG, imports inside functions included,
and a reason on every import that a function makes instead of the module.

The source is read with ``ast`` (nothing is imported, so this runs on both stacks).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gluon_ssd", "convert")

# Third-party packages a function may import instead of the module, and why each is optional there:
OPTIONAL_THIRD_PARTY = {
    "tqdm": "progress bars, a nicety the library runs without",
    "matplotlib": "plots (checker, curves, evaluation figures), optional to run anything else",
    "onnx": "ONNX export and int8 graphs of the PyTorch twin only",
    "onnxruntime": "the ONNX Runtime backend only",
    "openvino": "the OpenVINO backend only",
    "nncf": "OpenVINO int8 only (PyTorch stack: nncf 3 needs numpy >= 1.24)",
    "horovod": "distributed MXNet training only, built from source (make horovod)",
    "pycocotools": "COCO evaluation, read where a COCO metric is asked for",
    "faster_coco_eval": "the COCO evaluator of the PyTorch stack (Python 3.12+), where pycocotools is missing",
    "torch.distributed": "torchrun / DDP runs only",
    "mxnet": "the MXNet stack only: modules that serve the PyTorch stack too import it where it is needed",
    "gluoncv": "only to find GluonCV's own files (its int8 graphs) where it is installed",
    "torch": "the PyTorch twin, optional to the MXNet stack's modules that hand work to it",
    "cv2": "image decoding, optional to the modules that also serve an image-free run",
    "PIL": "image decoding where OpenCV is missing",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """{dotted module name: file} of every .py of the project's packages."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_package(modules: dict[str, Path], name: str) -> bool:
    return modules[name].name == "__init__.py"


def _imports(tree: ast.Module):
    """(node, inside a function) for every import statement of a module."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _targets(node, module: str, modules: dict[str, Path]) -> list[str]:
    """The dotted names an import statement of ``module`` reads (own modules resolved, others as written).

    ``from pkg import name`` counts as an import of ``pkg.name`` where that is a module, else of ``pkg``.
    """
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module if _is_package(modules, module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module
    names = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        names.append(sub if sub in modules else base)
    return names


def _own(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name stands for (its longest own prefix), or None for a third party."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str, bool, str]]]:
    """The graph {module: modules it imports} and every import as (module, line, target, in function, line text)."""
    modules = _sources()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    imports = []
    for module, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node, in_function in _imports(ast.parse(text, str(path))):
            for target in _targets(node, module, modules):
                own = _own(target, modules)
                if own is not None and own != module:
                    graph[module].add(own)
                statement = "\n".join(lines[node.lineno - 1:node.end_lineno])
                imports.append((module, node.lineno, own or target, in_function, statement))
    return graph, imports


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles that cover every module of every strongly connected component of more than one module (Tarjan):
    the shortest cycle through each module not on an earlier one, so that a new cycle is not hidden behind an
    old one that shares a module with it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for component in components:
        covered: set[str] = set()
        for start in sorted(component):
            if start not in covered:
                cycles.append(_shortest_cycle(graph, set(component), start))
                covered.update(cycles[-1])
    return cycles


def _shortest_cycle(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """The shortest closed path from ``start`` back to it inside a strongly connected component (BFS)."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return sorted(component)


def test_find_cycles_finds_one():
    # The checker itself: a cycle through three modules is found, a DAG is not.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    # two cycles through one module: both are reported
    assert find_cycles({"a": {"b", "c"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"], ["c", "a", "c"]]


def test_own_imports_form_a_dag():
    graph, _ = _graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)


def test_function_level_imports_say_why():
    # An import inside a function hides a dependency from the module's head; it is there for a reason: a first
    # party module says it in a trailing comment, a third party one is one of the optional packages.
    _, imports = _graph()
    modules = _sources()
    bad = []
    for module, line, target, in_function, text in imports:
        if not in_function or any(f"{module}:{line}:" in b for b in bad):
            continue
        if target in modules:
            if "#" not in text:
                bad.append(f"{module}:{line}: {text.strip()}  (a project module: say why in a trailing comment)")
        elif target.partition(".")[0] in sys.stdlib_module_names:
            if "#" not in text:
                bad.append(f"{module}:{line}: {text.strip()}  (standard library: import it at module level, or say "
                           "why in a trailing comment)")
        elif not any(target == name or target.startswith(name + ".") for name in OPTIONAL_THIRD_PARTY):
            bad.append(f"{module}:{line}: {text.strip()}  (not an optional package: import it at module level)")
    assert not bad, "function-level imports without a reason:\n" + "\n".join(bad)
