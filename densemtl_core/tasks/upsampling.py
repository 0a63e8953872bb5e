"""Up-sampling a network-resolution map to the input's: the kernels the tasks' finishing
steps share (see :mod:`densemtl_core.runtime.processing` for the rules).

Vectorised CPU torch, memory bounded by the pixel counts of the map and of the output, whatever
their shapes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Size = tuple[int, int]


def resize_maps(maps: Tensor, size: Size) -> Tensor:
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
