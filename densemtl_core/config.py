"""Typed configuration: YAML files and ``key=value`` overrides become frozen dataclasses.

A training set-up is one :class:`ExperimentConfig`; every part of the library receives the
section it needs (``ModelConfig`` for the network, ``DataConfig`` for the dataset, ...), never a
raw dict, so a typo in a YAML key fails at load time with the list of valid keys.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

TASK_NAMES: tuple[str, ...] = ("semseg", "depth", "normals", "edges")
"""Every task the library knows, in the canonical order used for fusion and outputs: the names
of the task table (``densemtl_core.tasks.TASKS``, which checks the two agree and extends both)."""

DATASET_NAMES: tuple[str, ...] = ("synthetic", "nyudv2", "cityscapes", "vkitti2", "synthia",
                                  "rosbag", "folder")
"""Every dataset ``densemtl_core.data.build_dataset`` can read."""

ROOTED_DATASETS: tuple[str, ...] = ("nyudv2", "cityscapes", "vkitti2", "synthia", "folder")
"""The datasets read from a folder named by ``data.root``."""

SYNTHETIC_DOMAINS: tuple[str, ...] = ("source", "shifted")
"""The looks of the synthetic scenes (``densemtl_core.data.synthetic.RENDER_DOMAINS``)."""

DEPTH_OUTPUTS: tuple[str, ...] = ("code", "disparity")
"""How the depth head's raw output encodes depth: ``code``, the method's linear inverse-depth code
(65536 / (100 z + 1), supervised settings), or ``disparity``, a sigmoid disparity spanning
[1 / max_depth, 1 / min_depth] (the method's self-supervised head, METHOD.md section 7.1)."""

DEPTH_UNITS: tuple[str, ...] = ("metres", "relative")
"""What a model's depth means: metres (REP 118), or depth known only up to one unknown scale per
image (self-supervised from a monocular camera without odometry)."""


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says which key and why."""


@dataclass(frozen=True)
class ModelConfig:
    """The network: which architecture, which tasks, and how the exchange block is built.

    ``arch``: ``stl`` (one task, one head), ``mtl`` (shared encoder, separate heads, no exchange),
    ``densemtl`` (heads exchanging features through cross-task attention) or ``padnet`` (PAD-Net:
    intermediate predictions, then gated multi-modal distillation; ``densemtl_core.models.padnet``).
    """

    arch: str = "densemtl"
    tasks: tuple[str, ...] = TASK_NAMES
    num_classes: int = 8
    backbone: str = "resnet18"
    width: float = 1.0
    """Channel multiplier applied to the encoder, the decoder and the exchange block."""
    dilation: tuple[bool, bool, bool] = (False, False, True)
    """torchvision's ``replace_stride_with_dilation`` for layer2, layer3, layer4."""
    pretrained: str | None = None
    """Local file with ImageNet weights in torchvision's ResNet state-dict layout."""
    head: str = "unet_aspp"
    """``unet_aspp`` (the method's padnet+ decoder) or ``deeplab`` (the method's STL baseline)."""
    decoder_channels: tuple[int, int, int, int, int] = (64, 128, 128, 256, 256)
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.5
    output_scales: tuple[int, ...] = (0, 1)
    exchange_scale: int = 1
    exchange_branches: tuple[str, ...] = ("sa", "sxtam")
    """Any non-empty subset of ``sa`` (gated self-attention) and ``sxtam`` (spatial cross-task)."""
    fusion: str = "add"
    """How each target fuses its incoming directional features: ``add``, ``prod`` or ``concat``."""
    attention_downsample: int | None = None
    """SxTAM down-sampling factor r; ``None`` takes the method's value for ``exchange_scale``."""
    sxtam_alpha_init: float = 0.0
    """Initial per-channel SxTAM scale alpha. The method starts at 0; SxTAM without SA only
    trains from a non-zero start (see ``densemtl_core.models.xtam.XTAM``)."""
    input_mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    input_std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    min_depth: float = 0.1
    max_depth: float = 80.0
    depth_output: str = "code"
    """``code`` or ``disparity`` (see ``DEPTH_OUTPUTS``)."""
    initial_depth: float | None = None
    """Depth a fresh disparity head predicts everywhere (its output biases); ``None`` keeps the
    method's default initialisation, a disparity of 0.5 (0.2 m for a 0.1-100 m range), which
    warps neighbouring frames so far that the photometric loss gives no direction."""
    depth_units: str = "metres"
    """``metres`` or ``relative`` (see ``DEPTH_UNITS``): a relative model's depth is scored with
    per-image median scaling and never published as metres without a scale."""
    paper_compat: bool = False
    """Reproduce the released code's quirks (METHOD.md section 9) instead of the correct behaviour."""
    decoder_width: float = 1.0
    """Channel multiplier of the task heads only (decoder, ASPP, and so the exchange block), on
    top of ``width``: a naive MTL with wider heads matches DenseMTL's FLOPs."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to read and at which resolution."""

    dataset: str = "synthetic"
    root: str | None = None
    """Root folder of a public dataset (unused by ``synthetic``)."""
    label_set: str | None = None
    """Named class set of the dataset; ``None`` is its default (Cityscapes: ``trainid19``, the
    official 19 classes; ``method16`` gives the method's 16)."""
    image_size: tuple[int, int] = (128, 160)
    """Network input size (H, W); both must be divisible by 16."""
    train_length: int = 2000
    val_length: int = 100
    test_length: int = 200
    seed: int = 0
    """Dataset seed: which scenes exist (synthetic) or how the 80/20 train/val split of
    Synthia and Virtual KITTI 2 falls; independent of the training seed."""
    hflip: bool = True
    color_jitter: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    num_workers: int = 0
    cache: bool = True
    """Keep rendered samples of the synthetic scenes in memory after first use."""
    # -- recordings (``rosbag``) and image folders (``folder``) --------------------------------
    bag: tuple[str, ...] = ()
    """rosbag2 folders or files (mcap, sqlite3) or ROS 1 ``.bag`` files, combined in this order;
    one path may be given as a plain string (``data.bag=run1``)."""
    image_topic: str | None = None
    """Camera topic, ``sensor_msgs/Image`` or ``CompressedImage``."""
    camera_info_topic: str | None = None
    """Its ``CameraInfo``; ``None``: ``camera_info`` beside the image topic."""
    intrinsics: str | None = None
    """A camera_info YAML file (the ROS calibration format) that replaces recorded intrinsics;
    the intrinsics of image folders."""
    truth_topics: dict[str, str] = field(default_factory=dict)
    """Task -> ground-truth topic (``semseg``, ``depth``, ``normals``) where a recording has one."""
    label_map: str | None = None
    """YAML mapping recorded class ids to the model's (as ``densemtl-bag-eval --label-map``)."""
    odometry_topic: str | None = None
    """``nav_msgs/Odometry`` topic, or ``/tf`` with ``odometry_frame``: gives metric scale and
    lets near-static frames be skipped."""
    odometry_frame: str | None = None
    """On ``/tf``: the moving frame whose transform from its fixed parent is the odometry."""
    frame_stride: int = 1
    """Temporal samples take frames t - stride, t, t + stride."""
    min_motion: float = 0.0
    """Metres the odometry must move between neighbouring frames of a temporal sample."""
    min_image_change: float = 0.0
    """Mean absolute grey-level change (0..1) neighbouring frames must show, without odometry."""
    max_gap: float | None = None
    """Seconds between frames that end a stretch of recording; ``None``: 3 x the median interval."""
    frame_rate: float = 10.0
    """Frames per second assumed for image folders (sequences by file order)."""
    val_fraction: float = 0.1
    """Share of a recording's time blocks held out for validation."""
    split_block: float = 10.0
    """Seconds per time block of the train/val split (neighbouring frames would leak)."""
    index_dir: str | None = None
    """Folder for a recording's frame index; ``None``: next to the bag."""
    domain: str = "source"
    """Look of the synthetic scenes: ``source`` (the default renderer) or ``shifted`` (another
    camera, light and materials over the same classes: a target domain for adaptation)."""


@dataclass(frozen=True)
class LossConfig:
    task_weights: dict[str, float] = field(default_factory=dict)
    """Per-task weight; missing tasks weigh 1."""
    weighting: str = "fixed"
    """``fixed`` (``task_weights``) or ``uncertainty`` (learned, Kendall et al. 2018)."""
    edge_class_weights: tuple[float, float] = (0.05, 0.95)
    berhu_threshold: float = 0.2
    scales: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Task -> output scales its supervised loss averages over; missing tasks use them all (the
    method's self-supervised set-up supervises segmentation at scales 0 and 2)."""


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"
    """``adamw``, ``adam`` or ``sgd``."""
    lr: float = 3e-4
    backbone_lr: float | None = None
    """Learning rate of the encoder; ``None`` uses ``lr``."""
    weight_decay: float = 1e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.98)
    scheduler: str = "cosine"
    """``constant``, ``step`` (``step_size``/``gamma``), ``poly`` or ``cosine``."""
    step_size: int = 30000
    gamma: float = 0.1
    poly_power: float = 0.9
    warmup_steps: int = 0
    grad_clip: float | None = 10.0


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    seed: int = 42
    val_every: int = 250
    """Validate every N steps; 0: only at the end (a run always ends with a validation)."""
    log_every: int = 10
    amp: bool = True
    """Mixed precision; only ever used on CUDA."""
    device: str = "auto"
    output_dir: str = "runs/default"
    checkpoint_every: int = 0
    """Also write a resumable checkpoint every N steps (0: only at validation and the end)."""
    threads: int | None = None

    init_from: str | None = None
    """Start from the weights of this checkpoint (``default``: the shipped model) instead of
    from scratch: the same network, fresh optimisers, step 0 (adapting a trained model to a
    camera takes fewer steps than training one anew)."""
    validate_on: str = "source"
    """Whose validation split scores checkpoints: ``source`` (``data``) or ``target`` (the
    target's labelled validation split, as the method evaluates adaptation on Cityscapes val;
    the objectives never read those labels)."""
    precision: str = "float32"
    """``bfloat16`` runs the network's forward pass under CPU autocast (1.34x the images/s
    of a CPU with AVX-512 BF16; losses, gradients and weights stay float32); ``float32`` is
    exact and resumes bit for bit. CUDA runs follow ``amp`` instead."""

@dataclass(frozen=True)
class PhotometricConfig:
    """Depth learnt from video without depth labels (the method's SDE, METHOD.md section 7.1):
    the neighbouring frames, warped into the current one through the predicted depth and the
    pose network's motion, must reproduce it."""

    enabled: bool = False
    weight: float = 1.0
    scales: tuple[int, ...] = (0, 1, 2, 3)
    """Depth output scales, each up-sampled to the input size before warping."""
    ssim_weight: float = 0.85
    """Per-pixel error = w (1 - SSIM) / 2 + (1 - w) L1."""
    smoothness_weight: float = 1e-3
    """Edge-aware smoothness of the mean-normalised disparity, weighted by this / 2^scale."""
    automask: bool = True
    """Identity-reprojection auto-masking (pixels a static source explains better drop out)."""
    pyramid: bool = False
    """Compare each scale at its own resolution (frames area-averaged, intrinsics scaled) instead
    of up-sampling every disparity to the input (the method's way): coarse scales then guide
    depth from far off, where high-frequency textures leave the full-resolution loss with many
    false minima."""
    reprojection: str = "min"
    """Combine the source frames' errors per pixel by their ``min`` or ``mean``."""
    metric_scale: str = "none"
    """``none`` (depth up to scale: set ``model.depth_units=relative``) or ``odometry`` (the pose
    network's translation length is supervised with the recording's odometry: metric depth)."""
    odometry_weight: float = 1.0
    pose_backbone: str = "resnet18"
    pose_width: float = 1.0
    pose_lr: float | None = None
    """Learning rate of the pose network; ``None`` uses ``optim.lr``."""


@dataclass(frozen=True)
class AdversarialConfig:
    """Output-space adversarial alignment on unlabelled target images (the method's MTL-UDA,
    METHOD.md section 7.2): per (task, scale), a discriminator learns to tell source maps from
    target maps, and the network learns to make its target maps pass as source ones."""

    enabled: bool = False
    weight: float = 0.005
    """Weight of the network's adversarial loss, itself averaged over (task, scale)."""
    scales: tuple[int, ...] = (0, 1)
    """Output scales aligned, each with its own discriminators."""
    lr: float = 1e-4
    """Adam learning rate of the discriminators."""
    betas: tuple[float, float] = (0.9, 0.99)
    poly_power: float = 0.9
    """The discriminators' rate decays as (1 - step / steps) ** poly_power."""
    width: float = 1.0
    """Channel multiplier of the discriminators (1: the method's 64, 128, 256, 512). Sized for
    a ResNet-101 network, at 1 they cost a small network several times its own compute."""


PSEUDO_LABELLED_TASKS = ("semseg", "depth", "normals")
"""Tasks the self-training teacher can label."""


@dataclass(frozen=True)
class SelfTrainingConfig:
    """Self-training on unlabelled target images (after DAFormer): a teacher, the exponential
    moving average of the network, labels weakly augmented target images; the network learns
    those pseudo-labels on strongly augmented views of them."""

    enabled: bool = False
    weight: float = 1.0
    tasks: tuple[str, ...] = ("semseg", "depth", "normals")
    """Tasks learnt from the teacher's pseudo-labels (those the model has)."""
    ema: float = 0.999
    """The teacher's momentum: teacher = ema * teacher + (1 - ema) * network, after each step
    (lower early on: min(ema, 1 - 1 / (updates + 1)))."""
    threshold: float = 0.968
    """Softmax confidence above which a pseudo-label counts; an image's segmentation loss is
    weighted by the share of its pixels above it, and the regression pseudo-targets are learnt
    on those pixels only."""
    class_mix: bool = True
    """Paste half the classes of a source image onto each target image (ClassMix), with their
    labels, before the strong augmentation."""
    color_jitter: float = 0.2
    """Strength of the strong view's random brightness, contrast and saturation changes."""
    blur: float = 1.0
    """Largest sigma (pixels) of the strong view's Gaussian blur, drawn per image; 0: none."""


@dataclass(frozen=True)
class ObjectivesConfig:
    """What the network learns from, composed by the trainer: the supervised losses of the tasks
    with labels, and the objectives that need none."""

    supervised: tuple[str, ...] | None = None
    """Tasks learnt from labels; ``None``: every model task no other objective learns."""
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    target: DataConfig | None = None
    """Images of the domain the network adapts to (objectives.adversarial, self_training). Only
    their images are read in training, never their labels (``train.validate_on`` may score
    checkpoints with the target's validation labels)."""

    def adapts(self) -> bool:
        """Whether an objective learns from the target's images."""
        return self.objectives.adversarial.enabled or self.objectives.self_training.enabled

    def supervised_tasks(self) -> tuple[str, ...]:
        """The tasks whose labels are learnt: ``objectives.supervised``, or every model task
        but depth when depth is learnt photometrically."""
        if self.objectives.supervised is not None:
            return self.objectives.supervised
        learnt_otherwise = {"depth"} if self.objectives.photometric.enabled else set()
        return tuple(task for task in self.model.tasks if task not in learnt_otherwise)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to the dataclass field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    if origin is tuple:
        if isinstance(value, str) and args == (str, Ellipsis):
            value = [value]  # ``data.bag=run1``: one path where a list may stand
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args
        return {_coerce(k, key_type, where): _coerce(v, value_type, f"{where}.{k}")
                for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):  # no setting means anything at NaN or infinity
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def _parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load``; a syntax error becomes a one-line ConfigError naming ``source``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{source} is not valid YAML: {' '.join(problem.split())}{where}"
                          ) from error


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), _parse_yaml(raw, f"override {text!r}")


