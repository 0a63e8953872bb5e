"""What the node publishes, as arrays: one definition for the node's topics, the bag
evaluator's scores and its output bag, so that all three see the same pixels.

Needs no ROS installation (bag evaluation runs without one).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.recordings.encodings import depth_as_published, probability_to_mono8
from densemtl_core.runtime import Prediction
from densemtl_core.colormaps import colorize_normals, overlay_segmentation

DEFAULT_OVERLAY_ALPHA = 0.5
"""Weight of the class colours over the image in ``segmentation_color``."""


@dataclass(frozen=True)
class PublishedMaps:
    """One frame's outputs as the node publishes them; ``None`` for a task the model lacks or an
    output that was not computed or recorded.

    ``segmentation``: uint8/uint16 HxW class ids; ``depth``: float32 HxW metres, NaN where
    invalid; ``normals``: float32 HxWx3 unit vectors, camera optical frame; ``edges``: uint8 HxW,
    round(255 * probability).
    """

    segmentation: np.ndarray | None = None
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None
    edges: np.ndarray | None = None


def published_maps(prediction: Prediction, metadata: ModelMetadata) -> PublishedMaps:
    """A Prediction as the node publishes it: depth NaN where the network hit its range's
    limit (REP 118), edges quantised to mono8."""
    model = metadata.config.model
    return PublishedMaps(
        segmentation=prediction.segmentation,
        depth=(None if prediction.depth is None
               else depth_as_published(prediction.depth, (model.min_depth, model.max_depth))),
        normals=prediction.normals,
        edges=None if prediction.edges is None else probability_to_mono8(prediction.edges))


IMAGE_OUTPUTS = {"segmentation": "segmentation", "segmentation_color": "segmentation",
                 "depth": "depth", "normals": "normals", "normals_color": "normals",
                 "edges": "edges"}
"""Image output -> the PublishedMaps field it is made from."""


def topic_suffix(output: str) -> str:
    """``segmentation_color`` -> ``segmentation/color``: the topic under the node's name."""
    return output.replace("_", "/")


def published_image(output: str, maps: PublishedMaps, rgb: np.ndarray,
                    class_colors: Sequence[Sequence[int]],
                    overlay_alpha: float = DEFAULT_OVERLAY_ALPHA
                    ) -> tuple[np.ndarray, str] | None:
    """(pixels, encoding) of image ``output``, or None when its map is missing; ``rgb`` is the
    input at the maps' resolution (for the segmentation overlay)."""
    source = getattr(maps, IMAGE_OUTPUTS[output])
    if source is None:
        return None
    if output == "segmentation":
        return source, "mono8" if source.dtype == np.uint8 else "mono16"
    if output == "segmentation_color":
        return overlay_segmentation(rgb, source, class_colors, overlay_alpha), "rgb8"
    if output == "normals_color":
        return colorize_normals(source), "rgb8"
    return source, {"depth": "32FC1", "normals": "32FC3", "edges": "mono8"}[output]
