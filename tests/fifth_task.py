"""A task defined outside the library: a one-channel "saliency" regression (how bright a pixel
is, in [0, 1]), given to the task table with ``densemtl_core.tasks.extended`` and nothing else.

Shared by the fifth-task tests: training, export and the Predictor (tests/test_fifth_task.py),
the node and the bag evaluation (tests/ros/test_fifth_task_ros.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from densemtl_core.checkpoint import ModelMetadata
from densemtl_core.config import ExperimentConfig, load_config
from densemtl_core.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_COLORS
from densemtl_core.export.onnx import export_onnx
from densemtl_core.metrics import Meter
from densemtl_core.models import build_model
from densemtl_core.tasks import PublishedImage, TaskSpec
from densemtl_core.tasks.spec import (absolute_agreement, channels_last, finish_by_interpolation,
                                      mono8_to_probability, plain_map, probability_to_mono8,
                                      tensor_of, wrong_truth_encoding)

SIZE = (64, 80)
TASK_LIST = ("semseg", "depth", "saliency")


class SaliencyMeter(Meter):
    """Mean absolute error over the pixels, as additive sums."""

    main_metric = "mae"
    higher_is_better = False

    def _empty_state(self) -> dict[str, Tensor]:
        return {"error": torch.zeros((), dtype=torch.float64),
                "pixels": torch.zeros((), dtype=torch.int64)}

    def update(self, pred: Tensor, target: Tensor) -> None:
        self._accumulate(error=(pred - target).abs().sum().double(),
                         pixels=torch.tensor(target.numel()))

    def compute(self) -> dict[str, float]:
        pixels = int(self._state["pixels"])
        return {"mae": float(self._state["error"]) / pixels if pixels else float("nan")}


def _gray(prob: np.ndarray, _) -> np.ndarray:
    value = (np.clip(prob, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.repeat(value[..., None], 3, axis=-1)


def _read_truth(values: np.ndarray, encoding: str) -> np.ndarray:
    if encoding != "32FC1":
        raise wrong_truth_encoding("saliency", "must be 32FC1 in [0, 1]", encoding)
    return values.astype(np.float32, copy=False)


SALIENCY = TaskSpec(
    name="saliency", title="saliency", field="saliency",
    channels=lambda cfg: 1,
    loss=lambda output, target, cfg: F.binary_cross_entropy_with_logits(output, target),
    decode=lambda raw, _: raw.sigmoid(),
    meter=SaliencyMeter,
    update_meter=lambda meter, pred, target: meter.update(pred, target),
    render=_gray,
    to_display=channels_last,
    finish=finish_by_interpolation("saliency"),
    tolerance=(0.0, 1e-4),
    agreement=absolute_agreement,
    as_decoded=plain_map("saliency"),
    images=(PublishedImage("saliency", lambda values, _: (values, "mono8")),),
    meter_inputs=lambda pred, target: (torch.from_numpy(mono8_to_probability(pred))[None],
                                       tensor_of(target, np.float32)[None]),
    publish=lambda probability, _: probability_to_mono8(probability),
    published_display=mono8_to_probability,
    read_truth=_read_truth,
)


def saliency_of(image: np.ndarray) -> np.ndarray:
    """The task's ground truth: how bright each pixel is, in [0, 1]."""
    return (image.astype(np.float32).mean(axis=-1) / 255.0).astype(np.float32)


def saliency_config() -> ExperimentConfig:
    """A small three-task model with the saliency task, at :data:`SIZE`."""
    return load_config(None, ["model.arch=densemtl", f"model.tasks=[{', '.join(TASK_LIST)}]",
                              "model.width=0.125", f"data.image_size=[{SIZE[0]}, {SIZE[1]}]"])


def saliency_metadata(config: ExperimentConfig, step: int = 0) -> ModelMetadata:
    return ModelMetadata(config=config, class_names=SYNTHETIC_CLASSES,
                         class_colors=SYNTHETIC_COLORS, step=step)


def export_untrained_model(path: Path) -> Path:
    """An ONNX file of an untrained saliency model (seeded); needs the task in the table."""
    torch.manual_seed(0)
    config = saliency_config()
    model = build_model(config.model).eval()
    return export_onnx(model, saliency_metadata(config), path)
