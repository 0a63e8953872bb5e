"""PAD-Net (``model.arch: padnet``): shapes, gradients, the supervision of its intermediate
predictions through the supervised objective, and the cross-task flow of the distillation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from densemtl_core.config import TASK_NAMES, ConfigError, LossConfig, ModelConfig, load_config
from densemtl_core.data import build_dataset
from densemtl_core.losses import MultiTaskLoss
from densemtl_core.models import build_model

REPO = Path(__file__).resolve().parents[2]
CHANNELS = {"semseg": 5, "depth": 1, "normals": 3, "edges": 2}


def _config(**overrides) -> ModelConfig:
    values = dict(arch="padnet", tasks=TASK_NAMES, num_classes=5, width=0.125,
                  output_scales=(0, 4))
    values.update(overrides)
    return ModelConfig(**values)


def _image(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, 64, 80, generator=torch.Generator().manual_seed(seed))


def test_final_predictions_at_input_size_and_intermediate_ones_at_the_encoders():
    model = build_model(_config())
    outputs = model(_image())
    assert list(outputs) == list(TASK_NAMES)
    for task, by_scale in outputs.items():
        assert list(by_scale) == [0, 4]
        assert by_scale[0].shape == (2, CHANNELS[task], 64, 80)
        assert by_scale[4].shape == (2, CHANNELS[task], 4, 5)
    sum(o.sum() for by_scale in outputs.values() for o in by_scale.values()).backward()
    no_gradient = [name for name, p in model.named_parameters()
                   if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_gradient


def _real_batch() -> dict[str, torch.Tensor]:
    config = load_config(REPO / "config/train/synthetic_padnet_sdne.yaml")
    dataset = build_dataset(config.data, "val")
    return default_collate([dataset[index] for index in range(2)])


def test_intermediate_predictions_enter_the_supervised_loss_and_only_theirs_change():
    """Moving the intermediate classifier of one task leaves every final prediction as it was,
    yet changes the supervised loss: the intermediate predictions are supervised."""
    torch.manual_seed(0)
    model = build_model(_config(num_classes=8)).eval()
    batch = _real_batch()
    objective = MultiTaskLoss(TASK_NAMES, LossConfig())
    with torch.no_grad():
        before = model(batch["image"])
        loss_before, _ = objective(before, batch)
        model.heads["normals"].side_heads["4"].bias.add_(0.5)
        after = model(batch["image"])
        loss_after, log = objective(after, batch)
    for task in TASK_NAMES:
        torch.testing.assert_close(after[task][0], before[task][0], rtol=0, atol=0)
    assert not torch.equal(after["normals"][4], before["normals"][4])
    assert loss_after.item() != pytest.approx(loss_before.item(), rel=1e-6)
    only_final, _ = MultiTaskLoss(TASK_NAMES, LossConfig(
        scales={task: (0,) for task in TASK_NAMES}))(after, batch)
    assert only_final.item() != pytest.approx(loss_after.item(), rel=1e-6)


def test_distillation_carries_every_other_tasks_feature_into_each_final_prediction():
    model = build_model(_config(tasks=("semseg", "depth", "normals"))).eval()
    image = _image(batch=1)
    with torch.no_grad():
        before = model(image)
        for parameter in model.heads["depth"].initial.parameters():
            parameter.add_(0.1)
        after = model(image)
    assert not torch.equal(after["depth"][4], before["depth"][4])
    for task in ("semseg", "normals"):  # own intermediate unchanged, final reached by depth's
        torch.testing.assert_close(after[task][4], before[task][4], rtol=0, atol=0)
        assert not torch.equal(after[task][0], before[task][0])
    gates = model.exchange.gates
    assert sorted(gates) == sorted(f"{s}_to_{t}" for t in ("semseg", "depth", "normals")
                                   for s in ("semseg", "depth", "normals") if s != t)
    assert all(gate.out_channels == 32 for gate in gates.values())  # full width, as PAD-Net


def test_padnet_settings_are_checked():
    with pytest.raises(ValueError, match=r"model.output_scales must be \[0, 4\]"):
        build_model(_config(output_scales=(0, 1)))
    with pytest.raises(ValueError, match=r"must be \[0, 3\]"):
        build_model(_config(dilation=(False, True, True)))
    with pytest.raises(ConfigError, match="model.arch=padnet needs at least two tasks"):
        build_model(_config(tasks=("depth",)))
    with pytest.raises(ConfigError, match="padnet builds PAD-Net's own heads"):
        build_model(_config(head="deeplab"))
