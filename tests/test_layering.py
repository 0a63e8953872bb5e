"""What may import what, read from the source with ``ast`` (imports inside functions included):
the library imports no ROS, and the scripts, each run as a file with its folder on ``sys.path``,
import one another without a circle (a circle works only as long as one side imports late)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS_MODULES = {"rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs",
               "diagnostic_msgs", "launch", "launch_ros", "densemtl_ros"}
"""What ``densemtl_core`` may not import: rclpy, message packages and the ROS side itself.
(cv_bridge is not among them: the image decoding uses it only where a ROS installation
provides it, and decodes without it everywhere else.)"""


def imported_modules(path: Path) -> set[str]:
    """The modules ``path`` imports by absolute name, wherever in the file the import is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
    return found


def import_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (module -> the modules it imports), as the modules along it
    with the first repeated at the end, or None when there is none."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            circle = visit(imported, [*path, module])
            if circle is not None:
                return circle
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module, [])
        if circle is not None:
            return circle
    return None


def test_the_library_imports_no_ros():
    offenders = {}
    for path in sorted((REPO / "densemtl_core").rglob("*.py")):
        ros = sorted(name for name in imported_modules(path) if name.split(".")[0] in ROS_MODULES)
        if ros:
            offenders[str(path.relative_to(REPO))] = ros
    assert offenders == {}


@pytest.mark.parametrize("folder", ["scripts", "benchmarks"])
def test_scripts_import_one_another_without_a_circle(folder):
    scripts = {path.stem: path for path in (REPO / folder).glob("*.py")}
    graph = {name: {module.split(".")[0] for module in imported_modules(path)} & scripts.keys()
             for name, path in scripts.items()}
    assert import_circle(graph) is None
