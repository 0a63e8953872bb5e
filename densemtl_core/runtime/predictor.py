"""The Predictor: uint8 camera image in, predictions at the image's resolution out (depth in
the model's :attr:`Predictor.depth_units`).

It validates and resizes the image, runs a backend (PyTorch, ONNX Runtime or TensorRT) at the
network resolution and finishes the outputs, with the same pre- and post-processing whatever the
backend (``densemtl_core.runtime.processing``). A model exported with a camera size does that
processing in its graph (``densemtl_core.runtime.end_to_end``): the Predictor then only checks
the frames and wraps the graph's outputs. ``densemtl_core.runtime.loading`` builds one from a
model file.
"""
from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoint import ModelMetadata
from ..tasks import TASKS
from .backend import Backend
from .prediction import Prediction
from .processing import (as_rgb, camera_batch, check_camera_frames, end_to_end_maps,
                         finish_outputs, prepare_batch, single_threaded)


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent by one ``predict``/``predict_batch`` call in each stage."""

    preprocess: float
    network: float
    postprocess: float

    @property
    def total(self) -> float:
        return self.preprocess + self.network + self.postprocess

    @property
    def processing_share(self) -> float:
        """Fraction of the time spent outside the network (pre- plus post-processing)."""
        return (self.preprocess + self.postprocess) / self.total if self.total > 0 else 0.0


@dataclass(frozen=True)
class NetworkOutputs:
    """One image's decoded network outputs (task -> C x H x W at the network resolution) and
    the image's size: what :meth:`Predictor.run_network` hands to :meth:`Predictor.finish`.
    From an end-to-end graph, ``finished`` holds the finished maps instead (task -> array)."""

    decoded: dict[str, torch.Tensor]
    image_size: tuple[int, int]
    finished: dict[str, np.ndarray] | None = None


class Predictor:
    """A backend plus the shared pre/post-processing and the model's metadata.

    ``last_timings`` holds the stage timings of the latest call (for benchmarks and diagnostics).
    ``camera_size`` (H, W) is set when the backend runs an end-to-end graph: it takes frames of
    that size only, and its maps come at that size.
    """

    def __init__(self, backend: Backend, metadata: ModelMetadata) -> None:
        self.backend = backend
        self.metadata = metadata
        self.last_timings: StageTimings | None = None
        # Backends running an exported graph carry its description; PyTorch's runs the network.
        info = getattr(backend, "info", None)
        self.camera_size: tuple[int, int] | None = getattr(info, "camera_size", None)

    @property
    def input_size(self) -> tuple[int, int]:
        """The network resolution every image is resized to."""
        return tuple(self.backend.input_size)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.metadata.tasks

    @property
    def depth_units(self) -> str:
        """``metres``, or ``relative`` for a model whose depth is known only up to a scale per
        image (``model.depth_units``): predictions are in the model's units, never rescaled
        here, so a caller that promises metres must check this."""
        return self.metadata.config.model.depth_units

    def predict(self, rgb: np.ndarray, *, probabilities: bool = False,
                output_size: tuple[int, int] | None = None,
                tasks: Collection[str] | None = None) -> Prediction:
        """Predict the model's tasks for one uint8 image (HxWx3 RGB; HxW, HxWx1 grey and HxWx4
        RGBA are converted).

        ``probabilities`` also returns the class probabilities. ``output_size`` (height, width)
        gives the maps another resolution than the image's, e.g. the network's. ``tasks``
        finishes only those tasks (the others are ``None``): up-sampling is most of the
        post-processing cost, so a consumer that needs two maps should not pay for four.
        """
        return self.predict_batch([rgb], probabilities=probabilities, output_size=output_size,
                                  tasks=tasks)[0]

    def predict_batch(self, images: Sequence[np.ndarray], *, probabilities: bool = False,
                      output_size: tuple[int, int] | None = None,
                      tasks: Collection[str] | None = None) -> list[Prediction]:
        """:meth:`predict` for several images (sizes may differ), run in batches as large as
        the backend takes."""
        self._check_request(output_size, tasks, probabilities)
        began = time.perf_counter()
        rgbs = [as_rgb(image) for image in images]  # all checked before any runs
        if self.camera_size is not None:
            check_camera_frames(rgbs, self.camera_size)  # all checked before any runs
        spent = [time.perf_counter() - began, 0.0, 0.0]
        step = self.backend.max_batch or max(len(rgbs), 1)
        predictions = []
        with torch.inference_mode():
            for start in range(0, len(rgbs), step):
                chunk = rgbs[start:start + step]
                began = time.perf_counter()
                with single_threaded():
                    batch = self._batch(chunk)
                prepared = time.perf_counter()
                outputs = self.backend.run(batch)
                ran = time.perf_counter()
                with single_threaded():
                    for index, rgb in enumerate(chunk):
                        if self.camera_size is not None:
                            predictions.append(self._wrap(end_to_end_maps(outputs, index,
                                                                          tasks), tasks))
                            continue
                        decoded = {task: value[index] for task, value in outputs.items()}
                        predictions.append(self._finish(decoded, output_size or rgb.shape[:2],
                                                        probabilities, tasks))
                finished = time.perf_counter()
                spent[0] += prepared - began
                spent[1] += ran - prepared
                spent[2] += finished - ran
        self.last_timings = StageTimings(*spent)
        return predictions

    def run_network(self, rgb: np.ndarray) -> NetworkOutputs:
        """The first half of :meth:`predict`: checking, resizing and the network.

        With :meth:`finish`, a pipeline can up-sample one frame while the network runs on the
        next (the ROS node does); the two halves give exactly what :meth:`predict` gives.
        """
        return self.run_network_batch([rgb])[0]

    def run_network_batch(self, images: Sequence[np.ndarray]) -> list[NetworkOutputs]:
        """:meth:`run_network` for several images (sizes may differ; an end-to-end graph's
        must all be its camera size), run in batches as large as the backend takes: one
        network for several cameras."""
        rgbs = [as_rgb(image) for image in images]  # all checked before any runs
        if self.camera_size is not None:
            check_camera_frames(rgbs, self.camera_size)
        step = self.backend.max_batch or max(len(rgbs), 1)
        results = []
        with torch.inference_mode():
            for start in range(0, len(rgbs), step):
                chunk = rgbs[start:start + step]
                with single_threaded():
                    batch = self._batch(chunk)
                outputs = self.backend.run(batch)
                for index, rgb in enumerate(chunk):
                    size = tuple(rgb.shape[:2])
                    if self.camera_size is not None:  # the graph finished the maps
                        results.append(NetworkOutputs(decoded={}, image_size=size,
                                                      finished=end_to_end_maps(outputs, index)))
                        continue
                    # Owned copies: a backend may overwrite its output buffers on its next run.
                    results.append(NetworkOutputs(
                        decoded={task: value[index].clone() for task, value in outputs.items()},
                        image_size=size))
        return results

    def finish(self, outputs: NetworkOutputs, *, probabilities: bool = False,
               output_size: tuple[int, int] | None = None,
               tasks: Collection[str] | None = None) -> Prediction:
        """The second half of :meth:`predict` (same options) for :meth:`run_network`'s result."""
        self._check_request(output_size, tasks, probabilities)
        if outputs.finished is not None:
            return self._wrap(outputs.finished, tasks)
        with torch.inference_mode(), single_threaded():
            return self._finish(outputs.decoded, output_size or outputs.image_size,
                                probabilities, tasks)

    def _batch(self, rgbs: Sequence[np.ndarray]) -> torch.Tensor:
        """What the backend takes: uint8 camera frames for an end-to-end graph, else the
        resized float batch."""
        if self.camera_size is not None:
            return camera_batch(rgbs, self.camera_size)
        return prepare_batch(rgbs, self.input_size)

    def _check_request(self, output_size: tuple[int, int] | None,
                       tasks: Collection[str] | None, probabilities: bool) -> None:
        unknown = set(tasks or ()) - set(self.tasks)
        if unknown:
            raise ValueError(f"the model has no task {sorted(unknown)}; its tasks: {self.tasks}")
        if output_size is not None and (len(output_size) != 2 or min(output_size) < 1):
            raise ValueError(f"output_size must be (height, width) >= 1, got {output_size}")
        if self.camera_size is None:
            return
        if output_size is not None and tuple(output_size) != tuple(self.camera_size):
            raise ValueError(f"an end-to-end graph's maps come at its camera size "
                             f"{self.camera_size[0]}x{self.camera_size[1]}, not {output_size}; "
                             f"for other sizes use the model exported without --camera-size")
        if probabilities:
            raise ValueError("an end-to-end graph returns class ids, not class probabilities; "
                             "use the model exported without --camera-size")

    def _wrap(self, maps: dict[str, np.ndarray], tasks: Collection[str] | None) -> Prediction:
        """An end-to-end graph's finished maps (task -> array) as a Prediction of ``tasks``."""
        return Prediction(metadata=self.metadata, **{
            TASKS[task].field: value for task, value in maps.items()
            if tasks is None or task in tasks})

    def _finish(self, decoded: dict[str, torch.Tensor], size: Sequence[int], probabilities: bool,
                tasks: Collection[str] | None) -> Prediction:
        wanted = {task: value for task, value in decoded.items() if tasks is None or task in tasks}
        fields = finish_outputs(wanted, tuple(size), probabilities)
        return Prediction(metadata=self.metadata, **fields)
