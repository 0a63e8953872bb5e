"""Adapting to a target domain in the trainer: target batches, the adversarial objective's own
optimiser, resuming, what a checkpoint records, and that target labels are never read."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from densemtl_core.checkpoint import load_checkpoint, read_metadata
from densemtl_core.config import ConfigError, load_config
from densemtl_core.data import TargetImages
from densemtl_core.distributed import DistContext
from densemtl_core.train import LAST, Trainer, checkpoint_path, main

REPO = Path(__file__).resolve().parents[1]
SET_UP = str(REPO / "config/train/synthetic_densemtl_sd.yaml")
TINY = ["model.width=0.125", "data.image_size=[32, 64]", "data.train_length=8",
        "data.val_length=4", "train.batch_size=2", "train.val_every=0", "train.log_every=1",
        "target.domain=shifted", "target.image_size=[32, 64]", "target.train_length=6",
        "target.val_length=4"]
ADVERSARIAL = [*TINY, "objectives.adversarial.enabled=true"]


def _config(tmp_path: Path, *extra: str):
    return load_config(SET_UP, [*ADVERSARIAL, f"train.output_dir={tmp_path}", *extra])


def _train_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


class LabelsRaise(dict):
    """A sample whose every entry but the image raises when read."""

    def __getitem__(self, key):
        if key != "image":
            raise AssertionError(f"the target's {key!r} was read")
        return super().__getitem__(key)

    def values(self):
        raise AssertionError("the target's entries were read in bulk")

    def items(self):
        raise AssertionError("the target's entries were read in bulk")


class Guarded(torch.utils.data.Dataset):
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return LabelsRaise(dict.items(self.dataset[index]))


def test_adversarial_run_trains_the_discriminators_on_their_own_schedule(tmp_path):
    trainer = Trainer(_config(tmp_path, "train.steps=2"), DistContext())
    discriminators = trainer.objectives["adversarial"].discriminators
    before = {name: value.detach().clone() for name, value in discriminators.named_parameters()}
    network_before = {n: v.detach().clone() for n, v in trainer.model.named_parameters()}
    trainer.fit()

    steps = [record for record in _train_log(tmp_path) if "train" in record]
    for record in steps:
        assert math.isfinite(record["train"]["adversarial"])
        assert math.isfinite(record["train"]["discriminator"])
        assert math.isfinite(record["train"]["semseg"]) and math.isfinite(record["train"]["depth"])
    # Adam at 1e-4 with poly decay 0.9, apart from the network's schedule.
    assert steps[0]["lr_adversarial"] == pytest.approx(1e-4 * (1 - 1 / 2) ** 0.9)
    assert steps[1]["lr_adversarial"] == 0.0
    optimizer, _ = trainer.objective_optimizers["adversarial"]
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    assert all(not torch.equal(before[name], value)
               for name, value in discriminators.named_parameters() if name.endswith("_orig"))
    assert all(not any(value is p for p in trainer.optimizer.param_groups[0]["params"])
               for value in discriminators.parameters())
    assert any(not torch.equal(network_before[n], v) for n, v in trainer.model.named_parameters())


def test_target_labels_are_never_read(tmp_path):
    trainer = Trainer(_config(tmp_path, "train.steps=2"), DistContext())
    assert isinstance(trainer.target_set, TargetImages)
    trainer.target_set.dataset = Guarded(trainer.target_set.dataset)
    trainer.fit()  # any label access raises
    assert [record["step"] for record in _train_log(tmp_path) if "train" in record] == [1, 2]


def test_target_samples_hold_the_image_alone(tmp_path):
    trainer = Trainer(_config(tmp_path, "train.steps=1"), DistContext())
    sample = trainer.target_set[0]
    assert list(sample) == ["image"] and sample["image"].shape == (3, 32, 64)


def test_an_interrupted_adaptation_resumes_bit_exactly(tmp_path):
    """The discriminators' weights, optimiser and poly schedule continue where they stopped."""
    straight = Trainer(_config(tmp_path / "a", "train.steps=4"), DistContext())
    straight.fit()
    interrupted = Trainer(_config(tmp_path / "b", "train.steps=4", "train.checkpoint_every=2"),
                          DistContext())
    save = interrupted._save

    def save_then_stop(name, metrics):
        save(name, metrics)
        raise KeyboardInterrupt

    interrupted._save = save_then_stop
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = Trainer(_config(tmp_path / "b", "train.steps=4"), DistContext())
    resumed.resume(checkpoint_path(tmp_path / "b", LAST))
    assert resumed.step == 2
    resumed.fit()
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for name, tensor in straight.objectives.state_dict().items():
        assert torch.equal(tensor, resumed.objectives.state_dict()[name]), name


