"""Single-process or torchrun/DistributedDataParallel execution, behind one small context."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


class DeviceError(RuntimeError):
    """The requested device is not a device name or does not exist on this machine."""


def resolve_device(preference: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` as a device of this
    machine; DeviceError (one line, for every entry point and the node) when it has none."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    unknown = f"unknown device {preference!r}; use auto, cpu, cuda or cuda:N"
    try:
        device = torch.device(preference)
    except RuntimeError as error:
        raise DeviceError(unknown) from error
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(unknown)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {preference!r} requested but CUDA is not available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"device {preference!r} requested but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else run alone.

    NCCL on CUDA, gloo on CPU; under torchrun each process takes the GPU of its ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_preference)
    if world_size <= 1:
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=device)


def all_reduce_sum_(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (no-op when running alone)."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