def _set_nested(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part} is not a section")
        tree = node
    tree[path[-1]] = value


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    config = _build(ExperimentConfig, values, "")
    validate(config)
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
                ) -> ExperimentConfig:
    """Read a YAML set-up (or the defaults) and apply ``section.key=value`` overrides.

    A YAML file may name a ``base:`` file (relative to itself) whose values it overrides.
    """
    values = _read_yaml_with_base(Path(path), ()) if path is not None else {}
    for override in overrides:
        _set_nested(values, *_parse_override(override))
    return config_from_dict(values)


def _read_yaml_with_base(path: Path, extending: tuple[Path, ...]) -> dict[str, Any]:
    """The values of ``path`` over those of its ``base:`` chain; ``extending`` lists the files
    that named ``path`` as their base, so a chain that comes back to one of them is an error
    rather than an endless recursion."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in {p.resolve() for p in extending}:
        chain = " -> ".join(str(p) for p in (*extending, path))
        raise ConfigError(f"{extending[-1]}: base files form a cycle: {chain}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})"
                          ) from error
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    values = _parse_yaml(text, str(path)) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must name a YAML file, got {base!r}")
    merged = _read_yaml_with_base(path.parent / base, (*extending, path))
    _deep_update(merged, values)
    return merged


def _deep_update(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-serialisable form (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(dataclasses.asdict(config))


def config_differences(first: Any, second: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (first value, second value) for every setting two configs of one type
    disagree on, e.g. ``{"model.width": (0.5, 1.0)}``."""
    differences: dict[str, tuple[Any, Any]] = {}
    for item in dataclasses.fields(first):
        key = f"{prefix}{item.name}"
        mine, theirs = getattr(first, item.name), getattr(second, item.name)
        if dataclasses.is_dataclass(mine) and type(mine) is type(theirs):
            differences.update(config_differences(mine, theirs, f"{key}."))
        elif mine != theirs:
            differences[key] = (mine, theirs)
    return differences


