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

Everything runs on CPU torch tensors under ``torch.inference_mode``, vectorised and on one
thread (see :func:`single_threaded`). Memory grows with the pixel counts of the image and the
network input, not with the image's shape: no intermediate is image-height x network-width
(a 4,000,000 x 1 frame costs about what a 2000 x 2000 one does).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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


def _resize(maps: Tensor, size: Size) -> Tensor:
    """CxHxW maps resized to ``size`` bilinearly, always into new memory (a backend's outputs
    may be buffers that its next run overwrites).

    The maps go through as a batch of single-channel images: the same result, and torch's CPU
    kernel is several times faster on 3 x 1 x H x W than on 1 x 3 x H x W.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.clone()
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def _channel_argmax(scores: Tensor) -> Tensor:
    """Arg-max over the leading (channel) axis of CxHxW scores, as int64 HxW.

    A running maximum over channels is several times faster on CPU than ``argmax(dim=0)``,
    whose reduction walks the channel axis with a stride of H*W. Ties go to the lower index,
    as with ``argmax``.
    """
    best = scores[0].clone()
    labels = torch.zeros(scores.shape[1:], dtype=torch.int64)
    for channel in range(1, scores.shape[0]):
        better = scores[channel] > best
        labels.masked_fill_(better, channel)
        torch.maximum(best, scores[channel], out=best)
    return labels


def _bilinear_taps(out_length: int, in_length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per output index: the two source indices and the weight of the second, as torch's bilinear
    interpolation with ``align_corners=False`` computes them (in float32)."""
    scale = torch.tensor(in_length, dtype=torch.float32) / out_length
    source = ((torch.arange(out_length, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_min_(0)
    first = source.long().clamp_max_(in_length - 1)
    second = (first + 1).clamp_max_(in_length - 1)
    return first, second, (source - first).clamp_(0.0, 1.0)


_MIXED_CHUNK = 1 << 16
"""Mixed pixels interpolated at once by :func:`upsampled_argmax`: with 40 classes, about 10 MB
per temporary, instead of temporaries as large as the classes times the whole output."""


def upsampled_argmax(scores: Tensor, size: Size) -> Tensor:
    """``argmax`` over classes of the CxHxW ``scores`` bilinearly resized to ``size`` (int64).

    Each output pixel is a convex combination of four source pixels; where those four share
    their arg-max class, every combination keeps it (a sum of inequalities). So the labels come
    from the network-resolution arg-max, and only pixels whose four sources disagree (near class
    borders) are interpolated and compared. Equal to ``F.interpolate`` then ``argmax`` up to
    float rounding at exact ties.
    """
    labels = _channel_argmax(scores)
    if tuple(scores.shape[1:]) == tuple(size):
        return labels
    rows, next_rows, row_weight = _bilinear_taps(size[0], scores.shape[1])
    cols, next_cols, col_weight = _bilinear_taps(size[1], scores.shape[2])
    # A source block (i, j), (i+1, j), (i, j+1), (i+1, j+1) is uniform when its labels agree;
    # on the last row and column the "next" index is the same one, as in the taps above.
    below = torch.cat([labels[1:], labels[-1:]], dim=0)
    uniform = (labels == below)
    uniform &= torch.cat([uniform[:, 1:], uniform[:, -1:]], dim=1)
    uniform &= labels == torch.cat([labels[:, 1:], labels[:, -1:]], dim=1)
    upsampled = _gather(labels, rows, cols)
    mixed_rows, mixed_cols = torch.nonzero(~_gather(uniform, rows, cols), as_tuple=True)
    flat = scores.reshape(scores.shape[0], -1)
    width = scores.shape[2]
    # In chunks: each mixed pixel needs several C-vectors of temporaries.
    for start in range(0, mixed_rows.numel(), _MIXED_CHUNK):
        chunk_rows = mixed_rows[start:start + _MIXED_CHUNK]
        chunk_cols = mixed_cols[start:start + _MIXED_CHUNK]
        r0, r1 = rows[chunk_rows] * width, next_rows[chunk_rows] * width
        c0, c1 = cols[chunk_cols], next_cols[chunk_cols]
        wy, wx = row_weight[chunk_rows], col_weight[chunk_cols]
        top = torch.lerp(flat.index_select(1, r0 + c0), flat.index_select(1, r0 + c1), wx)
        bottom = torch.lerp(flat.index_select(1, r1 + c0), flat.index_select(1, r1 + c1), wx)
        upsampled[chunk_rows, chunk_cols] = _channel_argmax(torch.lerp(top, bottom, wy))
    return upsampled


def _gather(grid: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``grid[rows][:, cols]`` through the smaller of the two intermediates: rows first builds
    len(rows) x grid-width, columns first grid-height x len(cols), and for a frame far taller
    or wider than the network one of them is many times the frame."""
    if len(rows) * grid.shape[1] <= grid.shape[0] * len(cols):
        return grid.index_select(0, rows).index_select(1, cols)
    return grid.index_select(1, cols).index_select(0, rows)


def _label_dtype(num_classes: int) -> type[np.integer]:
    return np.uint8 if num_classes <= 256 else np.uint16


def _finish_semseg(probabilities: Tensor, size: Size, with_probabilities: bool
                   ) -> dict[str, np.ndarray]:
    labels = upsampled_argmax(probabilities, size).numpy().astype(
        _label_dtype(probabilities.shape[0]))
    fields = {"segmentation": labels}
    if with_probabilities:
        fields["probabilities"] = _resize(probabilities, size).numpy()
    return fields


def _finish_depth(depth: Tensor, size: Size, _: bool) -> dict[str, np.ndarray]:
    if tuple(depth.shape[-2:]) == tuple(size):
        return {"depth": depth[0].clone().numpy()}  # never a view of the backend's buffer
    return {"depth": _resize(depth.reciprocal(), size)[0].reciprocal_().numpy()}


def _finish_normals(normals: Tensor, size: Size, _: bool) -> dict[str, np.ndarray]:
    if tuple(normals.shape[-2:]) == tuple(size):  # the graph's output is already unit length
        return {"normals": normals.permute(1, 2, 0).contiguous().numpy()}
    normals = _resize(normals, size)
    # Averages of unit vectors are shorter: re-normalise, writing straight into H x W x 3.
    inverse_norm = (normals[0] * normals[0]).addcmul_(normals[1], normals[1])
    inverse_norm.addcmul_(normals[2], normals[2]).clamp_min_(1e-12).rsqrt_()
    unit = torch.empty((*size, 3), dtype=normals.dtype)
    torch.mul(normals.permute(1, 2, 0), inverse_norm.unsqueeze(-1), out=unit)
    return {"normals": unit.numpy()}


def _finish_edges(probability: Tensor, size: Size, _: bool) -> dict[str, np.ndarray]:
    return {"edges": _resize(probability, size)[0].numpy()}


FINISHERS: dict[str, Callable[[Tensor, Size, bool], dict[str, np.ndarray]]] = {
    "semseg": _finish_semseg,
    "depth": _finish_depth,
    "normals": _finish_normals,
    "edges": _finish_edges,
}
"""Per task: (decoded CxHxW map at network resolution, input size, probabilities wanted?) ->
the :class:`~densemtl_core.runtime.prediction.Prediction` fields it fills."""


def finish_outputs(decoded: dict[str, Tensor], size: Size, with_probabilities: bool = False
                   ) -> dict[str, np.ndarray]:
    """One image's decoded network outputs (task -> CxHxW) -> Prediction fields at ``size``."""
    fields: dict[str, np.ndarray] = {}
    for task, value in decoded.items():
        fields.update(FINISHERS[task](value.float(), size, with_probabilities))
    return fields
