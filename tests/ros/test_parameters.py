"""The parameter table: ROS descriptors, validation, and agreement with config/densemtl.yaml."""
import math
import re
from pathlib import Path

import pytest
import yaml
from rclpy.node import Node
from rclpy.parameter import Parameter

from densemtl_core.runtime import BACKENDS
from densemtl_ros.node.densemtl_node import NODE_NAME, DenseMTLNode
from densemtl_ros.node.parameters import (RELIABILITIES, RESOLUTIONS, NodeSettings, check_parameters,
                                     outputs, parameter_specs, parameters)

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "densemtl.yaml"
OUTPUTS = outputs()
PARAMETERS = parameters()
SPECS = parameter_specs()
SPEC_IDS = [spec.name for spec in PARAMETERS]
BOUNDED = [spec for spec in PARAMETERS if spec.bounds is not None]
INTEGERS = [spec for spec in PARAMETERS if type(spec.default) is int]
FLOATS = [spec for spec in PARAMETERS if type(spec.default) is float]
BOOLS = [spec for spec in PARAMETERS if type(spec.default) is bool]
STRINGS = [spec for spec in PARAMETERS if type(spec.default) is str]
CHOICES = [spec for spec in PARAMETERS if spec.choices]
READ_ONLY = {spec.name for spec in PARAMETERS if spec.read_only}
NODE_KEY = f"/**/{NODE_NAME}"
"""The params file's top-level key: the node named densemtl in any namespace."""


def ids(specs):
    return [spec.name for spec in specs]


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_document() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def config_values() -> dict:
    document = config_document()
    assert list(document) == [NODE_KEY], "the file configures the node named densemtl"
    assert list(document[NODE_KEY]) == ["ros__parameters"]
    return flatten(document[NODE_KEY]["ros__parameters"])


# -- the table itself ---------------------------------------------------------------------------

def test_table_is_consistent():
    assert len(SPECS) == len(PARAMETERS), "parameter names are unique"
    for spec in PARAMETERS:
        assert type(spec.default) in (bool, int, float, str, tuple), spec.name
        assert spec.description.strip(), spec.name
        assert not (spec.choices and spec.bounds), spec.name
        if spec.bounds is not None:
            assert type(spec.default) in (int, float), spec.name
            assert spec.bounds[0] <= spec.default <= spec.bounds[1], spec.name
        if spec.choices:
            assert spec.default in spec.choices, spec.name
    assert {f"publish.{name}" for name in OUTPUTS} <= set(SPECS)
    assert SPECS["model.backend"].choices == BACKENDS
    assert SPECS["qos.input.reliability"].choices == RELIABILITIES
    assert SPECS["output.resolution"].choices == RESOLUTIONS


@pytest.mark.parametrize("spec", PARAMETERS, ids=SPEC_IDS)
def test_descriptor(spec):
    descriptor = spec.descriptor()
    assert descriptor.name == spec.name
    assert descriptor.description == spec.description
    assert descriptor.read_only is spec.read_only
    if spec.bounds is not None and type(spec.default) is float:
        assert len(descriptor.floating_point_range) == 1
        assert len(descriptor.integer_range) == 0
        (floating,) = descriptor.floating_point_range
        assert (floating.from_value, floating.to_value) == (spec.bounds[0], spec.bounds[1])
        assert floating.step == 0.0  # any value in the range, not a lattice
    elif spec.bounds is not None:
        assert len(descriptor.integer_range) == 1
        assert len(descriptor.floating_point_range) == 0
        (integer,) = descriptor.integer_range
        assert (integer.from_value, integer.to_value) == (spec.bounds[0], spec.bounds[1])
        assert integer.step == 1
    else:
        assert len(descriptor.integer_range) == 0
        assert len(descriptor.floating_point_range) == 0
    if spec.choices:
        listed = descriptor.additional_constraints.removeprefix("one of: ").split(", ")
        assert listed == list(spec.choices)
    else:
        assert descriptor.additional_constraints == ""


def test_read_only_parameters():
    """What shapes the model, the subscriptions or the publishers is fixed at start."""
    assert READ_ONLY == {
        "cameras", "model.path", "model.backend", "model.engine_path", "model.device", "model.threads",
        "model.rebuild_engine", "relative_depth_scale", "input.compressed",
        "qos.input.reliability", "qos.input.depth", "qos.output.reliability",
        "qos.output.depth", "diagnostics.period"}


# -- check(): refusals --------------------------------------------------------------------------

def wrong_types(spec):
    """Values of every other parameter type (bool is not an int here, an int not a float)."""
    candidates = {bool: True, int: 1, float: 1.0, str: "1"}
    return [value for kind, value in candidates.items() if kind is not type(spec.default)]


