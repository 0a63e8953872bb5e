"""The method's domain adaptation set-ups (MTL-UDA, METHOD.md sections 5 and 7.2): they load
with the method's hyper-parameters, and each one trains two real steps (shrunk network, same
code path) on a tiny copy of its source dataset with the Cityscapes fixture as target."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from densemtl_core.config import load_config
from densemtl_core.data.cityscapes import Cityscapes
from densemtl_core.distributed import DistContext
from densemtl_core.train import Trainer
from tests.data.fixtures import BUILDERS
from tests.test_paper_configs import SHRINK, one_thread  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]
SET_UPS = {
    "uda_synthia_to_cityscapes_sd": {"source": "synthia", "image_size": (512, 1024),
                                     "label_set": "method16", "num_classes": 16},
    "uda_vkitti2_to_cityscapes_sd": {"source": "vkitti2", "image_size": (320, 1024),
                                     "label_set": "vkcs8", "num_classes": 8},
}
"""Each set-up's source dataset and its network size, and the classes both sides share."""


def _path(name: str) -> Path:
    return REPO / "config" / "train" / f"{name}.yaml"


def test_every_uda_config_is_a_known_set_up():
    found = {path.stem for path in (REPO / "config" / "train").glob("uda_*_to_cityscapes_*.yaml")}
    assert found == set(SET_UPS)


@pytest.mark.parametrize("name", SET_UPS)
def test_config_has_the_methods_hyper_parameters(name):
    config, expected = load_config(_path(name)), SET_UPS[name]
    model, optim, train = config.model, config.optim, config.train
    assert config.data.dataset == expected["source"]
    assert config.data.image_size == expected["image_size"]
    assert config.data.hflip and config.data.color_jitter == 0.0
    assert model.arch == "densemtl" and model.tasks == ("semseg", "depth")
    assert model.backbone == "resnet101" and model.pretrained is None
    assert model.dilation == (False, False, True)
    assert model.exchange_scale == 1 and model.output_scales == (0, 1)
    assert model.exchange_branches == ("sa", "sxtam") and model.fusion == "add"
    assert config.loss.task_weights == {"semseg": 50, "depth": 1}
    assert config.supervised_tasks() == ("semseg", "depth")
    assert optim.optimizer == "adam" and optim.betas == (0.9, 0.98)
    assert (optim.lr, optim.backbone_lr, optim.weight_decay) == (2.5e-4, 1.5e-5, 0.0)
    assert optim.scheduler == "constant" and optim.grad_clip is None
    assert optim.warmup_steps == 0
    assert (train.steps, train.batch_size, train.amp) == (90000, 2, False)
    assert train.validate_on == "target"
    adversarial = config.objectives.adversarial
    assert adversarial.enabled and adversarial.weight == 0.005 and adversarial.scales == (0, 1)
    assert (adversarial.lr, adversarial.betas, adversarial.poly_power) == (1e-4, (0.9, 0.99), 0.9)
    assert not config.objectives.self_training.enabled
    assert not config.objectives.photometric.enabled
    target = config.target
    assert (target.dataset, target.root) == ("cityscapes", "data/cityscapes")
    assert target.image_size == (512, 1024) and target.label_set == expected["label_set"]
    assert model.num_classes == expected["num_classes"]
    assert len(Cityscapes.label_sets[target.label_set].names) == expected["num_classes"]


@pytest.fixture(scope="module")
def dataset_roots(tmp_path_factory) -> dict[str, Path]:
    names = {"cityscapes"} | {expected["source"] for expected in SET_UPS.values()}
    roots = {}
    for name in sorted(names):
        roots[name] = tmp_path_factory.mktemp("datasets") / name
        BUILDERS[name](roots[name])
    return roots


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", SET_UPS)
def test_set_up_adapts_two_steps_from_its_source_to_cityscapes(name, dataset_roots, tmp_path):
    expected = SET_UPS[name]
    config = load_config(_path(name), SHRINK + [
        f"data.root={dataset_roots[expected['source']]}",
        f"target.root={dataset_roots['cityscapes']}", "target.image_size=[32, 64]",
        "target.num_workers=0", f"train.output_dir={tmp_path}"])
    trainer = Trainer(config, DistContext())
    discriminators = trainer.objectives["adversarial"].discriminators
    before = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
    judges_before = {name: value.detach().clone()
                     for name, value in discriminators.named_parameters()}
    trainer.fit()

    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [record for record in log if "train" in record]
    assert [record["step"] for record in steps] == [1, 2]
    for record in steps:
        for key in ("semseg", "depth", "adversarial", "discriminator"):
            assert math.isfinite(record["train"][key]), key
    changed = [name for name, value in trainer.model.named_parameters()
               if not torch.equal(value, before[name])]
    assert any(name.startswith("encoder.") for name in changed)
    assert any(name.startswith("heads.") for name in changed)
    assert judges_before and all(not torch.equal(value, judges_before[name])
                                 for name, value in discriminators.named_parameters())
    assert isinstance(trainer.val_set, Cityscapes) and trainer.val_set.split == "val"
    assert trainer.val_set.num_classes == expected["num_classes"]
    assert trainer.val_set.label_set == expected["label_set"]
    assert set(log[-1]["val"]) == set(config.model.tasks)
    assert (tmp_path / "last.safetensors").is_file()
