"""Which torch device a setting names on this machine: shared by training, evaluation and the
runtime, which must not import the distributed-training set-up to read a device name."""
from __future__ import annotations

import torch


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
