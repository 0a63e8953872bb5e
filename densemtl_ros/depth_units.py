"""Which depth reaches a robot: metres (REP 118), or none.

A model's depth is metres unless its ``model.depth_units`` is ``relative`` (learnt without
metric scale, from a monocular camera without odometry): then it is known only up to one
unknown factor, and publishing it as metres would mislead every consumer silently. Such a
depth is published only with ``relative_depth_scale`` (metres per model unit) given; a scale
given for a metric model is refused, since it would distort metres as silently. The node, the
bag evaluation and its output bag all decide through :func:`depth_publishing`.
"""
from __future__ import annotations

from dataclasses import dataclass

SCALE_PARAMETER = "relative_depth_scale"
"""The node parameter (and, as ``--relative-depth-scale``, the bag evaluation's option)."""


class DepthUnitsError(ValueError):
    """A scale was given for a model whose depth is already metres."""


@dataclass(frozen=True)
class DepthPublishing:
    """How a model's depth is published: multiplied by ``scale`` (metres per model unit) when
    ``published``; a relative depth without a scale is not published (``scale`` 1: model
    units, for scoring with median scaling)."""

    units: str
    scale: float
    published: bool

    @property
    def scaled(self) -> bool:
        """A relative depth made metres by a given scale."""
        return self.units == "relative" and self.published

    @property
    def withheld_tasks(self) -> frozenset[str]:
        """The tasks whose outputs are not published: depth, when unpublished."""
        return frozenset() if self.published else frozenset({"depth"})

    def describe(self) -> str:
        """One line for logs, /diagnostics and reports."""
        if self.units != "relative":
            return "metres"
        if self.published:
            return f"relative, published as metres x {self.scale:g} ({SCALE_PARAMETER})"
        return f"relative, unpublished ({SCALE_PARAMETER} not set)"


def depth_publishing(units: str, relative_depth_scale: float = 0.0) -> DepthPublishing:
    """The publishing of a model whose depth is in ``units`` (``metres``/``relative``, the
    Predictor's ``depth_units``) with ``relative_depth_scale`` (0: not given).

    Raises DepthUnitsError for a scale given to a metric model, ValueError for a negative or
    non-finite scale."""
    if not 0.0 <= relative_depth_scale < float("inf"):
        raise ValueError(f"{SCALE_PARAMETER} must be a finite number >= 0, got "
                         f"{relative_depth_scale}")
    if units == "relative":
        given = relative_depth_scale > 0.0
        return DepthPublishing(units, relative_depth_scale if given else 1.0, given)
    if relative_depth_scale != 0.0:
        raise DepthUnitsError(f"{SCALE_PARAMETER} is {relative_depth_scale:g} but the model's "
                              f"depth is already {units}: a scale would distort it; leave "
                              f"{SCALE_PARAMETER} at 0")
    return DepthPublishing(units, 1.0, True)


def unpublished_warning() -> str:
    """What a node serving a relative model without a scale says once at start."""
    return (f"the model's depth is relative (learnt without metric scale): "
            f"~/depth and ~/points are not published; set {SCALE_PARAMETER} (metres per model "
            f"unit, e.g. from a known distance) to publish them as metres")
