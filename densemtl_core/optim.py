"""Optimisers and learning-rate schedules from ``OptimConfig``."""
from __future__ import annotations

import math
from typing import Mapping

import torch

from .config import OptimConfig


def build_optimizer(groups: dict[str, list[torch.nn.Parameter]], cfg: OptimConfig,
                    learning_rates: Mapping[str, float] | None = None) -> torch.optim.Optimizer:
    """One parameter group per entry; the ``backbone`` group gets ``backbone_lr`` if set, a group
    named in ``learning_rates`` (an objective's pose network) that rate, every other ``lr``.

    Groups keep their name (``group["name"]``) so logs can show each learning rate.
    """
    rates = {"backbone": cfg.backbone_lr} if cfg.backbone_lr is not None else {}
    rates.update(learning_rates or {})
    param_groups = []
    for name, params in groups.items():
        if not params:
            continue
        lr = rates.get(name, cfg.lr)
        param_groups.append({"name": name, "params": params, "lr": lr})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(param_groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def check_state_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError when a loaded optimiser state holds a tensor shaped unlike its parameter.

    ``Optimizer.load_state_dict`` checks only how many parameters each group has, so the state
    of a network of another width loads without complaint and the first step fails deep inside
    the update; checked right after loading, the mismatch is named instead.
    """
    for group in optimizer.param_groups:
        for index, parameter in enumerate(group["params"]):
            for name, value in optimizer.state.get(parameter, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != parameter.shape:
                    raise ValueError(f"optimizer state {name!r} of parameter {index} in group "
                                     f"{group.get('name', '?')!r} has shape "
                                     f"{tuple(value.shape)}, the parameter "
                                     f"{tuple(parameter.shape)}")


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (stepped once per iteration)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    if cfg.scheduler == "step":
        return cfg.gamma ** (step // cfg.step_size)
    if cfg.scheduler == "poly":
        return (1.0 - progress) ** cfg.poly_power
    if cfg.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg))