@pytest.mark.parametrize("spec", PARAMETERS, ids=SPEC_IDS)
def test_check_refuses_wrong_types(spec):
    for value in wrong_types(spec) + [None, [spec.default]]:
        reason = spec.check(value)
        assert reason is not None, f"{spec.name} accepted {value!r}"
        assert spec.name in reason
        assert ("list" if isinstance(spec.default, tuple) else type(spec.default).__name__
                ) in reason


@pytest.mark.parametrize("spec", BOUNDED, ids=ids(BOUNDED))
def test_check_refuses_out_of_range(spec):
    low, high = spec.bounds
    kind = type(spec.default)
    step = 1 if kind is int else max(1e-6, 1e-6 * (high - low))
    for value in (kind(low - step), kind(high + step), kind(low - 1000), kind(high * 10 + 1)):
        reason = spec.check(value)
        assert reason is not None, f"{spec.name} accepted {value!r}"
        assert spec.name in reason and str(value) in reason


@pytest.mark.parametrize("spec", FLOATS, ids=ids(FLOATS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_check_refuses_non_finite(spec, value):
    reason = spec.check(value)
    assert reason is not None, f"{spec.name} accepted {value}"
    assert spec.name in reason


@pytest.mark.parametrize("spec", CHOICES, ids=ids(CHOICES))
def test_check_refuses_bad_choices(spec):
    for value in ("", "gpu", spec.choices[0].upper(), spec.choices[0] + " ", "none"):
        if value in spec.choices:
            continue
        reason = spec.check(value)
        assert reason is not None, f"{spec.name} accepted {value!r}"
        assert spec.name in reason
        assert all(choice in reason for choice in spec.choices), reason


@pytest.mark.parametrize("device", ["cuda:x", "gpu", "cuda:", "cuda0", "CPU", "cuda:-1",
                                    "cuda:0:1", "cpu ", " cpu", "", "cpu\n", "mps"])
def test_check_refuses_bad_devices(device):
    reason = SPECS["model.device"].check(device)
    assert reason is not None, f"model.device accepted {device!r}"
    assert "model.device" in reason


# -- check(): acceptance ------------------------------------------------------------------------

@pytest.mark.parametrize("spec", PARAMETERS, ids=SPEC_IDS)
def test_check_accepts_defaults(spec):
    assert spec.check(spec.default) is None


@pytest.mark.parametrize("spec", BOUNDED, ids=ids(BOUNDED))
def test_check_accepts_edges(spec):
    kind = type(spec.default)
    low, high = spec.bounds
    for value in (kind(low), kind(high)):
        assert spec.check(value) is None, f"{spec.name} refused {value!r}"


@pytest.mark.parametrize("spec", CHOICES, ids=ids(CHOICES))
def test_check_accepts_every_choice(spec):
    for choice in spec.choices:
        assert spec.check(choice) is None


@pytest.mark.parametrize("spec", BOOLS, ids=ids(BOOLS))
def test_check_accepts_both_booleans(spec):
    assert spec.check(True) is None and spec.check(False) is None


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:15"])
def test_check_accepts_devices(device):
    assert SPECS["model.device"].check(device) is None


def test_free_strings_accept_paths():
    for name in ("model.path", "model.engine_path"):
        assert SPECS[name].check("/opt/models/densemtl.onnx") is None
        assert SPECS[name].check("") is None


# -- check_parameters ---------------------------------------------------------------------------

def test_check_parameters_accepts_all_defaults():
    assert check_parameters({spec.name: spec.default for spec in PARAMETERS}) is None
    assert check_parameters({}) is None


@pytest.mark.parametrize("name, value", [
    ("points.stride", 0), ("points.stride", 65), ("points.stride", 4.0),
    ("points.max_depth", 0.0), ("points.max_depth", 10), ("color.overlay_alpha", 1.5),
    ("log_throttle", -1.0), ("model.device", "cuda:x"), ("model.backend", "gpu"),
    ("output.resolution", "half"), ("publish.depth", 1), ("input.mono16_bits", 7),
    ("input.max_pixels", 0), ("qos.output.reliability", "best-effort"),
])
def test_check_parameters_names_the_parameter(name, value):
    values = {spec.name: spec.default for spec in PARAMETERS}
    values[name] = value
    reason = check_parameters(values)
    assert reason is not None
    assert name in reason


def test_check_parameters_refuses_unknown_names():
    reason = check_parameters({"points.stride": 4, "points.strides": 4})
    assert reason is not None and "points.strides" in reason


# -- the descriptors work with rclpy itself -----------------------------------------------------

def test_descriptors_declare_and_enforce_in_rclpy(ros):
    node = Node("densemtl_parameter_probe")
    try:
        for spec in PARAMETERS:
            declared = node.declare_parameter(spec.name, spec.default, spec.descriptor())
            assert declared.value == spec.default and type(declared.value) is type(spec.default)
        described = node.describe_parameters(["points.stride", "model.backend"])
        assert described[0].integer_range[0].to_value == 64
        assert "onnxruntime" in described[1].additional_constraints
        # rclpy enforces the ranges and read-only flags of the descriptors on its own.
        results = node.set_parameters([
            Parameter("points.stride", value=0), Parameter("color.overlay_alpha", value=2.0),
            Parameter("model.device", value="cpu"), Parameter("points.stride", value=64),
            Parameter("color.overlay_alpha", value=1.0)])
        assert [result.successful for result in results] == [False, False, False, True, True]
        assert node.get_parameter("points.stride").value == 64
        assert node.get_parameter("model.device").value == "auto"
    finally:
        node.destroy_node()


# -- config/densemtl.yaml -----------------------------------------------------------------------

def test_config_has_exactly_the_table_keys():
    values = config_values()
    assert set(values) == set(SPECS), (
        f"missing in the YAML: {sorted(set(SPECS) - set(values))}; "
        f"unknown in the YAML: {sorted(set(values) - set(SPECS))}")


@pytest.mark.parametrize("spec", PARAMETERS, ids=SPEC_IDS)
def test_config_value_matches_default(spec):
    value = config_values()[spec.name]
    if isinstance(spec.default, tuple):  # a string array: a YAML list
        value = tuple(value)
    assert type(value) is type(spec.default), (
        f"{spec.name}: {value!r} is a {type(value).__name__} in the YAML, the node declares a "
        f"{type(spec.default).__name__} (write floats with a decimal point)")
    assert value == spec.default


def test_config_builds_settings():
    values = config_values()
    assert check_parameters(values) is None
    settings = NodeSettings.from_values(values)
    assert settings.publish == frozenset(OUTPUTS)
    assert (settings.model_path, settings.backend, settings.device) == ("", "auto", "auto")
    assert (settings.points_stride, settings.points_max_depth) == (4, 10.0)
    assert (settings.input_reliability, settings.output_reliability) == ("best_effort",
                                                                         "reliable")
    assert settings.overlay_alpha == 0.5 and settings.diagnostics_period == 1.0
    assert settings.max_pixels == 16_777_216 and settings.mono16_bits == 16


def test_settings_follow_publish_switches():
    values = config_values()
    values["publish.points"] = values["publish.edges"] = False
    settings = NodeSettings.from_values(values)
    assert settings.publish == frozenset(OUTPUTS) - {"points", "edges"}


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_/*][\w/*]*):(?P<value>[^#]*)(?P<comment>#.*)?$")


def start_markers() -> dict[str, bool]:
    """Leaf key (dotted, below ros__parameters) -> whether its comment says [start].

    A key's comment is the block of comment lines right above it plus its inline comment."""
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    marked = {}
    for line in CONFIG.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped)
            continue
        match = _KEY.match(line)
        assert match, f"unexpected line in {CONFIG.name}: {line!r}"
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if match["value"].strip():  # a leaf
            path = [key for _, key in stack]
            assert path[:2] == [NODE_KEY, "ros__parameters"], path
            comment = " ".join(pending + [match["comment"] or ""])
            marked[".".join(path[2:])] = "[start]" in comment
        pending = []
    return marked


def test_config_start_markers_are_the_read_only_parameters():
    marked = start_markers()
    assert set(marked) == set(SPECS)
    assert {name for name, start in marked.items() if start} == READ_ONLY


# -- the params file on a real node in a namespace ----------------------------------------------

def test_params_file_applies_in_a_namespace_and_launch_overrides_win(ros, tmp_path):
    """A user's copy of config/densemtl.yaml must reach the node under a namespace (keyed plain
    ``densemtl:`` it was silently ignored with ``namespace:=perception``), and a launch
    argument that is given must beat the file. The command line is the one launch_ros builds
    for ``namespace:=perception use_sim_time:=true``: the params file, then the given overrides
    in a file keyed by the node's full name (launch_ros writes a parameter dict that way)."""
    document = config_document()
    (key,) = document  # whatever the shipped file is keyed by
    values = document[key]["ros__parameters"]
    values["points"]["stride"] = 7
    values["model"]["backend"] = "onnxruntime"
    values["use_sim_time"] = False
    params_file = tmp_path / "densemtl.yaml"
    params_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    overrides_file = tmp_path / "overrides.yaml"
    overrides_file.write_text(yaml.safe_dump(
        {f"/perception/{NODE_NAME}": {"ros__parameters": {"use_sim_time": True}}}),
        encoding="utf-8")
    node = DenseMTLNode(cli_args=["--ros-args", "-r", f"__node:={NODE_NAME}",
                                  "-r", "__ns:=/perception", "--params-file", str(params_file),
                                  "--params-file", str(overrides_file)])
    try:
        assert node.get_fully_qualified_name() == "/perception/densemtl"
        assert node.settings.points_stride == 7, "the params file was not applied"
        assert node.settings.backend == "onnxruntime"
        assert node.get_parameter("points.stride").value == 7
        assert node.get_parameter("use_sim_time").value is True, "the given override lost"
    finally:
        node.destroy_node()
