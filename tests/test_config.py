import dataclasses
import json
from pathlib import Path

import pytest

from densemtl_core.config import (ConfigError, ExperimentConfig, config_differences, config_to_dict,
                                  load_config)

REPO = Path(__file__).resolve().parents[1]
# The public-dataset set-ups have their own checks in test_paper_configs.py.
TRAIN_CONFIGS = sorted((REPO / "config" / "train").glob("synthetic_*.yaml"))


def test_defaults_are_valid():
    config = load_config()
    assert isinstance(config, ExperimentConfig)
    assert config.model.tasks == ("semseg", "depth", "normals", "edges")


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.model.num_classes == 8


def test_synthetic_set_ups_share_data_budget_and_optimiser():
    """The studies compare them: only the network, the tasks, the objectives and the loss
    weights may differ, and the learning rate of the self-supervised ones (whose disparity
    saturates at the supervised set-ups' rate)."""
    configs = [load_config(path) for path in TRAIN_CONFIGS]
    shared = {json.dumps([config_to_dict(section) for section in
                          (c.data, dataclasses.replace(c.optim, lr=0.0),
                           dataclasses.replace(c.train, output_dir=""))])
              for c in configs}
    assert len(shared) == 1
    rates = {c.objectives.photometric.enabled: c.optim.lr for c in configs}
    assert len({(c.objectives.photometric.enabled, c.optim.lr) for c in configs}) == 2
    assert rates == {False: 1e-3, True: 1e-4}


def test_base_file_is_merged_and_overridden(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {width: 0.25, backbone: resnet34}\n"
                                       "train: {steps: 7}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmodel: {width: 0.5}\n")
    config = load_config(tmp_path / "child.yaml", ["train.batch_size=3", "model.tasks=[depth]",
                                                   "model.arch=stl"])
    assert config.model.width == 0.5
    assert config.model.backbone == "resnet34"
    assert config.train.steps == 7 and config.train.batch_size == 3
    assert config.model.tasks == ("depth",)


def test_round_trip_through_plain_dict():
    config = load_config(None, ["loss.task_weights={semseg: 50, depth: 1}"])
    from densemtl_core.config import config_from_dict
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize("override, message", [
    ("model.widht=0.5", "unknown key"),
    ("model.width=abc", "expected a number"),
    ("model.tasks=[semseg, flow]", "unknown task"),
    ("model.arch=stl", "exactly one task"),
    ("data.image_size=[100, 160]", "multiples of 16"),
    ("model.fusion=max", "add, prod or concat"),
    ("model.exchange_branches=[cxtam]", "subset"),
    ("train.steps", "section.key=value"),
    ("model.dilation=[true, false]", "expected 3 values"),
    ("model.tasks=[semseg, depth", r"override 'model.tasks=\[semseg, depth' is not valid YAML: "
                                   r"expected ',' or '\]', but got '<stream end>' \(line 1"),
    ("name={a: 1", "is not valid YAML"),
    ("train.log_every=0", "train.log_every must be at least 1, got 0"),
    ("train.val_every=-1", "train.val_every must be at least 0, got -1"),
    ("train.checkpoint_every=-5", "train.checkpoint_every must be at least 0"),
    ("train.batch_size=0", "train.batch_size must be at least 1, got 0"),
    ("train.batch_size=-2", "train.batch_size must be at least 1, got -2"),
    ("train.threads=0", "train.threads must be at least 1"),
    ("optim.lr=-1e-3", "optim.lr must be at least 0, got -0.001"),
    ("optim.lr=nan", "optim.lr: expected a finite number, got 'nan'"),
    ("optim.lr=.nan", "optim.lr: expected a finite number, got nan"),
    ("optim.lr=.inf", "optim.lr: expected a finite number"),
    ("optim.backbone_lr=-1", "optim.backbone_lr must be at least 0"),
    ("optim.step_size=0", "optim.step_size must be at least 1"),
    ("optim.betas=[0.9, 1.0]", r"optim.betas must lie in \[0, 1\)"),
    ("data.num_workers=-1", "data.num_workers must be at least 0"),
])
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(None, [override])
    assert "\n" not in str(raised.value)


def test_validation_only_at_the_end_stays_allowed():
    assert load_config(None, ["train.val_every=0", "optim.lr=0"]).train.val_every == 0


@pytest.mark.parametrize("files, message", [
    ({"run.yaml": "model: {width: 0.5\ntrain: {steps: 3}\n"},
     r"run.yaml is not valid YAML: expected ',' or '}', but got ':' \(line 2, column 6\)"),
    ({"run.yaml": "model:\n\twidth: 0.5\n"}, r"run.yaml is not valid YAML: found character "
                                            r"'\\t' that cannot start any token \(line 2"),
    ({"run.yaml": "base: other.yaml\n", "other.yaml": "base: run.yaml\n"},
     r"other.yaml: base files form a cycle: .*run.yaml -> .*other.yaml -> .*run.yaml"),
    ({"run.yaml": "base: run.yaml\n"}, r"run.yaml: base files form a cycle"),
    ({"run.yaml": "base: [a.yaml]\n"}, r"run.yaml: base must name a YAML file, got \['a.yaml'\]"),
    ({"run.yaml": "name: caf\xe9\n".encode("latin-1")},
     r"run.yaml is not UTF-8 text \(invalid continuation byte at byte 9\)"),
    ({"run.yaml": "- train\n"}, "run.yaml: top level must be a mapping"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, files, message):
    """Malformed YAML, a base chain that comes back to itself (an endless recursion before)
    and a file in another encoding each stop with one line naming the file."""
    for name, content in files.items():
        write = (tmp_path / name).write_bytes if isinstance(content, bytes) else \
            (tmp_path / name).write_text
        write(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(tmp_path / "run.yaml")
    assert "\n" not in str(raised.value)


def test_differences_name_every_differing_key():
    first = load_config(None, ["model.width=0.5", "optim.optimizer=sgd"])
    second = load_config(None, ["model.width=0.25"])
    assert config_differences(first, second) == {"model.width": (0.5, 0.25),
                                                 "optim.optimizer": ("sgd", "adamw")}
    assert config_differences(first, first) == {}


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_one_recording_may_be_named_without_a_list():
    """``data.bag=run1`` and ``data.bag=[run1, run2]`` both work; a number is still refused."""
    one = load_config(None, ["data.dataset=rosbag", "data.bag=run1", "data.image_topic=/cam"])
    two = load_config(None, ["data.dataset=rosbag", "data.bag=[run1, run2]",
                             "data.image_topic=/cam"])
    assert one.data.bag == ("run1",) and two.data.bag == ("run1", "run2")
    with pytest.raises(ConfigError, match="data.bag"):
        load_config(None, ["data.dataset=rosbag", "data.bag=3", "data.image_topic=/cam"])
    with pytest.raises(ConfigError, match="data.bag"):
        load_config(None, ["data.dataset=rosbag", "data.image_topic=/cam"])
