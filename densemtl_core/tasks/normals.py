"""Surface normals: unit vectors in the camera optical frame (x right, y down, z forward)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..colormaps import colorize_normals
from ..metrics import NormalsMeter
from .spec import (ImageContext, PublishedImage, StudyColumn, TaskSpec, channels_last, tensor_of,
                   wrong_truth_encoding)
from .upsampling import Size, resize_maps


def unit_vectors(vectors: Tensor, eps: float = 1e-12) -> Tensor:
    """``F.normalize(vectors, dim=1, eps=eps)`` for training: the norm as a sum of squares,
    which the CPU computes ten times faster than ``linalg.vector_norm`` reduces a short,
    strided channel dimension (at 128x160 the normals loss took 80 ms of a 1 s step). The
    clamp comes before the square root, so a zero vector has a zero gradient, not NaN."""
    return vectors * (vectors * vectors).sum(dim=1, keepdim=True).clamp_min(eps * eps).rsqrt()


def normals_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over valid pixels (target norm > 0.5) of 1 - cos(pred, target); only pred's direction
    matters."""
    target = target.detach()
    valid = ((target * target).sum(dim=1) > 0.25).to(pred.dtype)
    cosine = (unit_vectors(pred) * unit_vectors(target)).sum(dim=1)
    return ((1.0 - cosine) * valid).sum() / valid.sum().clamp_min(1)


def finish(normals: Tensor, size: Size, _: bool) -> dict[str, np.ndarray]:
    """Interpolated and re-normalised to unit length, as H x W x 3."""
    if tuple(normals.shape[-2:]) == tuple(size):  # the graph's output is already unit length
        return {"normals": normals.permute(1, 2, 0).contiguous().numpy()}
    normals = resize_maps(normals, size)
    # Averages of unit vectors are shorter: re-normalise, writing straight into H x W x 3.
    inverse_norm = (normals[0] * normals[0]).addcmul_(normals[1], normals[1])
    inverse_norm.addcmul_(normals[2], normals[2]).clamp_min_(1e-12).rsqrt_()
    unit = torch.empty((*size, 3), dtype=normals.dtype)
    torch.mul(normals.permute(1, 2, 0), inverse_norm.unsqueeze(-1), out=unit)
    return {"normals": unit.numpy()}


def _agreement(expected: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    angle = np.degrees(np.arccos(np.clip((expected * actual).sum(axis=-1), -1.0, 1.0)))
    return {"mean_angle_deg": float(angle.mean()), "max_angle_deg": float(angle.max())}


def _channels_first(normals: np.ndarray) -> Tensor:
    return tensor_of(normals, np.float32).permute(2, 0, 1)[None]


def read_truth(normals: np.ndarray, encoding: str) -> np.ndarray:
    """Recorded unit normals, camera optical frame."""
    if encoding != "32FC3":
        raise wrong_truth_encoding("normals", "must be 32FC3", encoding)
    return normals.astype(np.float32, copy=False)


def _coloured(normals: np.ndarray, _: ImageContext) -> tuple[np.ndarray, str]:
    return colorize_normals(normals), "rgb8"


SPEC = TaskSpec(
    name="normals", title="normals", field="normals",
    channels=lambda cfg: 3,
    loss=lambda output, target, cfg: normals_loss(output, target),
    decode=lambda raw, _: F.normalize(raw, dim=1, eps=1e-6),
    meter=NormalsMeter,
    update_meter=lambda meter, normals, target: meter.update(normals, target),
    render=lambda normals, _: colorize_normals(normals),
    to_display=channels_last,
    finish=finish,
    tolerance=(0.0, 1e-4),
    agreement=_agreement,
    as_decoded=lambda prediction: torch.from_numpy(prediction.normals).permute(2, 0, 1)[None],
    images=(PublishedImage("normals", lambda normals, _: (normals, "32FC3")),
            PublishedImage("normals_color", _coloured)),
    meter_inputs=lambda pred, target: (_channels_first(pred), _channels_first(target)),
    read_truth=read_truth,
    study_column=StudyColumn("normals mean ° ↓", digits=2),
)
