"""PyTorch eager backend: the checkpoint's network on CPU or CUDA, optionally in half precision
and replayed from a CUDA graph."""
from __future__ import annotations

import torch
from torch import Tensor

from ..models.network import MultiTaskNet
from .errors import PredictorError
from .graph import InferenceGraph


class TorchBackend:
    """``half`` runs the network under CUDA autocast (float16); ``cuda_graph`` captures one
    CUDA graph per batch size on first use and replays it (static shapes, less launch overhead).
    """

    name = "torch"
    max_batch = None

    def __init__(self, model: MultiTaskNet, input_size: tuple[int, int],
                 device: torch.device = torch.device("cpu"), *, half: bool = False,
                 cuda_graph: bool = False) -> None:
        if (half or cuda_graph) and device.type != "cuda":
            raise PredictorError("half precision and CUDA graphs need a CUDA device "
                                 f"(device is {device})")
        self.input_size = tuple(input_size)
        self.device = device
        self.half = half
        self.graph = InferenceGraph(model).to(device).eval()
        self._captured: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, tuple[Tensor, ...]]] | None = (
            {} if cuda_graph else None)

    def _forward(self, batch: Tensor) -> tuple[Tensor, ...]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            return self.graph(batch)

    def _replay(self, batch: Tensor) -> tuple[Tensor, ...]:
        size = batch.shape[0]
        if size not in self._captured:
            static_input = batch.to(self.device, copy=True)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside capture, as CUDA graphs require
                for _ in range(3):
                    self._forward(static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_outputs = self._forward(static_input)
            self._captured[size] = (graph, static_input, static_outputs)
        graph, static_input, static_outputs = self._captured[size]
        static_input.copy_(batch, non_blocking=True)
        graph.replay()
        return static_outputs

    def run(self, batch: Tensor) -> dict[str, Tensor]:
        with torch.inference_mode():
            if self._captured is not None:
                outputs = self._replay(batch)
            else:
                outputs = self._forward(batch.to(self.device, non_blocking=True))
            return {task: value.float().cpu() for task, value in zip(self.graph.tasks, outputs)}