def validate(config: ExperimentConfig) -> None:
    """Cross-field checks that a type annotation cannot express."""
    validate_model(config.model)
    _validate_data(config.data, "data")
    if config.target is not None:
        _validate_data(config.target, "target")
    _validate_objectives(config)
    if config.loss.weighting not in ("fixed", "uncertainty"):
        raise ConfigError("loss.weighting must be fixed or uncertainty")
    stray = set(config.loss.task_weights) - set(TASK_NAMES)
    if stray:
        raise ConfigError(f"loss.task_weights names unknown task(s) {sorted(stray)}")
    optim = config.optim
    if optim.optimizer not in ("adamw", "adam", "sgd"):
        raise ConfigError("optim.optimizer must be adamw, adam or sgd")
    if optim.scheduler not in ("constant", "step", "poly", "cosine"):
        raise ConfigError("optim.scheduler must be constant, step, poly or cosine")
    _check_at_least(optim, "optim", 0, "lr", "backbone_lr", "weight_decay", "momentum",
                    "warmup_steps", "grad_clip")
    _check_at_least(optim, "optim", 1, "step_size")
    if not all(0 <= beta < 1 for beta in optim.betas):
        raise ConfigError(f"optim.betas must lie in [0, 1), got {list(optim.betas)}")
    _check_at_least(config.train, "train", 1, "steps", "batch_size", "log_every", "threads")
    _check_at_least(config.train, "train", 0, "val_every", "checkpoint_every")
    _check_choice("train.validate_on", config.train.validate_on, ("source", "target"))
    _check_choice("train.precision", config.train.precision, ("float32", "bfloat16"))
    if config.train.validate_on == "target" and config.target is None:
        raise ConfigError("train.validate_on=target needs a target (the config's target section)")


