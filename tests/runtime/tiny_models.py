"""Small random-weight checkpoints and their ONNX exports, shared by the runtime and export tests.

Fixtures here are imported by the conftest files of tests/runtime and tests/export.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from densemtl_core.checkpoint import ModelMetadata, load_checkpoint, save_checkpoint
from densemtl_core.config import TASK_NAMES, ModelConfig, load_config
from densemtl_core.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_COLORS
from densemtl_core.depth_coding import encode_inverse_depth
from densemtl_core.export.onnx import export_onnx
from densemtl_core.models import build_model

TINY_SIZE = (64, 80)


def make_checkpoint(path: Path, tasks: tuple[str, ...] = TASK_NAMES, arch: str = "densemtl",
                    overrides: tuple[str, ...] = (), seed: int = 0) -> Path:
    """A width-0.125 ResNet-18 model at 64x80 whose outputs exercise every decoding path."""
    config = load_config(None, [f"model.arch={arch}", f"model.tasks=[{', '.join(tasks)}]",
                                "model.width=0.125", "model.max_depth=20.0",
                                f"data.image_size=[{TINY_SIZE[0]}, {TINY_SIZE[1]}]", *overrides])
    torch.manual_seed(seed)
    model = build_model(config.model)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, *TINY_SIZE))  # non-trivial BatchNorm running statistics
        for name, parameter in model.named_parameters():
            if name.endswith(".alpha"):  # open the cross-task attention branch
                parameter.fill_(0.5)
        if "depth" in tasks:  # centre the depth head on 2 m, inside the depth range
            head = model.heads["depth"]
            final = head.classifier if config.model.head == "deeplab" else head.side_heads["0"]
            final.bias.add_(_raw_depth(2.0, config.model))
    metadata = ModelMetadata(config=config, class_names=SYNTHETIC_CLASSES,
                             class_colors=SYNTHETIC_COLORS, step=3)
    return save_checkpoint(path, model.eval(), metadata)


def _raw_depth(metres: float, model: ModelConfig) -> torch.Tensor:
    """The depth head's raw output that decodes to ``metres``."""
    if model.depth_output == "disparity":  # the inverse of tasks.depth.disparity_to_depth
        low, high = 1.0 / model.max_depth, 1.0 / model.min_depth
        return torch.logit(torch.tensor((1.0 / metres - low) / (high - low)))
    return encode_inverse_depth(torch.tensor(metres))


RELATIVE_DISPARITY = ("model.depth_output=disparity", "model.depth_units=relative",
                      "objectives.photometric.enabled=true", "objectives.photometric.scales=[0, 1]")
"""Overrides of a model whose depth head is the self-supervised disparity, in relative units."""


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny models run hundreds of very small operators; with more threads each waits at an
    OpenMP barrier, which on a busy machine costs far more than the work itself."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _once(tmp_path_factory, name: str, make) -> Path:
    """Both test folders import the fixtures below: the session's files are made only once."""
    path = tmp_path_factory.getbasetemp() / name
    return path if path.is_file() else make(path)


@pytest.fixture(scope="session")
def four_task_checkpoint(tmp_path_factory) -> Path:
    return _once(tmp_path_factory, "sdne.safetensors", make_checkpoint)


@pytest.fixture(scope="session")
def four_task_onnx(four_task_checkpoint, tmp_path_factory) -> Path:
    model, metadata = load_checkpoint(four_task_checkpoint)
    return _once(tmp_path_factory, "sdne.onnx", lambda path: export_onnx(model, metadata, path))


@pytest.fixture(scope="session")
def two_task_checkpoint(tmp_path_factory) -> Path:
    return _once(tmp_path_factory, "sd.safetensors",
                 lambda path: make_checkpoint(path, tasks=("semseg", "depth"), arch="mtl"))
