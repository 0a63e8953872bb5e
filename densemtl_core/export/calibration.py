"""The frames an INT8 graph is calibrated on: an image folder, a recording's camera topic, or the
synthetic training scenes.

Every frame goes through the Predictor's own pre-processing (``prepare_batch``: resize to the
network input, scale to [0, 1]), so the calibrated ranges are those the deployed graph sees.
What was used is recorded in the model description (``DeployedModelInfo.calibration``).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..data.recording_index import IMAGE_TYPES, MAX_PIXELS
from ..recordings.bags import open_bag
from ..recordings.encodings import ImageConversionError, camera_image_to_rgb
from ..runtime.processing import as_rgb, prepare_batch
from .samples import synthetic_frames

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SOURCES = ("synthetic", "images", "recording")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
"""ONNX Runtime's activation range estimators (MinMax, Entropy, Percentile 99.999)."""
ACTIVATION_TYPES = ("int8", "uint8")


@dataclass(frozen=True)
class CalibrationSource:
    """Up to ``frames`` frames of ``kind``: ``synthetic`` (the training split of the rendered
    scenes), ``images`` (the images of the folder ``path``, by name) or ``recording`` (the
    camera messages of ``topic`` in the bag ``path``, in log order); activation ranges are
    calibrated by ``method`` (one of :data:`CALIBRATION_METHODS`). ``activations`` is their
    type: ``int8`` (symmetric, zero point 0: the only form TensorRT accepts) or ``uint8``
    (asymmetric: ONNX Runtime's fast form on x86, whose VNNI multiplies unsigned by signed
    bytes; TensorRT refuses it)."""

    kind: str = "synthetic"
    path: Path | None = None
    topic: str | None = None
    frames: int = 64
    method: str = "minmax"
    activations: str = "int8"

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise ValueError(f"calibration source must be one of {SOURCES}, got {self.kind!r}")
        if self.frames <= 0:
            raise ValueError(f"calibration frames must be positive, got {self.frames}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, "
                             f"got {self.method!r}")
        if self.activations not in ACTIVATION_TYPES:
            raise ValueError(f"int8 activations must be one of {ACTIVATION_TYPES}, "
                             f"got {self.activations!r}")
        if (self.kind != "synthetic") != (self.path is not None):
            raise ValueError(f"a {self.kind} calibration source needs a path exactly when it "
                             f"is not synthetic")
        if (self.kind == "recording") != (self.topic is not None):
            raise ValueError("a topic goes with a recording calibration source, and only there")

    def describe(self, frames_used: int) -> dict[str, Any]:
        """The record kept in the model description."""
        return {"source": self.kind, "path": None if self.path is None else str(self.path),
                "topic": self.topic, "frames": frames_used, "method": self.method,
                "activations": self.activations}


def folder_images(folder: Path) -> Iterator[np.ndarray]:
    """The images of ``folder`` (sorted by name) as RGB uint8 arrays, read as they are taken;
    ValueError
    naming the folder when it has none, or the file that is not a readable image."""
    if not folder.is_dir():
        raise ValueError(f"calibration image folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {folder}")
    for path in paths:
        try:
            with Image.open(path) as image:
                yield np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path} is not a readable image: {error}") from error


def recording_images(bag: Path, topic: str) -> Iterator[np.ndarray]:
    """The camera frames of ``topic`` in ``bag`` as RGB uint8 arrays, decoded as they are taken;
    a message that does not decode is skipped. BagError names a missing topic or an unreadable bag."""
    with open_bag(bag) as reader:
        reader.require({topic: IMAGE_TYPES})
        compressed = reader.topics[topic] == IMAGE_TYPES[1]
        for item in reader.messages([topic]):
            if item.message is None:
                continue
            try:
                rgb = camera_image_to_rgb(item.message, compressed=compressed,
                                          max_pixels=MAX_PIXELS)
            except ImageConversionError:
                continue
            yield rgb


def source_images(source: CalibrationSource, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The RGB uint8 frames of ``source`` (rendered at ``size`` when synthetic); the caller
    takes as many as it needs."""
    if source.kind == "images":
        return folder_images(source.path)
    if source.kind == "recording":
        return recording_images(source.path, source.topic)
    return (frame["image"] for frame in synthetic_frames(source.frames, size, "train"))


def calibration_batches(source: CalibrationSource, size: tuple[int, int], *,
                        camera_frames: bool = False) -> list[np.ndarray]:
    """The frames of ``source`` pre-processed as the Predictor does, each a float32
    1 x 3 x H x W network input at ``size``, or with ``camera_frames`` (an end-to-end graph's
    input) resized only, as uint8 1 x H x W x 3; ValueError when the source gives none."""
    batches = []
    for image in islice(source_images(source, size), source.frames):
        batch = prepare_batch([as_rgb(image)], size)
        batches.append((batch * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                       if camera_frames else batch.numpy())
    if not batches:
        raise ValueError(f"no usable calibration frames in {source.path}"
                         + (f" on topic {source.topic}" if source.topic else ""))
    return batches