def _validate_data(data: DataConfig, key: str) -> None:
    """One dataset section (``data``, or ``target``), named ``key`` in errors."""
    _check_choice(f"{key}.dataset", data.dataset, DATASET_NAMES)
    _check_choice(f"{key}.domain", data.domain, SYNTHETIC_DOMAINS)
    if data.dataset in ROOTED_DATASETS and not data.root:
        raise ConfigError(f"{key}.root must name the {data.dataset} root folder")
    if data.dataset == "rosbag" and not (data.bag and data.image_topic):
        raise ConfigError(f"{key}.dataset=rosbag needs {key}.bag (one or more recordings) and "
                          f"{key}.image_topic")
    _check_at_least(data, key, 1, "frame_stride")
    _check_at_least(data, key, 0, "min_motion", "min_image_change", "max_gap", "num_workers")
    if not data.frame_rate > 0 or not data.split_block > 0:
        raise ConfigError(f"{key}.frame_rate and {key}.split_block must be positive")
    if not 0 <= data.val_fraction < 1:
        raise ConfigError(f"{key}.val_fraction must lie in [0, 1), got {data.val_fraction}")
    stray_truth = set(data.truth_topics) - set(TASK_NAMES)
    if stray_truth:
        raise ConfigError(f"{key}.truth_topics names unknown task(s) {sorted(stray_truth)}")
    height, width = data.image_size
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise ConfigError(f"{key}.image_size {data.image_size} must be positive multiples of 16")


