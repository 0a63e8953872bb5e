"""The node's parameters: one table gives each its default, type, range or choices and meaning.

The table is the single source for the ROS parameter descriptors (what ``ros2 param describe``
shows), for validation at start and on ``ros2 param set`` (with the reason of a refusal), and
for :class:`NodeSettings`, the typed snapshot the processing thread reads. ``config/densemtl.yaml``
documents the same keys for users, and a test checks the two agree.

The ``publish.*`` switches come from the task table, read when asked (:func:`parameters`), so a
task added to the table after this module is imported still gets its switch when a node starts.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)

from densemtl_core.runtime import BACKENDS

from ..published import DEFAULT_OVERLAY_ALPHA, image_outputs, topic_suffix

Value = bool | int | float | str | tuple[str, ...]

RELIABILITIES = ("best_effort", "reliable")
RESOLUTIONS = ("input", "network")
CAMERA_OUTPUTS = ("camera_info", "points")
"""The outputs made from the calibration, after the tasks' images."""
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")
"""A relative ROS name: the camera's topics are ``<name>/image_raw``, ``<name>/camera_info``."""


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter. ``read_only``: it shapes the model, subscriptions or publishers, so it
    takes effect only at start; the others can be changed while the node runs."""

    name: str
    default: Value
    description: str
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None  # inclusive
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description,
                                         read_only=self.read_only)
        if isinstance(self.default, tuple):  # an empty default says nothing of the type
            descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
        if self.choices:
            descriptor.additional_constraints = f"one of: {', '.join(self.choices)}"
        if self.bounds is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.bounds[0]), to_value=float(self.bounds[1]), step=0.0)]
        elif self.bounds is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.bounds[0]), to_value=int(self.bounds[1]), step=1)]
        return descriptor

    def check(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None when it is acceptable."""
        if isinstance(self.default, tuple):
            return _check_names(self.name, value)
        if type(value) is not type(self.default):
            return (f"{self.name} must be a {type(self.default).__name__}, got "
                    f"{type(value).__name__} {value!r}")
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
        if self.bounds is not None and not (self.bounds[0] <= value <= self.bounds[1]):
            return f"{self.name} must lie in [{self.bounds[0]}, {self.bounds[1]}]; got {value}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} must be finite; got {value}"
        if self.name == "model.device" and not _DEVICE.fullmatch(value):
            return f"model.device must be auto, cpu, cuda or cuda:N; got {value!r}"
        return None