def test_checkpoint_records_its_source_and_target(tmp_path):
    Trainer(_config(tmp_path, "train.steps=1"), DistContext()).fit()
    metadata = read_metadata(checkpoint_path(tmp_path, LAST))
    assert metadata.trained_on() == {"source": {"dataset": "synthetic", "domain": "source"},
                                     "target": {"dataset": "synthetic", "domain": "shifted"}}
    assert metadata.config.target.domain == "shifted"
    _, loaded = load_checkpoint(checkpoint_path(tmp_path, LAST))
    assert loaded.to_dict()["trained_on"]["target"]["domain"] == "shifted"


def test_validation_scores_the_target_split_when_asked(tmp_path):
    trainer = Trainer(_config(tmp_path, "train.steps=1", "train.validate_on=target"),
                      DistContext())
    assert trainer.val_set.domain.name == "shifted"
    assert Trainer(_config(tmp_path, "train.steps=1"), DistContext()).val_set.domain.name == \
        "source"


@pytest.mark.parametrize("overrides, message", [
    (["objectives.adversarial.enabled=true"], "give the config a target section"),
    (["target.domain=shifted"], "no objective learns from it"),
    (["train.validate_on=target"], "needs a target"),
    (["objectives.adversarial.enabled=true", "target.dataset=rosbag"],
     "target.dataset=rosbag needs target.bag"),
    (["objectives.adversarial.enabled=true", "target.image_size=[30, 64]"],
     "target.image_size"),
])
def test_adaptation_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SET_UP, overrides)


def test_cli_adapts_with_target_overrides(tmp_path, capsys):
    assert main(["--config", SET_UP, *ADVERSARIAL, f"train.output_dir={tmp_path}",
                 "train.steps=1"]) == 0
    assert "final validation" in capsys.readouterr().out


@pytest.mark.parametrize("objectives", [["objectives.self_training.enabled=true"],
                                        ["objectives.self_training.enabled=true",
                                         "objectives.adversarial.enabled=true"]],
                         ids=["self_training", "both"])
def test_self_training_follows_the_network_without_reading_target_labels(tmp_path, objectives):
    config = load_config(SET_UP, [*TINY, *objectives, f"train.output_dir={tmp_path}",
                                  "train.steps=2"])
    trainer = Trainer(config, DistContext())
    trainer.target_set.dataset = Guarded(trainer.target_set.dataset)
    teacher = trainer.objectives["self_training"].teacher
    assert all(not p.requires_grad for p in teacher.parameters())
    trainer.fit()
    steps = [record for record in _train_log(tmp_path) if "train" in record]
    assert all(math.isfinite(record["train"]["self_training"]) for record in steps)
    assert int(trainer.objectives["self_training"].updates) == 2
    # After two updates the teacher is 1/2 of the network after step 1 and 1/2 after step 2:
    # close to the network, never equal to it.
    differing = [name for name, value in teacher.state_dict().items()
                 if value.is_floating_point()
                 and not torch.equal(value, trainer.model.state_dict()[name])]
    assert differing
    assert not teacher.training


def test_a_run_can_start_from_the_shipped_model(tmp_path):
    from densemtl_core.pretrained import DEFAULT_MODEL
    config = load_config(REPO / "config/train/synthetic_densemtl_sdne.yaml",
                         ["train.init_from=default", "train.steps=1", "data.train_length=8",
                          "data.val_length=2", "train.batch_size=2", "train.val_every=0",
                          f"train.output_dir={tmp_path}"])
    trainer = Trainer(config, DistContext())
    shipped, _ = load_checkpoint(DEFAULT_MODEL)
    for name, tensor in shipped.state_dict().items():
        assert torch.equal(tensor.to(trainer.model.state_dict()[name].dtype),
                           trainer.model.state_dict()[name]), name
    assert trainer.step == 0


def test_a_checkpoint_of_another_network_is_refused_as_a_start(tmp_path, capsys):
    assert main(["--config", SET_UP, *ADVERSARIAL, "train.init_from=default",
                 f"train.output_dir={tmp_path}"]) == 2
    error = capsys.readouterr().err
    assert "train.init_from:" in error and "is another network" in error
    assert "model.tasks" in error and len(error.strip().splitlines()) == 1


def test_resuming_a_run_that_adapted_without_a_target_now_is_refused_cleanly(tmp_path, capsys):
    """The saved config has a target, the new one none: compared setting by setting, not
    field by field into a missing section."""
    assert main(["--config", SET_UP, *ADVERSARIAL, f"train.output_dir={tmp_path}",
                 "train.steps=1"]) == 0
    assert main(["--config", SET_UP, *TINY[:7], f"train.output_dir={tmp_path}", "train.steps=2",
                 "--resume", "auto"]) == 2
    assert "does not fit this run" in capsys.readouterr().err