def validate_model(model: ModelConfig) -> None:
    """The network's own settings, whatever it is trained with (``build_model`` checks these)."""
    if not model.tasks:
        raise ConfigError("model.tasks must name at least one task")
    unknown = [t for t in model.tasks if t not in TASK_NAMES]
    if unknown:
        raise ConfigError(f"model.tasks: unknown task(s) {unknown}; known: {list(TASK_NAMES)}")
    if len(set(model.tasks)) != len(model.tasks):
        raise ConfigError(f"model.tasks lists a task twice: {list(model.tasks)}")
    if model.arch not in ("stl", "mtl", "densemtl", "padnet"):
        raise ConfigError(f"model.arch must be stl, mtl, densemtl or padnet, got {model.arch!r}")
    if model.arch == "stl" and len(model.tasks) != 1:
        raise ConfigError("model.arch=stl takes exactly one task")
    if model.arch in ("densemtl", "padnet") and len(model.tasks) < 2:
        raise ConfigError(f"model.arch={model.arch} needs at least two tasks to exchange features")
    if model.fusion not in ("add", "prod", "concat"):
        raise ConfigError(f"model.fusion must be add, prod or concat, got {model.fusion!r}")
    if not model.exchange_branches or set(model.exchange_branches) - {"sa", "sxtam"}:
        raise ConfigError("model.exchange_branches must be a non-empty subset of [sa, sxtam]")
    if model.backbone not in ("resnet18", "resnet34", "resnet50", "resnet101"):
        raise ConfigError(f"model.backbone must be resnet18/34/50/101, got {model.backbone!r}")
    if model.width <= 0:
        raise ConfigError("model.width must be positive")
    if model.decoder_width <= 0:
        raise ConfigError("model.decoder_width must be positive")
    if model.head not in ("unet_aspp", "deeplab"):
        raise ConfigError(f"model.head must be unet_aspp or deeplab, got {model.head!r}")
    if model.head == "deeplab" and model.arch == "densemtl":
        raise ConfigError("model.head=deeplab has no decoder stages to exchange features in")
    if model.head == "deeplab" and model.arch == "padnet":
        raise ConfigError("model.head=deeplab: model.arch=padnet builds PAD-Net's own heads")
    if not model.output_scales or any(s not in range(5) for s in model.output_scales):
        raise ConfigError("model.output_scales must be a non-empty subset of 0..4")
    if model.exchange_scale not in range(5):
        raise ConfigError("model.exchange_scale must be in 0..4")
    if not 0 < model.min_depth < model.max_depth:
        raise ConfigError("model.min_depth and model.max_depth need 0 < min < max")
    if model.initial_depth is not None and not (
            model.min_depth < model.initial_depth < model.max_depth
            and model.depth_output == "disparity"):
        raise ConfigError("model.initial_depth needs model.depth_output=disparity and a value "
                          "between model.min_depth and model.max_depth")
    _check_choice("model.depth_output", model.depth_output, DEPTH_OUTPUTS)
    _check_choice("model.depth_units", model.depth_units, DEPTH_UNITS)


