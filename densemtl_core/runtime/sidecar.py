"""The sidecar next to a TensorRT engine: what it was built from, with and for.

A serialized engine only runs with the TensorRT version and on the GPU model it was built with.
Next to every engine ``X.engine`` sits ``X.engine.json`` (written by
:mod:`densemtl_core.export.tensorrt` with the engine): the hashes of the engine and of its ONNX
file, the TensorRT version, GPU name and compute capability, the precision of the ONNX graph
(the engine's: networks are strongly typed), the build settings and the model description. Loading compares it with the running machine and refuses a mismatch with the
exact command that rebuilds the engine here, instead of failing inside TensorRT with an opaque
deserialisation error. Plain Python: the checks run (and are tested) without TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import EngineMismatchError, ModelFileError
from .metadata import DeployedModelInfo

SIDECAR_FORMAT = "densemtl-engine"
SIDECAR_VERSION = 2
"""2: the precision is the graph's (strongly typed networks), no builder precision or
calibration cache in the settings. Format 1 sidecars (builder precision flags) are refused
with the command that rebuilds the engine, rather than read: their engine's precision was
not the graph's, and a rebuild from them would silently change it."""


@dataclass(frozen=True)
class BuildEnvironment:
    """What an engine is tied to: TensorRT version and GPU (name, compute capability "8.7")."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def describe(self) -> str:
        return (f"TensorRT {self.tensorrt_version} on {self.gpu_name} "
                f"(compute capability {self.compute_capability})")


@dataclass(frozen=True)
class BuildSettings:
    """How to build: builder workspace limit, optional DLA core (Jetson; unsupported layers
    fall back to the GPU; needs an fp16 or int8 graph) and the largest batch (needs an ONNX file
    exported with a dynamic batch when > 1). No precision: the engine takes the graph's."""

    workspace_mib: int = 1024
    dla_core: int | None = None
    max_batch: int = 1

    def __post_init__(self) -> None:
        if self.workspace_mib <= 0 or self.max_batch <= 0:
            raise ValueError("workspace_mib and max_batch must be positive")
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError(f"DLA core must be 0 or more, got {self.dla_core}")


