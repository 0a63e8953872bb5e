"""Checkpoints: one safetensors file holding the weights and the model's JSON metadata.

The metadata (tasks, classes, input size and normalisation, depth range, the full experiment
config, metrics) sits in the safetensors header, so a checkpoint is self-describing: the
network is rebuilt from it without being told anything else. Loading never unpickles: weights
come from safetensors, and the optional resume state is read with ``weights_only=True``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from . import __version__
from .config import ConfigError, DataConfig, ExperimentConfig, config_from_dict, config_to_dict

FORMAT_NAME = "densemtl-checkpoint"
FORMAT_VERSION = 1
_METADATA_KEY = "densemtl"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, from an unsupported version, or does not fit the model."""


@dataclass
class ModelMetadata:
    """Everything downstream consumers need to use a trained network without extra flags."""

    config: ExperimentConfig
    class_names: tuple[str, ...] = ()
    class_colors: tuple[tuple[int, int, int], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    library_version: str = __version__
    created: str = ""

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.config.model.tasks

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.data.image_size

    def display_info(self) -> dict[str, Any]:
        """What colouring the model's maps takes besides the maps (a task's ``render``): the
        class colours and the depth range."""
        model = self.config.model
        return {"class_colors": self.class_colors,
                "depth_range": (model.min_depth, model.max_depth)}

    def to_dict(self) -> dict[str, Any]:
        model = self.config.model
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "library_version": self.library_version,
            "created": self.created or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "step": self.step,
            "tasks": list(model.tasks),
            "num_classes": model.num_classes,
            "class_names": list(self.class_names),
            "class_colors": [list(c) for c in self.class_colors],
            "input_size": list(self.input_size),
            "input_mean": list(model.input_mean),
            "input_std": list(model.input_std),
            "depth_range": [model.min_depth, model.max_depth],
            "metrics": self.metrics,
            "trained_on": self.trained_on(),
            "config": config_to_dict(self.config),
        }

    def trained_on(self) -> dict[str, Any]:
        """Where the network's images came from, at a glance: the source it learnt from and
        the target it was adapted to (None when it was not)."""
        target = self.config.target if self.config.adapts() else None
        return {"source": data_origin(self.config.data),
                "target": None if target is None else data_origin(target)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelMetadata":
        if values.get("format") != FORMAT_NAME:
            raise CheckpointError(f"not a densemtl checkpoint (format={values.get('format')!r})")
        version = values.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format version {version!r} is newer than this library supports "
                f"({FORMAT_VERSION}); upgrade densemtl_core")
        try:
            config = config_from_dict(values["config"])
        except (KeyError, ConfigError) as error:
            raise CheckpointError(f"checkpoint metadata holds an invalid config: {error}") from error
        return cls(
            config=config,
            class_names=tuple(values.get("class_names", ())),
            class_colors=tuple(tuple(c) for c in values.get("class_colors", ())),
            metrics=values.get("metrics", {}),
            step=int(values.get("step", 0)),
            library_version=values.get("library_version", ""),
            created=values.get("created", ""),
        )


def data_origin(data: DataConfig) -> dict[str, Any]:
    """The settings of ``data`` that name where its images come from."""
    origin: dict[str, Any] = {"dataset": data.dataset}
    if data.dataset == "synthetic":
        origin["domain"] = data.domain
    elif data.dataset == "rosbag":
        origin.update(bag=list(data.bag), image_topic=data.image_topic)
    else:
        origin["root"] = data.root
    return origin


