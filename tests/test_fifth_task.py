"""A task defined outside the library, given to the task table and nothing else, goes all the way:
training steps, ONNX export, the Predictor, the published maps and their scores.

The task is a one-channel "saliency" regression (tests/fifth_task.py); its head is built from
the table's channel count like every other task's. The node and the bag evaluation take it in
tests/ros/test_fifth_task_ros.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from densemtl_core.checkpoint import read_metadata, save_checkpoint
from densemtl_core.data.synthetic import render_scene, sample_to_tensors
from densemtl_core.export.accuracy import onnx_parity
from densemtl_core.export.onnx import export_onnx
from densemtl_core.losses import MultiTaskLoss
from densemtl_core.models import build_model
from densemtl_core.runtime import load_predictor
from densemtl_core.tasks import TASKS, extended
from densemtl_core.tasks.spec import probability_to_mono8
from densemtl_ros.published import published_image, published_maps
from densemtl_ros.bag_tools.scoring import FrameScorer, GroundTruth
from tests.fifth_task import (SALIENCY, SIZE, TASK_LIST, saliency_config, saliency_metadata,
                              saliency_of)


def _batch(seeds) -> dict[str, Tensor]:
    frames = [render_scene(seed, SIZE) for seed in seeds]
    samples = [sample_to_tensors(frame) for frame in frames]
    batch = {key: torch.stack([sample[key] for sample in samples])
             for key in ("image", "semseg", "depth")}
    batch["saliency"] = torch.stack([torch.from_numpy(saliency_of(f["image"]))[None]
                                     for f in frames])
    return batch


@pytest.fixture(scope="module")
def saliency_table():
    with extended(SALIENCY) as table:
        yield table
    assert "saliency" not in TASKS  # the table is restored


def test_a_fifth_task_trains_exports_predicts_publishes_and_scores(saliency_table, tmp_path):
    torch.manual_seed(0)
    config = saliency_config()
    model = build_model(config.model)
    assert model.heads["saliency"] is not None

    # Training: the table's loss, through the multi-task loss, goes down on a fixed batch.
    criterion = MultiTaskLoss(config.model.tasks, config.loss)
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=3e-3)
    batch = _batch(range(4))
    model.train()
    losses = []
    for _ in range(8):
        total, logs = criterion(model(batch["image"]), batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(logs["saliency"])
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]

    # Export: a graph output named after the task, within the table's tolerance of PyTorch.
    model.eval()
    metadata = saliency_metadata(config, step=8)
    checkpoint = save_checkpoint(tmp_path / "sal.safetensors", model, metadata)
    assert read_metadata(checkpoint).tasks == TASK_LIST
    onnx_path = export_onnx(model, metadata, tmp_path / "sal.onnx")
    images = [render_scene(seed, SIZE)["image"] for seed in (10, 11)]
    differences = onnx_parity(model, onnx_path, images)
    assert set(differences) == set(TASK_LIST)
    assert all(d.within_tolerance for d in differences.values()), differences

    # The Predictor: the task's finishing step up-samples it to the input, as a probability.
    predictor = load_predictor(onnx_path, backend="onnxruntime", device="cpu")
    frame = render_scene(12, (96, 120))
    prediction = predictor.predict(frame["image"])
    assert prediction.saliency.shape == (96, 120) and prediction.saliency.dtype == np.float32
    assert 0.0 <= prediction.saliency.min() <= prediction.saliency.max() <= 1.0
    assert prediction.segmentation.shape == (96, 120)  # the other tasks are unchanged

    # Published as the node publishes it (mono8), and scored against ground truth.
    maps = published_maps(prediction, predictor.metadata)
    pixels, encoding = published_image("saliency", maps, frame["image"],
                                       predictor.metadata.class_colors)
    assert encoding == "mono8" and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, probability_to_mono8(prediction.saliency))
    truth = saliency_of(frame["image"])
    scorer = FrameScorer(predictor.metadata)
    metrics = scorer.score(0, 0, maps, GroundTruth(saliency=truth))
    expected = np.abs(pixels.astype(np.float32) / 255.0 - truth).mean()
    assert metrics["saliency"]["mae"] == pytest.approx(expected, rel=1e-5)
    assert scorer.metrics()["saliency"]["mae"] == pytest.approx(expected, rel=1e-5)
