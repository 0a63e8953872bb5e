"""The one place that knows each task: ``TASKS``, one :class:`TaskSpec` per task.

Everything else (network, losses, evaluator, visualisation, runtimes, the ROS node and the bag
tools) iterates over ``TASKS`` instead of branching on task names, so a fifth task is one more
module here with its ``SPEC`` in the table, plus a head. The per-task functions live beside the
table, one module per task; the table needs neither training (the multi-task loss, datasets)
nor PIL, so the runtime reads it too.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
from torch import Tensor

from .. import config
from ..config import ModelConfig
from . import depth, edges, normals, semseg
from .spec import ImageContext, PublishedImage, TaskSpec

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in
                              (semseg.SPEC, depth.SPEC, normals.SPEC, edges.SPEC)}
"""Task name -> its description, in the canonical order (fusion, outputs, topics)."""
assert tuple(TASKS) == config.TASK_NAMES


@contextmanager
def extended(*specs: TaskSpec) -> Iterator[dict[str, TaskSpec]]:
    """``TASKS`` (and ``config.TASK_NAMES``, which configurations are checked against) with
    ``specs`` added after the tasks already there, for the duration of the block.

    A task defined outside the library (an experiment, a test) goes through everything the
    table drives: training, export, the runtimes, the node and the bag tools.
    """
    clashes = [spec.name for spec in specs if spec.name in TASKS]
    if clashes:
        raise ValueError(f"task(s) {clashes} are already in the table")
    names = config.TASK_NAMES
    TASKS.update((spec.name, spec) for spec in specs)
    config.TASK_NAMES = (*names, *(spec.name for spec in specs))
    try:
        yield TASKS
    finally:
        for spec in specs:
            del TASKS[spec.name]
        config.TASK_NAMES = names


def field_names() -> tuple[str, ...]:
    """The map fields of predictions, published maps and ground truth, in task order."""
    return tuple(spec.field for spec in TASKS.values())


class TaskMaps:
    """One frame's maps, one per task, named by the tasks' ``field``; a map that is missing
    (a task the model lacks, an output not computed, recorded or given) reads as ``None``.

    The one definition of "a map per task" behind predictions, published maps and ground truth,
    so a task added to the table is a field of all three. Frozen; ``EXTRA_FIELDS`` names maps
    a subclass carries besides the tasks' (a prediction's class probabilities).
    """

    EXTRA_FIELDS: tuple[str, ...] = ()

    def __init__(self, **maps: np.ndarray | None) -> None:
        known = self.known_fields()
        unknown = [name for name in maps if name not in known]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {unknown}; "
                            f"fields: {list(known)}")
        object.__setattr__(self, "_maps", {name: value for name, value in maps.items()
                                           if value is not None})

    @classmethod
    def known_fields(cls) -> tuple[str, ...]:
        return (*field_names(), *cls.EXTRA_FIELDS)

    def __getattr__(self, name: str) -> np.ndarray | None:
        if not name.startswith("_") and name in self.known_fields():
            return self.__dict__["_maps"].get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def maps(self) -> dict[str, np.ndarray]:
        """The maps present, field -> array."""
        return dict(self.__dict__["_maps"])

    def is_empty(self) -> bool:
        return not any(name in self.__dict__["_maps"] for name in field_names())

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}={value.shape}" for name, value in self.maps().items())
        return f"{type(self).__name__}({shapes})"


def delta_m(metrics: Mapping[str, float], baselines: Mapping[str, float],
            higher_is_better: Mapping[str, bool] | None = None) -> float:
    """Multi-task gain Δm in percent (METHOD.md section 4.5), keyed by task.

    Δm = 100/T · Σ_t ±(M_t − B_t)/B_t, with + where higher is better and − where lower is
    better, over the T tasks in ``metrics``; positive means better than the baselines on
    average. ``higher_is_better`` defaults to the directions of the tasks' main metrics.
    """
    if higher_is_better is None:
        higher_is_better = {task: spec.higher_is_better for task, spec in TASKS.items()}
    if not metrics:
        raise ValueError("delta_m needs at least one task")
    missing = [task for task in metrics if task not in baselines or task not in higher_is_better]
    if missing:
        raise KeyError(f"no baseline or direction for task(s) {missing}")
    gains = [(1.0 if higher_is_better[task] else -1.0) * (value - baselines[task]) / baselines[task]
             for task, value in metrics.items()]
    return 100.0 * sum(gains) / len(gains)


def main_values(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each task's main metric out of its full metrics (task -> key -> value)."""
    return {task: values[TASKS[task].main_metric] for task, values in metrics.items()}


def decode_outputs(raw: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Raw outputs of one scale, keyed by task -> each task's user-facing prediction."""
    return {task: TASKS[task].decode(value, cfg) for task, value in raw.items()}


__all__ = ["TASKS", "ImageContext", "PublishedImage", "TaskMaps", "TaskSpec", "decode_outputs", "delta_m",
           "extended", "field_names", "main_values"]
