import math

import pytest
import torch

from densemtl_core.config import OptimConfig
from densemtl_core.optim import (build_optimizer, build_scheduler, check_state_shapes,
                                 lr_factor)


def _groups():
    return {"backbone": [torch.nn.Parameter(torch.zeros(2))],
            "heads": [torch.nn.Parameter(torch.zeros(3))], "weighting": []}


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                       ("sgd", torch.optim.SGD)])
def test_backbone_gets_its_own_learning_rate(name, cls):
    optimizer = build_optimizer(_groups(), OptimConfig(optimizer=name, lr=1e-2, backbone_lr=1e-3))
    assert isinstance(optimizer, cls)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"backbone": 1e-3, "heads": 1e-2}  # empty groups are dropped


def test_schedules():
    step = OptimConfig(scheduler="step", step_size=10, gamma=0.1)
    assert lr_factor(9, 100, step) == 1.0 and lr_factor(10, 100, step) == pytest.approx(0.1)
    cosine = OptimConfig(scheduler="cosine")
    assert lr_factor(0, 100, cosine) == 1.0 and lr_factor(100, 100, cosine) == pytest.approx(0.0)
    assert lr_factor(50, 100, cosine) == pytest.approx(0.5)
    poly = OptimConfig(scheduler="poly", poly_power=0.9)
    assert lr_factor(50, 100, poly) == pytest.approx(0.5 ** 0.9)
    warm = OptimConfig(scheduler="constant", warmup_steps=4)
    assert [lr_factor(s, 100, warm) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_scheduler_steps_the_optimizer_lr():
    cfg = OptimConfig(lr=1.0, scheduler="cosine")
    optimizer = build_optimizer(_groups(), cfg)
    scheduler = build_scheduler(optimizer, 10, cfg)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def _stepped(groups):
    optimizer = build_optimizer(groups, OptimConfig())
    for group in groups.values():
        for parameter in group:
            parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    return optimizer


def test_a_state_of_other_shapes_is_named_when_loaded():
    """torch loads it (same number of tensors); the next step would fail inside AdamW."""
    wider = {"backbone": [torch.nn.Parameter(torch.zeros(4))],
             "heads": [torch.nn.Parameter(torch.zeros(3))]}
    optimizer = build_optimizer(_groups(), OptimConfig())
    optimizer.load_state_dict(_stepped(wider).state_dict())
    with pytest.raises(ValueError, match=r"optimizer state 'exp_avg' of parameter 0 in group "
                                         r"'backbone' has shape \(4,\), the parameter \(2,\)"):
        check_state_shapes(optimizer)
    same = build_optimizer(_groups(), OptimConfig())
    same.load_state_dict(_stepped(_groups()).state_dict())
    check_state_shapes(same)