def save_checkpoint(path: str | Path, model: torch.nn.Module, metadata: ModelMetadata,
                    dtype: torch.dtype | None = None) -> Path:
    """Write weights + metadata atomically (a crash never leaves a half-written checkpoint).

    ``dtype=torch.float16`` stores floating-point weights in half precision (shipping); integer
    buffers such as BatchNorm's step counter keep their type.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    header = {_METADATA_KEY: json.dumps(metadata.to_dict(), sort_keys=True)}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=header)
    partial.replace(path)
    return path


def read_metadata(path: str | Path) -> ModelMetadata:
    """The metadata of a checkpoint, without reading its weights."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {error}") from error
    if _METADATA_KEY not in header:
        raise CheckpointError(f"{path} has no densemtl metadata; was it written by save_checkpoint?")
    try:
        values = json.loads(header[_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: metadata is not valid JSON: {error}") from error
    return ModelMetadata.from_dict(values)


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load a checkpoint's weights into ``model``; any missing, extra or reshaped tensor fails
    (before any weight is read)."""
    path = _existing(path)
    expected = model.state_dict()
    _check_tensor_shapes(path, {name: tuple(value.shape) for name, value in expected.items()})
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {error}") from error
    for name, tensor in tensors.items():
        tensors[name] = tensor.to(expected[name].dtype)
    model.load_state_dict(tensors, strict=True)


MAX_INPUT_PIXELS = 2048 * 2048
"""Largest network input a checkpoint may declare: eight times the method's largest set-up
(512 x 1024), twice Cityscapes at its full 1024 x 2048."""

MAX_ATTENTION_TOKENS = 32768
"""Most tokens a cross-task attention may have at the declared input size: its matrix holds
their square, 4 GiB of float32 per image and task pair here (the method's Cityscapes set-up has
8192 tokens, 256 MiB)."""


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[torch.nn.Module, ModelMetadata]:
    """Rebuild the network from the checkpoint's metadata and load its weights (eval mode).

    The metadata alone decides how large the network and its activations are, so it is checked
    before anything is allocated: the network is first laid out on torch's ``meta`` device
    (shapes, no memory) and every parameter's shape compared with the tensors in the file's
    header, and the input size is held to :data:`MAX_INPUT_PIXELS` and
    :data:`MAX_ATTENTION_TOKENS`. A 2 MB file claiming ``model.width: 64`` is refused here
    instead of building a network hundreds of thousands of times its size.
    """
    from .models import build_model

    path = _existing(path)
    metadata = read_metadata(path)
    config = _without_pretrained(metadata.config).model
    try:
        with torch.device("meta"):
            layout = build_model(config)
    except ValueError as error:
        raise CheckpointError(f"{path}: its metadata describes no valid network: {error}"
                              ) from error
    _check_tensor_shapes(path, {name: tuple(value.shape)
                                for name, value in layout.state_dict().items()})
    _check_input_size(path, metadata.input_size, layout.attention_tokens(metadata.input_size))
    model = build_model(config)
    load_weights(path, model)
    return model.to(device).eval(), metadata


def _check_tensor_shapes(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """CheckpointError unless the file holds exactly the ``expected`` tensor names and shapes,
    read from the safetensors header (no tensor is loaded)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {error}") from error
    reshaped = [f"{name} {list(expected[name])} in the metadata, {list(found[name])} in the file"
                for name in sorted(set(expected) & set(found)) if expected[name] != found[name]]
    details = []
    for label, items in (("shape mismatch", reshaped),
                         ("missing", sorted(set(expected) - set(found))),
                         ("unexpected", sorted(set(found) - set(expected)))):
        if items:
            more = f", and {len(items) - 2} more" if len(items) > 2 else ""
            details.append(f"{label}: {', '.join(items[:2])}{more}")
    if details:
        raise CheckpointError(f"{path} does not fit the model described by its metadata "
                              f"({'; '.join(details)})")


def _check_input_size(path: Path, size: tuple[int, int], attention_tokens: int) -> None:
    height, width = size
    if height * width > MAX_INPUT_PIXELS:
        raise CheckpointError(f"{path}: its metadata declares a {height}x{width} network input, "
                              f"over the limit of {MAX_INPUT_PIXELS} pixels")
    if attention_tokens > MAX_ATTENTION_TOKENS:
        raise CheckpointError(f"{path}: its metadata declares a cross-task attention over "
                              f"{attention_tokens} tokens at the {height}x{width} input, over the "
                              f"limit of {MAX_ATTENTION_TOKENS}")


def _without_pretrained(config: ExperimentConfig) -> ExperimentConfig:
    """The trained weights replace any ImageNet initialisation: never read that file again."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=None))


def training_state_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".train-state.pt")


def save_training_state(checkpoint: str | Path, state: dict[str, Any]) -> Path:
    """Optimizer, scheduler, step and RNG states next to a checkpoint, for ``--resume``."""
    path = training_state_path(checkpoint)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)
    return path


def load_training_state(checkpoint: str | Path) -> dict[str, Any]:
    path = _existing(training_state_path(checkpoint))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a corrupt pickle
        reason = str(error).partition("\n")[0]  # torch's own text runs over many lines
        raise CheckpointError(f"{path} is not a readable training state: {reason}") from error


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path