def _validate_objectives(config: ExperimentConfig) -> None:
    """The objectives fit the model: each learns tasks the model has, on scales it outputs."""
    model, objectives = config.model, config.objectives
    stray_scales = {task: scales for task, scales in config.loss.scales.items()
                    if task not in TASK_NAMES or not set(scales) <= set(model.output_scales)
                    or not scales}
    if stray_scales:
        raise ConfigError(f"loss.scales {stray_scales}: each task must be known and name a "
                          f"non-empty subset of model.output_scales {list(model.output_scales)}")
    supervised = config.supervised_tasks()
    if set(supervised) - set(model.tasks):
        raise ConfigError(f"objectives.supervised names task(s) the model lacks: "
                          f"{sorted(set(supervised) - set(model.tasks))}")
    if "depth" in supervised and model.depth_output != "code":
        raise ConfigError("supervised depth needs model.depth_output=code; the disparity head "
                          "is learnt by objectives.photometric")
    _validate_adversarial(objectives.adversarial, model)
    _validate_adaptation(config)
    photometric = objectives.photometric
    if not photometric.enabled:
        if not supervised:
            raise ConfigError("no objective: objectives.supervised is empty and "
                              "objectives.photometric is off")
        return
    if "depth" not in model.tasks:
        raise ConfigError("objectives.photometric learns depth: model.tasks must include depth")
    if "depth" in supervised:
        raise ConfigError("objectives.photometric learns depth, so depth cannot also be in "
                          "objectives.supervised (recorded depth still scores validation)")
    if model.depth_output != "disparity":
        raise ConfigError("objectives.photometric needs model.depth_output=disparity (the "
                          "method's sigmoid disparity head)")
    if not photometric.scales or not set(photometric.scales) <= set(model.output_scales):
        raise ConfigError(f"objectives.photometric.scales {list(photometric.scales)} must be a "
                          f"non-empty subset of model.output_scales {list(model.output_scales)}")
    if photometric.reprojection not in ("min", "mean"):
        raise ConfigError("objectives.photometric.reprojection must be min or mean")
    if photometric.metric_scale not in ("none", "odometry"):
        raise ConfigError("objectives.photometric.metric_scale must be none or odometry")
    expected_units = "relative" if photometric.metric_scale == "none" else "metres"
    if model.depth_units != expected_units:
        raise ConfigError(f"objectives.photometric.metric_scale={photometric.metric_scale} "
                          f"learns depth in {expected_units}: set "
                          f"model.depth_units={expected_units}")
    if not 0 <= photometric.ssim_weight <= 1:
        raise ConfigError("objectives.photometric.ssim_weight must lie in [0, 1]")
    _check_at_least(photometric, "objectives.photometric", 0, "weight", "smoothness_weight",
                    "odometry_weight", "pose_lr")
    if photometric.pose_backbone not in ("resnet18", "resnet34", "resnet50", "resnet101"):
        raise ConfigError("objectives.photometric.pose_backbone must be resnet18/34/50/101")
    if photometric.pose_width <= 0:
        raise ConfigError("objectives.photometric.pose_width must be positive")


