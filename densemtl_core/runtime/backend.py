"""The one thing a backend does: run the inference graph on a batch at the network resolution."""
from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Backend(Protocol):
    name: str
    input_size: tuple[int, int]
    """Network input H x W: the predictor resizes every image to it."""
    max_batch: int | None
    """Largest batch one ``run`` takes (``None``: any)."""

    def run(self, batch: Tensor) -> dict[str, Tensor]:
        """Float32 CPU batch B x 3 x H x W in [0, 1] -> task -> decoded CPU float32 B x C x H x W.
        For an end-to-end graph (``info.camera_size`` set): uint8 camera frames B x H x W x 3 ->
        the graph's finished outputs (see :mod:`densemtl_core.runtime.end_to_end`).

        The returned tensors may share memory with buffers that the next call overwrites.
        """
        ...
