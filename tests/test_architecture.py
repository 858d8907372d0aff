"""The architecture rules of docs/architecture.md, checked on skood's source.

* No import cycle between skood's modules (lazy imports inside functions count too).
* No module reads or writes another module's private names: no ``from skood.x import _name``,
  no ``module._name``, no ``obj._name`` of a name only another module defines.
* ``offset_`` is assigned in skood/base.py only.
* One private score method name: ``_score_samples``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import skood

PACKAGE = Path(skood.__file__).parent


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text(), filename=str(path))
    return modules


MODULES = _modules()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _imports(module: str, tree: ast.Module):
    """``(imported module, names taken from it, line)`` for every import, lazy ones too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names], node.lineno


def _edges() -> dict[str, set[str]]:
    locations = skood._LOCATIONS
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, tree in MODULES.items():
        for target, names, _ in _imports(module, tree):
            if target in MODULES and target != module:
                edges[module].add(target)
            for name in names:  # "from skood import features" or "from skood import KNNDetector"
                sub = f"{target}.{name}"
                if sub in MODULES and sub != module:
                    edges[module].add(sub)
                elif target == "skood" and name in locations and locations[name] != module:
                    edges[module].add(locations[name])
    return edges


def test_there_is_no_import_cycle():
    edges = _edges()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, f"import cycles: {cycles}"


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, methods, attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if _is_private(n)}


def _own(node: ast.expr) -> bool:
    """``self``, ``cls``, ``super()`` or ``type(self)``: the object's own class hierarchy."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in ("super", "type")
    return False


def test_no_module_touches_another_modules_private_names():
    defined = {module: _defined_private_names(tree) for module, tree in MODULES.items()}
    everywhere = set().union(*defined.values())
    found = []
    for module, tree in MODULES.items():
        for target, names, line in _imports(module, tree):
            if target.split(".")[0] == "skood" and target != module:
                found += [f"{module}:{line} imports {target}.{n}" for n in names if _is_private(n)]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            if _own(node.value) or node.attr in defined[module]:
                continue
            if node.attr in everywhere:  # defined by another skood module only
                found.append(f"{module}:{node.lineno} reads or writes ._{node.attr[1:]}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_offset_is_assigned_in_the_base_only():
    found = []
    for module, tree in MODULES.items():
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and sub.attr == "offset_":
                        found.append(f"{module}:{node.lineno}")
    assert found and all(place.startswith("skood.base:") for place in found), found


#: Names the private score method had before it was one (issue 33).
_OLD_SCORE_NAMES = {"_log_likelihood", "_scores", "_score", "_scores_and_logits", "_combine"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_one_private_score_method_name(module):
    methods = {
        node.name
        for node in ast.walk(MODULES[module])
        if isinstance(node, ast.FunctionDef) and node.name in _OLD_SCORE_NAMES
    }
    assert not methods, f"{module} defines {sorted(methods)}; the score is _score_samples"