def _validate_adversarial(adversarial: AdversarialConfig, model: ModelConfig) -> None:
    """The discriminators' settings, and scales the model outputs when the objective is on."""
    _check_at_least(adversarial, "objectives.adversarial", 0, "weight", "poly_power")
    if not adversarial.width > 0:
        raise ConfigError(f"objectives.adversarial.width must be positive, "
                          f"got {adversarial.width!r}")
    if not adversarial.lr > 0:
        raise ConfigError(f"objectives.adversarial.lr must be positive, got {adversarial.lr!r}")
    if not all(0 <= beta < 1 for beta in adversarial.betas):
        raise ConfigError(f"objectives.adversarial.betas must lie in [0, 1), "
                          f"got {list(adversarial.betas)}")
    if adversarial.enabled and (not adversarial.scales
                                or not set(adversarial.scales) <= set(model.output_scales)):
        raise ConfigError(f"objectives.adversarial.scales {list(adversarial.scales)} must be a "
                          f"non-empty subset of model.output_scales {list(model.output_scales)}")


def _validate_adaptation(config: ExperimentConfig) -> None:
    """A target exactly when an objective learns from it, and self-training that fits it."""
    if config.adapts() and config.target is None:
        raise ConfigError("objectives.adversarial and objectives.self_training learn from target "
                          "images: give the config a target section (e.g. target.dataset=rosbag "
                          "target.bag=... target.image_topic=...)")
    if config.target is not None and not config.adapts():
        raise ConfigError("the config names a target, but no objective learns from it: enable "
                          "objectives.adversarial or objectives.self_training")
    cfg = config.objectives.self_training
    _check_at_least(cfg, "objectives.self_training", 0, "weight", "color_jitter", "blur")
    if not 0 <= cfg.ema < 1 or not 0 <= cfg.threshold < 1:
        raise ConfigError("objectives.self_training.ema and threshold must lie in [0, 1)")
    if set(cfg.tasks) - set(PSEUDO_LABELLED_TASKS):
        raise ConfigError(f"objectives.self_training.tasks must be among "
                          f"{list(PSEUDO_LABELLED_TASKS)}, got {list(cfg.tasks)}")
    if not cfg.enabled:
        return
    if not set(cfg.tasks) & set(config.model.tasks):
        raise ConfigError(f"objectives.self_training.tasks {list(cfg.tasks)} names none of "
                          f"model.tasks {list(config.model.tasks)}")
    if cfg.class_mix and "semseg" not in config.supervised_tasks():
        raise ConfigError("objectives.self_training.class_mix pastes source classes: it needs "
                          "supervised semseg")
    if cfg.class_mix and config.target.image_size != config.data.image_size:
        raise ConfigError(f"objectives.self_training.class_mix pastes source pixels onto target "
                          f"images: target.image_size {list(config.target.image_size)} must "
                          f"equal data.image_size {list(config.data.image_size)}")


def _check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def _check_at_least(section: Any, name: str, minimum: int, *keys: str) -> None:
    """Each of ``keys`` in ``section`` is None (where allowed) or at least ``minimum``; NaN
    fails too, since every comparison with it is false."""
    for key in keys:
        value = getattr(section, key)
        if value is not None and not value >= minimum:
            raise ConfigError(f"{name}.{key} must be at least {minimum}, got {value!r}")
