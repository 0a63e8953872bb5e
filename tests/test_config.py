import dataclasses
from pathlib import Path

import pytest

from densemtl_core.config import ConfigError, ExperimentConfig, config_to_dict, load_config

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
    """The study compares them: only the network, the tasks and the loss weights may differ."""
    configs = [load_config(path) for path in TRAIN_CONFIGS]
    assert len({(c.data, c.optim, dataclasses.replace(c.train, output_dir="")) for c in configs}) == 1


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
])
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
