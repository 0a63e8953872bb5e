"""A robot user's path to a model adapted to their camera, with the real command lines:
``densemtl-make-bag --domain shifted`` records the synthetic scenes through another camera (the
robot's stand-in, with ground truth), ``densemtl-train`` with the shipped set-up adapts the
default model's network from the labelled synthetic scenes to that recording's images, and
``densemtl-bag-eval`` scores the adapted checkpoint and a source-only one on the recording.
Whether adaptation pays is measured by the study (docs/RESULTS.md), not in a few steps."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from densemtl_core.checkpoint import read_metadata
from densemtl_core.config import load_config
from densemtl_core.data import build_dataset
from densemtl_core.data.recording import RecordingDataset
from densemtl_core.pretrained import DEFAULT_MODEL
from densemtl_core.train import main as train_main
from densemtl_ros.bag_tools.bag_eval import main as bag_eval_main
from densemtl_ros.bag_tools.make_bag import (CAMERA_INFO_TOPIC, DEPTH_TOPIC, IMAGE_TOPIC,
                                             NORMALS_TOPIC, SEGMENTATION_TOPIC)
from densemtl_ros.bag_tools.make_bag import main as make_bag_main

REPO = Path(__file__).resolve().parents[2]
ADAPT = REPO / "config" / "train" / "uda_synthetic_to_bag.yaml"
SOURCE_ONLY = REPO / "config" / "train" / "synthetic_densemtl_sdne.yaml"
STEPS = 2
FRAMES = 12
TINY = ["model.width=0.125", "data.image_size=[32, 48]", "data.train_length=8", "data.val_length=4",
        f"train.steps={STEPS}", "train.batch_size=2", "train.val_every=0", "train.log_every=1",
        "train.device=cpu", "train.threads=1", "optim.warmup_steps=0"]
TRUTH = {"semseg": SEGMENTATION_TOPIC, "depth": DEPTH_TOPIC, "normals": NORMALS_TOPIC}


def _train(config: Path, run: Path, *extra: str) -> list[dict]:
    assert train_main(["--config", str(config), *TINY, *extra,
                       f"train.output_dir={run}"]) == 0
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [record["train"] for record in records if "train" in record]


def _bag_eval(bag: Path, checkpoint: Path, out: Path) -> dict:
    assert bag_eval_main([
        "--bag", str(bag), "--image-topic", IMAGE_TOPIC, "--camera-info-topic", CAMERA_INFO_TOPIC,
        "--gt-segmentation-topic", SEGMENTATION_TOPIC, "--gt-depth-topic", DEPTH_TOPIC,
        "--gt-normals-topic", NORMALS_TOPIC, "--model", str(checkpoint), "--out", str(out),
        "--no-progress"]) == 0
    return json.loads((out / "report.json").read_text())


def _labels_raise(*args, **kwargs):
    raise AssertionError("a ground-truth message of the target recording was read")


def test_the_default_network_adapts_to_a_recording_and_is_scored_on_it(tmp_path, monkeypatch):
    bag = tmp_path / "robot"
    assert make_bag_main(["--out", str(bag), "--frames", str(FRAMES), "--size", "64x80",
                          "--domain", "shifted"]) == 0

    # The recording's ground-truth topics, even named, are never decoded while adapting.
    truth = "{" + ", ".join(f"{task}: {topic}" for task, topic in TRUTH.items()) + "}"
    target = [f"target.bag={bag}", f"target.image_topic={IMAGE_TOPIC}",
              "target.image_size=[32, 48]", "target.split_block=0.5",
              f"target.truth_topics={truth}"]
    with monkeypatch.context() as patched:
        patched.setattr(RecordingDataset, "_truth", _labels_raise)
        with pytest.raises(AssertionError, match="ground-truth message"):  # the guard bites
            build_dataset(load_config(ADAPT, [*TINY, *target]).target, "train")[0]
        steps = _train(ADAPT, tmp_path / "adapted", *target)
    assert len(steps) == STEPS
    for step in steps:
        assert math.isfinite(step["adversarial"]) and math.isfinite(step["discriminator"])
        assert math.isfinite(step["self_training"])
    adapted = tmp_path / "adapted" / "last.safetensors"
    metadata = read_metadata(adapted)
    assert metadata.trained_on() == {
        "source": {"dataset": "synthetic", "domain": "source"},
        "target": {"dataset": "rosbag", "bag": [str(bag)], "image_topic": IMAGE_TOPIC}}
    source_only = _source_only(tmp_path)
    assert metadata.config.model == read_metadata(source_only).config.model

    reports = {name: _bag_eval(bag, tmp_path / name / "last.safetensors", tmp_path / f"{name}_eval")
               for name in ("adapted", "source_only")}
    assert reports["adapted"]["source"]["model_trained_on"] == metadata.trained_on()
    assert reports["source_only"]["source"]["model_trained_on"]["target"] is None
    for report in reports.values():
        assert report["frames_scored"]["semseg"] == FRAMES
        assert report["frames_scored"]["depth"] == report["frames_scored"]["normals"] == FRAMES
        assert math.isfinite(report["metrics"]["semseg"]["miou"])
    assert reports["adapted"]["metrics"].keys() == reports["source_only"]["metrics"].keys()


def _source_only(tmp_path: Path) -> Path:
    """The same network trained the same steps on the synthetic scenes alone."""
    steps = _train(SOURCE_ONLY, tmp_path / "source_only")
    assert all("adversarial" not in step and "self_training" not in step for step in steps)
    checkpoint = tmp_path / "source_only" / "last.safetensors"
    assert read_metadata(checkpoint).trained_on()["target"] is None
    return checkpoint


def test_the_set_up_adapts_the_shipped_network_and_asks_for_the_recording(capsys):
    recording = [f"target.bag={REPO}", f"target.image_topic={IMAGE_TOPIC}"]
    assert load_config(ADAPT, recording).model == read_metadata(DEFAULT_MODEL).config.model
    assert train_main(["--config", str(ADAPT)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "needs target.bag" in error and "target.image_topic" in error