def _check_names(name: str, value: Any) -> str | None:
    """Why ``value`` is not a list of distinct camera names, or None."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        return f"{name} must be a list of strings, got {value!r}"
    for item in value:
        if not _CAMERA_NAME.fullmatch(item):
            return (f"{name}: {item!r} is not a relative ROS name (letters, digits and "
                    f"underscores, starting with a letter; / between parts)")
    if len(set(value)) != len(value):
        return f"{name} names a camera twice: {list(value)}"
    return None


def outputs() -> tuple[str, ...]:
    """Every output of the node: the tasks' images (from the task table as it is now), then
    the calibration and the point cloud."""
    return (*image_outputs(), *CAMERA_OUTPUTS)


_BEFORE_PUBLISH: tuple[ParameterSpec, ...] = (
    ParameterSpec("cameras", (), "Names of the cameras one network serves, batched: camera C "
                  "reads C/image_raw (C/image_raw/compressed) and C/camera_info and publishes "
                  "~/C/segmentation, ...; empty: one camera on image and camera_info, publishing "
                  "~/segmentation, ...", read_only=True),
    ParameterSpec("model.path", "", "Checkpoint (.safetensors), ONNX file or TensorRT engine "
                  "(.engine/.plan); empty: the shipped default model", read_only=True),
    ParameterSpec("model.backend", "auto", "Inference backend; auto: TensorRT for an engine on "
                  "a GPU, ONNX Runtime on CPU, PyTorch for a checkpoint on CUDA; openvino (on "
                  "the CPU) only when chosen",
                  choices=BACKENDS, read_only=True),
    ParameterSpec("model.engine_path", "", "TensorRT engine used instead of model.path (with "
                  "backend auto it falls back to the engine's ONNX file where TensorRT or a GPU "
                  "is missing); empty: none", read_only=True),
    ParameterSpec("model.device", "auto", "auto, cpu, cuda or cuda:N", read_only=True),
    ParameterSpec("model.threads", 0, "CPU threads of the network (ONNX Runtime intra-op, "
                  "OpenVINO); 0: all cores but one, which up-sampling and publishing use "
                  "meanwhile; all cores with several cameras",
                  bounds=(0, 256), read_only=True),
    ParameterSpec("model.rebuild_engine", False, "Rebuild a TensorRT engine built for another "
                  "GPU or TensorRT version (from its ONNX file) instead of refusing it",
                  read_only=True),
    ParameterSpec("relative_depth_scale", 0.0, "Metres per unit of a relative-depth model's "
                  "depth (model.depth_units relative): ~/depth and ~/points publish it times "
                  "this; 0: not given, and a relative depth is not published. A metric model "
                  "refuses any other value than 0", bounds=(0.0, 1000.0), read_only=True),
    ParameterSpec("input.compressed", False, "Subscribe to image/compressed "
                  "(sensor_msgs/CompressedImage, JPEG or PNG) instead of image", read_only=True),
    ParameterSpec("input.mono16_bits", 16, "Significant bits of mono16 and 16-bit Bayer "
                  "input (12 for a 12-bit sensor): shifted down to 8 bits", bounds=(8, 16)),
    ParameterSpec("input.max_pixels", 16_777_216, "Larger images are refused before any "
                  "memory is allocated for them", bounds=(1, 2**31 - 1)),
    ParameterSpec("qos.input.reliability", "best_effort", "Image and camera_info subscriptions "
                  "(best_effort matches camera drivers' sensor-data QoS and also receives from "
                  "reliable publishers)", choices=RELIABILITIES, read_only=True),
    ParameterSpec("qos.input.depth", 1, "Image subscription history depth; the node processes "
                  "only the latest frame anyway", bounds=(1, 100), read_only=True),
    ParameterSpec("qos.output.reliability", "reliable", "Output publishers",
                  choices=RELIABILITIES, read_only=True),
    ParameterSpec("qos.output.depth", 2, "Output publishers' history depth", bounds=(1, 100),
                  read_only=True),
    ParameterSpec("sync.window_ms", 0.0, "With several cameras: batch only frames whose "
                  "stamps lie within this many milliseconds of each other, waiting at most as "
                  "long for the others; 0: batch whatever is waiting", bounds=(0.0, 1000.0)),
    ParameterSpec("output.resolution", "input", "Resolution of every output map: the input "
                  "image's, or the network's (cheaper to compute and to send)",
                  choices=RESOLUTIONS),
)
_AFTER_PUBLISH: tuple[ParameterSpec, ...] = (
    ParameterSpec("color.overlay_alpha", DEFAULT_OVERLAY_ALPHA, "Weight of the class colours "
                  "over the input image in ~/segmentation/color; 1: colours only",
                  bounds=(0.0, 1.0)),
    ParameterSpec("points.stride", 4, "Use every N-th row and column of the depth map for "
                  "~/points", bounds=(1, 64)),
    ParameterSpec("points.max_depth", 10.0, "Points farther than this (metres) are left out of "
                  "~/points", bounds=(0.01, 1000.0)),
    ParameterSpec("diagnostics.period", 1.0, "Seconds between /diagnostics reports",
                  bounds=(0.1, 60.0), read_only=True),
    ParameterSpec("log_throttle", 5.0, "Seconds between repeated warnings of one kind (bad "
                  "frames, inference errors); every occurrence is still counted",
                  bounds=(0.0, 3600.0)),
)


def parameters() -> tuple[ParameterSpec, ...]:
    """Every parameter of the node, with a ``publish.*`` switch per output of :func:`outputs`."""
    switches = tuple(ParameterSpec(f"publish.{name}", True, f"Publish ~/{topic_suffix(name)} "
                                   f"(only when the model has the task and someone subscribes)")
                     for name in outputs())
    return (*_BEFORE_PUBLISH, *switches, *_AFTER_PUBLISH)


def parameter_specs() -> dict[str, ParameterSpec]:
    """:func:`parameters` by name."""
    return {spec.name: spec for spec in parameters()}


def check_parameters(values: Mapping[str, Any],
                     specs: Mapping[str, ParameterSpec] | None = None) -> str | None:
    """The first reason to refuse any of ``values`` (name -> value), or None; ``specs``: the
    parameters a node declared (default: :func:`parameter_specs`)."""
    specs = parameter_specs() if specs is None else specs
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            return f"unknown parameter {name}"
        reason = spec.check(value)
        if reason is not None:
            return reason
    return None


@dataclass(frozen=True)
class NodeSettings:
    """A consistent snapshot of the parameters, swapped whole when one changes, so the
    processing thread never sees half an update."""

    cameras: tuple[str, ...]
    model_path: str
    backend: str
    engine_path: str
    device: str
    threads: int
    rebuild_engine: bool
    relative_depth_scale: float
    compressed: bool
    mono16_bits: int
    max_pixels: int
    input_reliability: str
    input_depth: int
    output_reliability: str
    output_depth: int
    sync_window: float  # seconds
    resolution: str
    publish: frozenset[str]
    overlay_alpha: float
    points_stride: int
    points_max_depth: float
    diagnostics_period: float
    log_throttle: float

    @classmethod
    def from_values(cls, values: Mapping[str, Value]) -> "NodeSettings":
        return cls(
            cameras=tuple(values["cameras"]), model_path=values["model.path"],
            backend=values["model.backend"],
            engine_path=values["model.engine_path"], device=values["model.device"],
            threads=values["model.threads"], rebuild_engine=values["model.rebuild_engine"],
            relative_depth_scale=values["relative_depth_scale"],
            compressed=values["input.compressed"], mono16_bits=values["input.mono16_bits"],
            max_pixels=values["input.max_pixels"],
            input_reliability=values["qos.input.reliability"],
            input_depth=values["qos.input.depth"],
            output_reliability=values["qos.output.reliability"],
            output_depth=values["qos.output.depth"], sync_window=values["sync.window_ms"] / 1e3,
            resolution=values["output.resolution"],
            publish=frozenset(name.removeprefix("publish.") for name, value in values.items()
                              if name.startswith("publish.") and value),
            overlay_alpha=values["color.overlay_alpha"], points_stride=values["points.stride"],
            points_max_depth=values["points.max_depth"],
            diagnostics_period=values["diagnostics.period"], log_throttle=values["log_throttle"])
