"""The method's set-ups in config/train: they load with the method's hyper-parameters, and each
one trains two real steps (shrunk network, same code path) on a tiny copy of its dataset."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from densemtl_core.config import load_config
from densemtl_core.data import PUBLIC_DATASETS
from densemtl_core.distributed import DistContext
from densemtl_core.train import Trainer, main
from tests.data.fixtures import BUILDERS

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(path for name in PUBLIC_DATASETS
                 for path in (REPO / "config" / "train").glob(f"{name}_*.yaml"))
SET_UPS = [path for path in CONFIGS if not path.name.endswith("_base.yaml")]
SHRINK = ["model.backbone=resnet18", "model.width=0.125", "data.image_size=[32, 64]",
          "data.num_workers=0", "train.steps=2", "train.batch_size=2", "train.val_every=0",
          "train.log_every=1", "train.checkpoint_every=0", "train.device=cpu"]

EXPECTED_SET_UPS = {
    "cityscapes": {"stl_semseg", "stl_depth", "stl_normals", "densemtl_sd", "densemtl_sdn",
                   "sde_sd"},
    "synthia": {"stl_semseg", "stl_depth", "stl_normals", "densemtl_sd", "densemtl_sdn"},
    "vkitti2": {"stl_semseg", "stl_depth", "stl_normals", "densemtl_sd", "densemtl_sdn"},
    "nyudv2": {"stl_semseg", "stl_depth", "stl_normals", "stl_edges", "densemtl_sd",
               "densemtl_sdn", "densemtl_sdne"},
}
VIDEO = {"cityscapes": {"sequence": "leftImg8bit_sequence"}}
"""Fixture options that add the video the self-supervised depth set-ups read."""
IMAGE_SIZES = {"cityscapes": (512, 1024), "synthia": (512, 1024), "vkitti2": (320, 1024),
               "nyudv2": (448, 576)}
DENSEMTL_LRS = {"cityscapes": (1e-4, 1e-5), "synthia": (3e-4, 2e-4), "vkitti2": (3e-4, 2e-4),
                "nyudv2": (3e-4, 2e-4)}
TASK_WEIGHTS = {"sd": {"semseg": 50, "depth": 1},
                "sdn": {"semseg": 100, "depth": 1, "normals": 100},
                "sdne": {"semseg": 100, "depth": 1, "normals": 100, "edges": 50}}


def _dataset(path: Path) -> str:
    return path.name.split("_", 1)[0]


@pytest.fixture
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy machine lose a lot to them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset_roots(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for name, build in BUILDERS.items():
        roots[name] = tmp_path_factory.mktemp("datasets") / name
        build(roots[name], **VIDEO.get(name, {}))
    return roots


def test_every_dataset_has_the_methods_set_ups():
    found: dict[str, set[str]] = {name: set() for name in PUBLIC_DATASETS}
    for path in SET_UPS:
        found[_dataset(path)].add(path.stem.split("_", 1)[1])
    assert found == EXPECTED_SET_UPS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_config_has_the_methods_hyper_parameters(path):
    config = load_config(path)
    dataset = _dataset(path)
    assert config.data.dataset == dataset
    assert config.data.image_size == IMAGE_SIZES[dataset]
    assert config.model.backbone == "resnet101" and config.model.pretrained is None
    assert config.model.dilation == (False, False, True)
    assert (config.train.steps, config.train.batch_size) == (40000, 2)
    assert (config.optim.scheduler, config.optim.step_size, config.optim.gamma) == ("step", 30000,
                                                                                   0.1)
    assert config.optim.grad_clip == 10.0 and config.optim.warmup_steps == 0
    assert config.data.hflip and config.data.color_jitter == 0.0
    if config.model.arch == "stl":
        assert config.model.head == "deeplab"
        assert config.optim.optimizer == "sgd" and config.optim.momentum == 0.9
        assert (config.optim.lr, config.optim.backbone_lr, config.optim.weight_decay) == (
            1e-2, 1e-3, 5e-4)
        assert config.loss.task_weights == {}
    elif config.objectives.photometric.enabled:  # METHOD.md sections 5 and 7.1
        photometric = config.objectives.photometric
        assert config.optim.optimizer == "adam" and config.optim.betas == (0.9, 0.999)
        assert (config.optim.lr, config.optim.backbone_lr) == (5e-5, 1e-5)
        assert config.model.output_scales == (0, 1, 2, 3) == photometric.scales
        assert config.loss.task_weights == {"semseg": 1} and photometric.weight == 1
        assert config.loss.scales == {"semseg": (0, 2)}
        assert (config.model.min_depth, config.model.max_depth) == (0.1, 100.0)
        assert (photometric.ssim_weight, photometric.smoothness_weight) == (0.85, 1e-3)
        assert photometric.automask and photometric.reprojection == "min"
        assert config.model.depth_units == "relative" and config.supervised_tasks() == ("semseg",)
    else:
        assert config.optim.optimizer == "adam" and config.optim.betas == (0.9, 0.98)
        assert config.optim.weight_decay == 0.0
        assert (config.optim.lr, config.optim.backbone_lr) == DENSEMTL_LRS[dataset]
    if (config.model.arch == "densemtl" and config.name != "default"
            and not config.objectives.photometric.enabled):
        assert config.model.exchange_scale == 1 and config.model.output_scales == (0, 1)
        assert config.loss.task_weights == TASK_WEIGHTS[path.stem.rsplit("_", 1)[1]]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("path", SET_UPS, ids=lambda path: path.stem)
def test_set_up_trains_two_steps_on_its_dataset(path, dataset_roots, tmp_path):
    config = load_config(path, SHRINK + [f"data.root={dataset_roots[_dataset(path)]}",
                                         f"train.output_dir={tmp_path}"])
    trainer = Trainer(config, DistContext())
    before = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
    trainer.fit()

    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [record for record in log if "train" in record]
    assert [record["step"] for record in steps] == [1, 2]
    for record in steps:
        assert all(math.isfinite(record["train"][task]) for task in config.supervised_tasks())
        if config.objectives.photometric.enabled:
            assert math.isfinite(record["train"]["photometric"])
    changed = [name for name, value in trainer.model.named_parameters()
               if not torch.equal(value, before[name])]
    assert any(name.startswith("encoder.") for name in changed)
    assert any(name.startswith("heads.") for name in changed)
    assert set(log[-1]["val"]) == set(config.model.tasks)
    assert (tmp_path / "last.safetensors").is_file()


def test_training_cli_names_a_wrong_dataset_root_and_its_layout(tmp_path, capsys):
    code = main(["--config", str(REPO / "config" / "train" / "cityscapes_densemtl_sd.yaml"),
                 f"data.root={tmp_path / 'nowhere'}", "train.device=cpu",
                 f"train.output_dir={tmp_path / 'run'}"])
    error = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'nowhere'} is not a directory" in error
    assert "gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png" in error
