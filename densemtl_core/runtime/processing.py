"""Pre- and post-processing shared by every backend, so that all of them give the same answer.

A backend only maps a float32 batch at the network resolution to the decoded outputs of
:class:`~densemtl_core.runtime.graph.InferenceGraph` (also at the network resolution); what
happens before and after is here:

* input: a uint8 camera image of any size is checked, converted to RGB and resized to the
  network input with the same filter the training data goes through (bilinear, anti-aliased);
* output: each task's decoded map is resized back to the input size with bilinear interpolation
  (``align_corners=False``) of a quantity for which averaging is meaningful, then finished:

  - segmentation: class *probabilities* are interpolated and the label is their arg-max (an
    interpolated distribution is still a distribution). The cheaper arg-max at network
    resolution followed by nearest up-sampling is a different, blocky labelling;
    :func:`upsampled_argmax` computes the exact arg-max of the interpolated probabilities
    while interpolating only near class borders;
  - depth: inverse depth is interpolated (1/z is affine in image coordinates across a plane,
    so planes stay planes), then inverted back to metres;
  - normals: interpolated and re-normalised to unit length;
  - edges: the edge probability is interpolated.

``MultiTaskNet.decode(outputs, size)`` interpolates raw outputs (logits, inverse-depth codes)
instead, for the evaluator; the two agree except within a pixel or two of class borders and
depth edges.

A model exported with a camera size (:mod:`densemtl_core.runtime.end_to_end`) does all of this in
its graph: for it the host only stacks the frames (:func:`camera_batch`) and wraps the graph's
outputs (:func:`end_to_end_maps`).

Everything runs on CPU torch tensors under ``torch.inference_mode``, vectorised and on one
thread (see :func:`single_threaded`). Memory grows with the pixel counts of the image and the
network input, not with the image's shape: no intermediate is image-height x network-width
(a 4,000,000 x 1 frame costs about what a 2000 x 2000 one does).
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..tasks import TASKS

Size = tuple[int, int]


class InvalidImageError(ValueError):
    """An input image has a type, dtype or shape the predictor cannot use."""


_ACCEPTED = ("uint8 arrays shaped HxWx3 (RGB), HxW or HxWx1 (grayscale, replicated to RGB) or "
             "HxWx4 (RGBA, alpha dropped)")


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch operators on one thread inside the block, restoring the setting after.

    Pre- and post-processing are short memory-bound operators: a second thread saves little,
    while on a CPU shared with other processes (a robot's) each OpenMP barrier waits for a
    thread the OS has descheduled, which made them over ten times slower in measurements on a
    loaded 2-core machine. The network keeps its threads. torch's thread count (OpenMP's) belongs
    to the calling thread, so a pipeline's threads do not disturb each other's setting.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous HxWx3 uint8 RGB array, or InvalidImageError saying why not.

    Grayscale is replicated to three channels and RGBA loses its alpha channel. Other dtypes are
    refused rather than guessed at: a float image may be in [0, 1] or [0, 255], a uint16 one may
    use 10, 12 or 16 bits.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a numpy array, got {type(image).__name__}; accepted: "
                                f"{_ACCEPTED}")
    if image.dtype != np.uint8:
        hint = (" (a float image in [0, 1] converts with (image * 255).round().astype(np.uint8))"
                if np.issubdtype(image.dtype, np.floating) else "")
        raise InvalidImageError(f"expected dtype uint8, got {image.dtype} with shape "
                                f"{image.shape}{hint}; accepted: {_ACCEPTED}")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        channels = image.shape[2]
    elif image.ndim == 2:
        channels = 1
    else:
        raise InvalidImageError(f"expected shape HxW, HxWx1, HxWx3 or HxWx4, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"the image is empty (shape {image.shape})")
    if channels == 1:
        grey = image.reshape(image.shape[:2])
        return np.repeat(grey[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(image[:, :, :3])
    # A read-only view (a message buffer) would make torch warn on every frame.
    return rgb if rgb.flags.writeable else rgb.copy()


def prepare_batch(images: Sequence[np.ndarray], size: Size) -> Tensor:
    """HxWx3 uint8 RGB images -> float32 Bx3xHxW batch in [0, 1] at the network ``size``.

    Resizing happens on uint8 (torch's fast integer path, within one grey level of the float
    result) with bilinear anti-aliased filtering, the filter the training pipeline uses; an
    image already at ``size`` is only converted.
    """
    batch = torch.empty((len(images), 3, *size), dtype=torch.float32)
    for index, image in enumerate(images):
        pixels = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
        if tuple(image.shape[:2]) != tuple(size):
            pixels = _resize_image(pixels, size)
        batch[index] = pixels[0]
    return batch.mul_(1.0 / 255.0)


_WIDTH_FIRST_LIMIT = 4
"""How much larger than the frame or the network input (the larger) torch's width-first
intermediate may grow before :func:`_resize_image` resizes the height first."""


def _resize_image(pixels: Tensor, size: Size) -> Tensor:
    """A 1x3xHxW uint8 image resized to ``size`` (bilinear, anti-aliased) in memory bounded by
    the input's and the output's pixel counts, whatever the image's shape.

    torch resizes the width first, into an input-height x output-width buffer: for a frame
    narrower than the network and much taller (4,000,000 x 1 to 64 x 80), that is 80 times the
    frame (measured: +980 MiB for a 12 MB frame). When that buffer would exceed
    ``_WIDTH_FIRST_LIMIT`` times the larger of the frame and the network input, the frame is
    resized in two calls, the height first, whose intermediate (output-height x input-width) is
    then the smaller one. Every other image (any whose width grows less than that) takes the
    single call, so its pixels are unchanged; the two calls round differently, by a grey level.
    """
    height, width = pixels.shape[-2:]
    if height * size[1] > _WIDTH_FIRST_LIMIT * max(height * width, size[0] * size[1]):
        pixels = F.interpolate(pixels, size=(size[0], width), mode="bilinear",
                               align_corners=False, antialias=True)
    return F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)


def finish_outputs(decoded: dict[str, Tensor], size: Size, with_probabilities: bool = False
                   ) -> dict[str, np.ndarray]:
    """One image's decoded network outputs (task -> CxHxW) -> Prediction fields at ``size``."""
    fields: dict[str, np.ndarray] = {}
    for task, value in decoded.items():
        fields.update(TASKS[task].finish(value.float(), size, with_probabilities))
    return fields


