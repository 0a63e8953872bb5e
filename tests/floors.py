"""The library's floors, lowest first: a module imports only from its own floor and those below.

One table for the tests that hold the house to it: ``tests/test_floors.py`` reads every module's
imports with ``ast``, ``tests/runtime/test_runtime_imports.py`` checks what running a model loads.
A module belongs to the floor of its longest listed prefix (a prefix covers the module of that
name and the modules under it), except that ``densemtl_core`` covers only the package itself:
each new module of the library needs an entry.
"""
from __future__ import annotations

LIBRARY = "densemtl_core"

FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("common", ("densemtl_core", "densemtl_core.config", "densemtl_core.labels",
                "densemtl_core.geometry", "densemtl_core.devices", "densemtl_core.depth_coding",
                "densemtl_core.colormaps", "densemtl_core.strict_json",
                "densemtl_core.results_folder", "densemtl_core.metrics", "densemtl_core.tasks",
                "densemtl_core.recordings")),
    ("models", ("densemtl_core.models", "densemtl_core.checkpoint", "densemtl_core.pretrained")),
    ("runtime", ("densemtl_core.runtime",)),
    ("training and evaluation", ("densemtl_core.data", "densemtl_core.losses",
                                 "densemtl_core.optim", "densemtl_core.distributed",
                                 "densemtl_core.train", "densemtl_core.evaluate",
                                 "densemtl_core.viz", "densemtl_core.pretrained_check",
                                 "densemtl_core.objectives", "densemtl_core.photometric")),
    ("export", ("densemtl_core.export",)),
    ("ros", ("densemtl_ros",)),
)
"""Common: configuration, the task table and what it needs (meters, colour maps, label and depth
conventions), camera geometry, device names, recordings. Models: the network and its checkpoint
files. Runtime: a model file in, predictions out. Training and evaluation: datasets, losses,
optimisation, pictures. Export: writes ONNX files and builds engines, checked with the runtime.
ROS: the node and the bag tools."""

UPWARD_IMPORTS: dict[tuple[str, str], str] = {
    ("densemtl_core.runtime.tensorrt_backend", "densemtl_core.export.tensorrt"):
        "load_predictor(rebuild=True) rebuilds an engine that does not fit this machine; the "
        "builder is imported inside that branch, so running an engine never loads it",
}
"""The documented exceptions: (importer, imported) -> why. Each must be a deferred import
(inside a function), so importing the importer does not load the floor above."""

RUNTIME_MUST_NOT_LOAD_PACKAGES = ("tqdm", "PIL")
"""Third-party packages of training and pictures that running a model does not need, besides
every module of the floors above the runtime."""


def floor_of(module: str) -> int | None:
    """The index in :data:`FLOORS` of ``module``'s floor, or None when no entry covers it."""
    best, floor = -1, None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            covers = module == prefix or (prefix != LIBRARY and module.startswith(prefix + "."))
            if covers and len(prefix) > best:
                best, floor = len(prefix), index
    return floor


def above_the_runtime(module: str) -> bool:
    """Whether ``module`` must stay out of a process that only runs a model."""
    floor = floor_of(module)
    runtime = next(index for index, (name, _) in enumerate(FLOORS) if name == "runtime")
    return (floor is not None and floor > runtime) or \
        module.split(".")[0] in RUNTIME_MUST_NOT_LOAD_PACKAGES
