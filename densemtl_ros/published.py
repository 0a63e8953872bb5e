"""What the node publishes, as arrays: one definition for the node's topics, the bag
evaluator's scores and its output bag, so that all three see the same pixels.

Every image output comes from the task table (``densemtl_core.tasks``: each task's
``images``, ``publish`` and ``field``), so a task added there is published, recorded and scored
with no change here. Needs no ROS installation (bag evaluation runs without one).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.runtime import Prediction
from densemtl_core.tasks import TASKS, ImageContext, PublishedImage, TaskMaps, TaskSpec

DEFAULT_OVERLAY_ALPHA = 0.5
"""Weight of the class colours over the image in ``segmentation_color``."""


class PublishedMaps(TaskMaps):
    """One frame's outputs as the node publishes them, a field per task (``None`` for a task the
    model lacks or an output that was not computed or recorded).

    ``segmentation``: uint8/uint16 HxW class ids; ``depth``: float32 HxW metres, NaN where
    invalid; ``normals``: float32 HxWx3 unit vectors, camera optical frame; ``edges``: uint8 HxW,
    round(255 * probability).
    """


def published_maps(prediction: Prediction, metadata: ModelMetadata,
                   depth_scale: float = 1.0) -> PublishedMaps:
    """A Prediction as the node publishes it (each task's ``publish``: depth NaN where the
    network hit its range's limit (REP 118), edges quantised to mono8); depth multiplied by
    ``depth_scale``, metres per model unit (see :mod:`densemtl_ros.depth_units`), after the
    range check, which is in the model's units."""
    model = metadata.config.model
    maps = {spec.field: spec.publish(getattr(prediction, spec.field), model)
            for spec in TASKS.values() if getattr(prediction, spec.field) is not None}
    if depth_scale != 1.0 and maps.get("depth") is not None:
        maps["depth"] = maps["depth"] * np.float32(depth_scale)
    return PublishedMaps(**maps)


def image_outputs() -> dict[str, tuple[TaskSpec, PublishedImage]]:
    """Image output name -> (its task, how its pixels are made), in publishing order."""
    return {image.name: (spec, image) for spec in TASKS.values() for image in spec.images}


def recorded_outputs() -> dict[str, str]:
    """Map field -> the topic suffix that carries the map as published (each task's first
    image output), for recording a node's maps."""
    return {spec.field: topic_suffix(name)
            for spec, name in zip(TASKS.values(), map_output_names())}


def map_output_names() -> list[str]:
    """The image outputs that carry each task's map as published (:func:`recorded_outputs`),
    by output name: what a recorder of the maps subscribes to."""
    return [spec.images[0].name for spec in TASKS.values()]


def topic_suffix(output: str) -> str:
    """``segmentation_color`` -> ``segmentation/color``: the topic under the node's name."""
    return output.replace("_", "/")


def published_image(output: str, maps: PublishedMaps, rgb: np.ndarray,
                    class_colors: Sequence[Sequence[int]],
                    overlay_alpha: float = DEFAULT_OVERLAY_ALPHA
                    ) -> tuple[np.ndarray, str] | None:
    """(pixels, encoding) of image ``output``, or None when its map is missing; ``rgb`` is the
    input at the maps' resolution (for the segmentation overlay)."""
    spec, image = image_outputs()[output]
    source = getattr(maps, spec.field)
    if source is None:
        return None
    return image.pixels(source, ImageContext(rgb, class_colors, overlay_alpha))
