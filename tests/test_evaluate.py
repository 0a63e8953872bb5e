import json

import numpy as np
import pytest
import torch
from PIL import Image

from torch.utils.data import DataLoader

from densemtl_core.checkpoint import ModelMetadata, load_checkpoint, save_checkpoint
from densemtl_core.config import load_config
from densemtl_core.data import build_dataset
from densemtl_core.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_COLORS
from densemtl_core.evaluate import evaluate, main
from tests.strict_json import strict_json
from densemtl_core.models import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = load_config("config/train/synthetic_densemtl_sdne.yaml",
                         ["model.width=0.125", "data.image_size=[48, 64]", "data.test_length=6"])
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    return save_checkpoint(path, model, ModelMetadata(config, SYNTHETIC_CLASSES, SYNTHETIC_COLORS))


def test_cli_writes_metrics_and_mosaic(tmp_path, checkpoint, capsys):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--batch-size", "4",
                 "--mosaic-samples", "2"]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["format_version"] == 1 and report["samples"] == 6 and report["split"] == "test"
    metrics = report["metrics"]
    assert set(metrics) == {"semseg", "depth", "normals", "edges"}
    assert 0.0 <= metrics["semseg"]["miou"] <= 1.0
    assert metrics["depth"]["rmse"] > 0 and 0 <= metrics["depth"]["delta1"] <= 1
    assert 0 <= metrics["normals"]["mean"] <= 180
    assert 0 <= metrics["edges"]["ods_f"] <= 1
    picture = np.asarray(Image.open(tmp_path / "predictions.png"))
    # two samples; input + prediction and ground truth for four tasks = 9 tiles of 64 px
    assert picture.shape[0] > 2 * 48 and picture.shape[1] >= 9 * 64
    assert "semseg" in capsys.readouterr().out


def test_domain_scores_the_model_on_the_other_render_domain(tmp_path, checkpoint):
    scores = {}
    for domain in ("source", "shifted"):
        out = tmp_path / domain
        assert main(["--checkpoint", str(checkpoint), "--out", str(out), "--domain", domain,
                     "--mosaic-samples", "0"]) == 0
        report = json.loads((out / "metrics.json").read_text())
        assert report["data"] == {"dataset": "synthetic", "domain": domain}
        scores[domain] = report["metrics"]["depth"]["rmse"]
    assert scores["source"] != scores["shifted"]  # other images, other scores


def test_an_earlier_evaluation_is_refused_and_replaced_only_when_asked(tmp_path, checkpoint,
                                                                       capsys):
    run = ["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--mosaic-samples", "1"]
    (tmp_path / "notes.txt").write_text("mine")
    assert main(run) == 0
    first = (tmp_path / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*run, "--scale", "1", "--mosaic-samples", "0"]) == 2
    assert capsys.readouterr().err == (
        f"densemtl-eval: results folder {tmp_path} holds an earlier run's results (metrics.json, "
        f"predictions.png); choose another folder, or replace them with --overwrite\n")
    assert (tmp_path / "metrics.json").read_text() == first
    assert main([*run, "--scale", "1", "--mosaic-samples", "0", "--overwrite"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["scale"] == 1
    assert not (tmp_path / "predictions.png").exists()  # not the earlier run's picture
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, checkpoint, capsys):
    (tmp_path / "out").write_text("")
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_scale_one_is_scored_at_label_resolution(tmp_path, checkpoint):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--scale", "1",
                 "--mosaic-samples", "0"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["scale"] == 1


def test_unknown_scale_is_refused(tmp_path, checkpoint, capsys):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--scale", "3"]) == 2
    assert "not an output" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["--checkpoint", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err


def test_missing_dataset_root_is_a_clear_error(tmp_path, capsys):
    config = load_config("config/train/nyudv2_densemtl_sd.yaml",
                         ["model.backbone=resnet18", "model.width=0.125",
                          "data.image_size=[32, 48]"])
    path = save_checkpoint(tmp_path / "nyud.safetensors", build_model(config.model),
                           ModelMetadata(config))
    missing = tmp_path / "no_such_root"
    assert main(["--checkpoint", str(path), "--data-root", str(missing), "--split", "val"]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("length", ["0", "-3"])
def test_an_empty_split_is_a_clear_error_and_writes_nothing(tmp_path, checkpoint, capsys, length):
    """``--length 0`` wrote a metrics.json full of NaN and exited 0."""
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--length", length]) == 2
    assert capsys.readouterr().err == f"densemtl-eval: --length must be at least 1, got {length}\n"
    assert not list(tmp_path.iterdir())


def _depth_beyond_range(tmp_path, tasks):
    """A checkpoint whose depth range (0.1 to 0.2 m) excludes every synthetic ground-truth pixel."""
    config = load_config("config/train/synthetic_densemtl_sdne.yaml",
                         ["model.width=0.125", "data.image_size=[48, 64]", "data.test_length=2",
                          f"model.tasks=[{', '.join(tasks)}]", "model.arch=mtl",
                          "model.min_depth=0.1", "model.max_depth=0.2"])
    return save_checkpoint(tmp_path / "near.safetensors", build_model(config.model).eval(),
                           ModelMetadata(config, SYNTHETIC_CLASSES, SYNTHETIC_COLORS))


def test_a_task_nothing_was_scored_for_is_null_and_warned_about(tmp_path, capsys):
    path = _depth_beyond_range(tmp_path, ("semseg", "depth"))
    assert main(["--checkpoint", str(path), "--out", str(tmp_path / "eval"),
                 "--mosaic-samples", "0"]) == 0
    metrics = strict_json((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert set(metrics["depth"].values()) == {None}
    assert 0.0 <= metrics["semseg"]["miou"] <= 1.0
    assert ("densemtl-eval: warning: no sample of the test split has a valid depth pixel; its "
            "metrics are null") in capsys.readouterr().err


def test_nothing_scored_at_all_exits_non_zero(tmp_path, capsys):
    path = _depth_beyond_range(tmp_path, ("depth",))
    assert main(["--checkpoint", str(path), "--out", str(tmp_path / "eval"),
                 "--mosaic-samples", "0"]) == 1
    metrics = strict_json((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert set(metrics["depth"].values()) == {None}
    assert "valid depth pixel" in capsys.readouterr().err


def test_samples_without_a_task_s_label_are_left_out_of_its_metrics(checkpoint):
    """Partly labelled data (recordings, folders): a filler map flagged ``has_<task>`` False
    must not count, so the metrics equal those of the labelled samples alone."""
    model, metadata = load_checkpoint(checkpoint)
    cfg = metadata.config
    scenes = [build_dataset(cfg.data, "test")[index] for index in range(4)]
    flagged = []
    for index, sample in enumerate(scenes):
        labelled = index % 2 == 0
        sample = dict(sample, has_depth=torch.tensor(labelled))
        if not labelled:
            sample["depth"] = torch.full_like(sample["depth"], 3.0)  # a wrong filler
        flagged.append(sample)
    device = torch.device("cpu")
    mixed = evaluate(model, DataLoader(flagged, batch_size=4), cfg.model, device=device,
                     progress=False)
    alone = evaluate(model, DataLoader(scenes[::2], batch_size=4), cfg.model, device=device,
                     progress=False)
    assert mixed["depth"] == pytest.approx(alone["depth"])
    assert mixed["semseg"] != pytest.approx(alone["semseg"])  # still scored on every sample