@dataclass(frozen=True)
class EngineSidecar:
    """The JSON record next to an engine. ``onnx_path`` is relative to the engine's folder."""

    engine_sha256: str
    onnx_sha256: str
    onnx_path: str
    environment: BuildEnvironment
    settings: BuildSettings
    input_shape: tuple[int, int, int, int]
    model: DeployedModelInfo
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
                "engine_sha256": self.engine_sha256, "onnx_sha256": self.onnx_sha256,
                "onnx_path": self.onnx_path, **asdict(self.environment),
                "precision": self.model.precision, "settings": asdict(self.settings), "input_shape": list(self.input_shape),
                "created": self.created, "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, values: Any, source: str) -> "EngineSidecar":
        if not isinstance(values, dict) or values.get("format") != SIDECAR_FORMAT:
            raise ModelFileError(f"{source} is not a {SIDECAR_FORMAT} sidecar")
        version = values.get("format_version")
        if not isinstance(version, int) or version > SIDECAR_VERSION:
            raise ModelFileError(f"{source}: sidecar format version {version!r} is newer than "
                                 f"this library reads ({SIDECAR_VERSION}); upgrade densemtl_core")
        if version < SIDECAR_VERSION:
            raise ModelFileError(f"{source}: sidecar format version {version} is older than "
                                 f"this library reads ({SIDECAR_VERSION}); rebuild the engine")
        try:
            sidecar = cls(
                engine_sha256=str(values["engine_sha256"]), onnx_sha256=str(values["onnx_sha256"]),
                onnx_path=str(values["onnx_path"]),
                environment=BuildEnvironment(str(values["tensorrt_version"]),
                                             str(values["gpu_name"]),
                                             str(values["compute_capability"])),
                settings=BuildSettings(**values["settings"]),
                input_shape=tuple(int(v) for v in values["input_shape"]),
                model=DeployedModelInfo.from_dict(values["model"], source),
                created=str(values.get("created", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{source}: invalid engine sidecar: {error!r}") from error
        if values.get("precision", sidecar.model.precision) != sidecar.model.precision:
            raise ModelFileError(f"{source}: precision {values['precision']!r} contradicts the "
                                 f"model description ({sidecar.model.precision!r})")
        return sidecar


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise ModelFileError(f"TensorRT engine {engine_path} does not exist")
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ModelFileError(f"{engine_path} has no sidecar {path}, so nothing says which "
                             f"TensorRT and GPU it was built for; rebuild it with densemtl-export "
                             f"--onnx MODEL.onnx --engine {engine_path}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path} is not a readable JSON sidecar: {error}") from error
    if isinstance(values, dict) and values.get("format_version") == 1:
        _refuse_format_1(engine_path, path, values)
    return EngineSidecar.from_dict(values, str(path))


def _refuse_format_1(engine_path: Path, path: Path, values: dict[str, Any]) -> None:
    """Format 1 recorded builder precision flags (removed in TensorRT 11): say how to rebuild."""
    try:
        recorded = values["settings"]
        settings = BuildSettings(**{key: recorded[key] for key in
                                    ("workspace_mib", "dla_core", "max_batch") if key in recorded})
        onnx_path = engine_path.parent / str(values["onnx_path"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: invalid engine sidecar: {error!r}") from error
    raise ModelFileError(
        f"{engine_path} was built with TensorRT precision flags (sidecar format 1), which this "
        f"library no longer uses: engines now take the ONNX graph's precision (export fp16/int8 "
        f"graphs with densemtl-export --precision). Rebuild it with: "
        f"{_rebuild_words(engine_path, onnx_path, settings)}")


def onnx_location(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """The ONNX file an engine was built from, as recorded in its sidecar."""
    return Path(engine_path).parent / sidecar.onnx_path


def environment_mismatches(built: BuildEnvironment, running: BuildEnvironment) -> list[str]:
    """Human-readable differences that make an engine unusable here (empty: it fits)."""
    problems = []
    if built.tensorrt_version != running.tensorrt_version:
        problems.append(f"TensorRT version {built.tensorrt_version} != {running.tensorrt_version}")
    if built.compute_capability != running.compute_capability:
        problems.append(f"GPU compute capability {built.compute_capability} != "
                        f"{running.compute_capability}")
    if built.gpu_name != running.gpu_name:
        problems.append(f"GPU {built.gpu_name!r} != {running.gpu_name!r}")
    return problems


def rebuild_command(engine_path: str | Path, sidecar: EngineSidecar) -> str:
    """The exact ``densemtl-export`` call that rebuilds this engine with the same settings
    (the precision comes with the ONNX file)."""
    return _rebuild_words(Path(engine_path), onnx_location(engine_path, sidecar), sidecar.settings)


def _rebuild_words(engine_path: Path, onnx_path: Path, settings: BuildSettings) -> str:
    words = ["densemtl-export", "--onnx", str(onnx_path), "--engine", str(engine_path),
             "--workspace-mib", str(settings.workspace_mib)]
    if settings.max_batch != 1:
        words += ["--max-batch", str(settings.max_batch)]
    if settings.dla_core is not None:
        words += ["--dla-core", str(settings.dla_core)]
    return shlex.join(words)


def verify_engine(engine_path: str | Path, sidecar: EngineSidecar, running: BuildEnvironment) -> None:
    """Raise unless the engine file is intact, fits ``running`` and matches its ONNX file.

    A changed engine hash means a truncated or replaced file (ModelFileError); a different
    TensorRT or GPU, or an ONNX file changed since the build, means a rebuild
    (EngineMismatchError, whose message holds the command).
    """
    engine_path = Path(engine_path)
    if sha256_file(engine_path) != sidecar.engine_sha256:
        raise ModelFileError(f"{engine_path} is corrupt or was replaced: its sha256 differs from "
                             f"the one in {sidecar_path(engine_path)}; rebuild it with "
                             f"{rebuild_command(engine_path, sidecar)}")
    problems = environment_mismatches(sidecar.environment, running)
    onnx_path = onnx_location(engine_path, sidecar)
    if onnx_path.is_file() and sha256_file(onnx_path) != sidecar.onnx_sha256:
        problems.append(f"{onnx_path} changed since the engine was built")
    if problems:
        raise EngineMismatchError(
            f"{engine_path} was built for {sidecar.environment.describe()}; this machine has "
            f"{running.describe()} ({'; '.join(problems)}). Engines only run where they were "
            f"built. Rebuild it here with:\n  {rebuild_command(engine_path, sidecar)}\n"
            f"or load it with rebuild=True.")
