"""The house's floors (``tests/floors.py``), read from the source with ``ast``: no module imports
from a floor above its own except the documented deferred ones, and no imports run in a circle.

An import inside ``if TYPE_CHECKING:`` only names a type and is not followed; an import inside a
function is followed (it runs when called) but marked deferred. Importing ``a.b.c`` also runs the
packages ``a.b`` and ``a`` that the importer is not already inside.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.floors import FLOORS, UPWARD_IMPORTS, floor_of
from tests.test_layering import import_circle

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("densemtl_core", "densemtl_ros")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES
           for path in sorted((REPO / package).rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    deferred: bool
    """Inside a function: runs when the function is called, not when the importer is imported."""


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _is_type_checking(node: ast.If) -> bool:
    return ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads (a name imported from a package is its
    submodule when there is one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        package = (importer if is_package else importer.rpartition(".")[0]).split(".")
        anchor = package[:len(package) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names]


def imports_of(module: str) -> list[Import]:
    """Every project module that ``module`` imports, with the packages that come with it."""
    found: list[Import] = []

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                visit(ast.Module(body=child.orelse, type_ignores=[]), deferred)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, child):
                    if target.split(".")[0] not in PACKAGES:
                        continue
                    inside = set(_ancestors(module)) | {module}
                    for loaded in [*_ancestors(target), target]:
                        if loaded not in inside and loaded in MODULES:
                            found.append(Import(module, loaded, child.lineno, deferred))
            visit(child, deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                        ast.Lambda)))

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")), False)
    return list(dict.fromkeys(found))


IMPORTS = [found for module in MODULES for found in imports_of(module)]


def test_every_library_module_has_a_floor():
    assert [module for module in MODULES if floor_of(module) is None] == []


def documented(found: Import) -> bool:
    """Whether ``found`` is a documented upward import (or one of the packages it loads)."""
    return any(importer == found.importer and (imported == found.imported
                                               or imported.startswith(found.imported + "."))
               for importer, imported in UPWARD_IMPORTS)


@pytest.mark.parametrize("module", list(MODULES))
def test_no_module_imports_from_a_floor_above_its_own(module):
    upward = [f"line {i.line}: {i.imported} ({FLOORS[floor_of(i.imported)][0]})"
              for i in IMPORTS if i.importer == module and not documented(i)
              and floor_of(i.imported) > floor_of(module)]
    assert upward == [], f"{module} is on the {FLOORS[floor_of(module)][0]} floor"


@pytest.mark.parametrize("importer, imported", sorted(UPWARD_IMPORTS))
def test_the_documented_upward_imports_are_deferred(importer, imported):
    """Each exception in the table is still there, and only inside a function."""
    lines = [i for i in IMPORTS if (i.importer, i.imported) == (importer, imported)]
    assert lines, f"{importer} no longer imports {imported}: remove the entry"
    assert all(i.deferred for i in lines), lines


def test_no_import_circle_in_the_library():
    """Deferred imports count too: a circle closed inside a function is still a circle of
    concepts. The documented upward imports are the exception they are listed as."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in IMPORTS:
        if not documented(found):
            graph[found.importer].add(found.imported)
    assert import_circle(graph) is None
