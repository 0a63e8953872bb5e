"""The shipped default model: where it lies and how to load it.

The default is the best small DenseMTL (SDNE) of the synthetic study (docs/RESULTS.md), stored
in half precision inside the package so that the node, the runtimes and the demo work without
training first. The runtime reads :data:`DEFAULT_MODEL`, so this module imports nothing of the
datasets or the evaluator; the check that the model still performs as recorded is
:mod:`densemtl_core.pretrained_check`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import ModelMetadata, load_checkpoint

DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "densemtl_sdne_small.safetensors"


def load_default_model(device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelMetadata]:
    """The shipped model in float32, ready for inference, and its metadata."""
    return load_checkpoint(DEFAULT_MODEL, device=device)