def check_camera_frames(images: Sequence[np.ndarray], camera_size: Size) -> None:
    """InvalidImageError for a frame of another size than an end-to-end graph's
    ``camera_size``."""
    for image in images:
        if tuple(image.shape[:2]) != tuple(camera_size):
            raise InvalidImageError(
                f"the model is an end-to-end graph for {camera_size[0]}x{camera_size[1]} camera "
                f"frames, got a {image.shape[0]}x{image.shape[1]} frame; export one for that "
                f"size (densemtl-export --camera-size {image.shape[0]} {image.shape[1]}) or "
                f"without --camera-size")


def camera_batch(images: Sequence[np.ndarray], camera_size: Size) -> Tensor:
    """HxWx3 uint8 RGB frames -> the B x H x W x 3 uint8 batch of an end-to-end graph, or
    InvalidImageError for a frame of another size than the graph's ``camera_size``."""
    check_camera_frames(images, camera_size)
    if len(images) == 1:
        return torch.from_numpy(images[0]).unsqueeze(0)
    return torch.from_numpy(np.stack(images))


_EDGE_STEP = np.float32(1.0 / 255.0)


def end_to_end_maps(outputs: dict[str, Tensor], index: int,
                    tasks: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Frame ``index`` of an end-to-end graph's outputs, task -> its Prediction field's array
    (only ``tasks``; None: all), in new memory (a backend may overwrite its buffers on its next
    run). The graph's uint8 edges become the probability they encode, which the node
    quantises back to the same uint8."""
    maps: dict[str, np.ndarray] = {}
    for task, value in outputs.items():
        if tasks is not None and task not in tasks:
            continue
        array = value[index].numpy()
        maps[task] = (np.multiply(array, _EDGE_STEP, dtype=np.float32) if task == "edges"
                      else array.copy())
    return maps
