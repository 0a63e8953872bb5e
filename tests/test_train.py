"""Real training steps on real (small) synthetic data."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch

from densemtl_core.checkpoint import read_metadata, training_state_path
from densemtl_core.config import load_config
from densemtl_core.distributed import DistContext
from densemtl_core.objectives import Step
from densemtl_core.train import LAST, Trainer, checkpoint_path, main
from tests.strict_json import strict_json

REPO = Path(__file__).resolve().parents[1]
SET_UP = str(REPO / "config/train/synthetic_densemtl_sdne.yaml")
TINY = ["model.width=0.125", "data.image_size=[48, 64]", "data.train_length=16",
        "data.val_length=4", "train.batch_size=4", "train.val_every=0", "train.log_every=1",
        "optim.warmup_steps=0", "optim.scheduler=constant", "train.threads=2"]


def _config(tmp_path, *extra):
    return load_config(REPO / "config/train/synthetic_densemtl_sdne.yaml",
                       TINY + [f"train.output_dir={tmp_path}"] + list(extra))


def _task_losses(trainer, batch):
    with torch.no_grad():
        trainer.network.train()
        _, logs = trainer.objective_losses(
            Step(batch, trainer.forward(batch["image"]), trainer.forward))
    return {task: logs[task] for task in trainer.config.model.tasks}


@pytest.mark.slow
def test_short_run_lowers_every_task_loss(tmp_path):
    trainer = Trainer(_config(tmp_path, "train.steps=80", "optim.lr=3e-3"), DistContext())
    batch, _ = next(trainer._training_batches())
    before = _task_losses(trainer, batch)
    trainer.fit()
    after = _task_losses(trainer, batch)
    for task in before:
        # Edges learn slowest (thin structures under a 0.05/0.95 weighted CE): a clear 5 %
        # drop in 80 steps on every task still fails for any task that does not learn.
        assert after[task] < 0.95 * before[task], (task, before[task], after[task])
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 80 and "val" in log[-1]
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "last.safetensors").is_file()
    curves = np.asarray(Image.open(tmp_path / "curves.png"))
    assert curves.shape[1] == 9 * 240  # the total loss, a loss and a validation panel per task


def test_a_metric_nothing_was_scored_for_is_null_in_every_json_file(tmp_path):
    """No ground-truth depth inside the range: the depth metrics are undefined, and strict JSON
    readers must still read the log and the metrics (json.dumps writes NaN by default)."""
    Trainer(_config(tmp_path, "train.steps=1", "model.min_depth=0.1", "model.max_depth=0.11"),
            DistContext()).fit()
    metrics = strict_json((tmp_path / "metrics_val.json").read_text())
    assert metrics["metrics"]["depth"]["rmse"] is None
    log = [strict_json(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["val"]["depth"]["abs_rel"] is None


def test_resume_continues_bit_exactly(tmp_path):
    straight = Trainer(_config(tmp_path / "a", "train.steps=4"), DistContext())
    straight.fit()
    assert main(["--config", str(REPO / "config/train/synthetic_densemtl_sdne.yaml"), *TINY,
                 f"train.output_dir={tmp_path / 'b'}", "train.steps=2"]) == 0
    assert main(["--config", str(REPO / "config/train/synthetic_densemtl_sdne.yaml"), *TINY,
                 f"train.output_dir={tmp_path / 'b'}", "train.steps=4", "--resume", "auto"]) == 0
    from densemtl_core.checkpoint import load_checkpoint
    resumed, meta = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert meta.step == 4
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    # The validations before the interruption stay in the run's metrics.
    history = json.loads((tmp_path / "b" / "metrics_val.json").read_text())["history"]
    assert [record["step"] for record in history] == [2, 4]


def test_bad_config_exits_with_message(tmp_path, capsys):
    assert main([f"train.output_dir={tmp_path}", "model.fusion=max"]) == 2
    assert "add, prod or concat" in capsys.readouterr().err


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A finished two-step run (one validation, at the end); tests work on copies."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert main(["--config", SET_UP, *TINY, f"train.output_dir={out}", "train.steps=2"]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("densemtl-train: "), err
    return err


def test_an_earlier_run_is_refused_and_replaced_only_when_asked(earlier_run, tmp_path, capsys):
    run = _copy(earlier_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    before = _files(run)
    args = ["--config", SET_UP, *TINY, f"train.output_dir={run}", "train.steps=1"]
    assert main(args) == 2
    err = _one_line_error(capsys)
    assert f"train.output_dir {run} holds an earlier run (config.yaml, " in err
    assert "continue it with --resume auto, or start over with --overwrite" in err
    assert _files(run) == before
    assert main([*args, "--overwrite"]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 1]  # one training record, one validation
    assert read_metadata(checkpoint_path(run, LAST)).step == 1
    assert json.loads((run / "metrics_val.json").read_text())["step"] == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_a_run_that_left_no_checkpoint_is_not_continued_silently(tmp_path, capsys):
    """``--resume auto`` with nothing to resume used to start over and append to its log."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.jsonl").write_text('{"step": 1, "train": {}}\n')
    assert main(["--config", SET_UP, *TINY, f"train.output_dir={run}", "--resume", "auto"]) == 2
    assert ("holds an earlier run (train_log.jsonl); it left no checkpoint to continue from: "
            "start over with --overwrite") in _one_line_error(capsys)
    assert _files(run) == {"train_log.jsonl": b'{"step": 1, "train": {}}\n'}


def test_resume_below_the_steps_done_changes_nothing(earlier_run, tmp_path, capsys):
    run = _copy(earlier_run, tmp_path)
    before = _files(run)
    args = ["--config", SET_UP, *TINY, f"train.output_dir={run}", "--resume", "auto"]
    assert main([*args, "train.steps=1"]) == 2
    err = _one_line_error(capsys)
    assert "train.steps=1 is below the 2 steps" in err and "nothing was changed" in err
    assert _files(run) == before
    assert main([*args, "train.steps=2"]) == 0
    assert "already at step 2 of train.steps=2: nothing to train" in capsys.readouterr().out
    assert _files(run) == before  # metrics_val.json keeps the run's validation


@pytest.mark.parametrize("override, message", [
    ("model.fusion=prod", "model.fusion='add' (this run: 'prod')"),  # same shapes, other network
    ("optim.optimizer=sgd", "optim.optimizer='adamw' (this run: 'sgd')"),
    ("model.width=0.25", "model.width=0.125 (this run: 0.25)"),
])
def test_resume_refuses_a_checkpoint_of_another_set_up(earlier_run, tmp_path, capsys,
                                                        override, message):
    run = _copy(earlier_run, tmp_path)
    before = _files(run)
    assert main(["--config", SET_UP, *TINY, f"train.output_dir={run}", "train.steps=3", override,
                 "--resume", "auto"]) == 2
    assert f"cannot resume from {checkpoint_path(run, LAST)}: it was trained with {message}" \
        in _one_line_error(capsys)
    assert _files(run) == before


def test_resume_refuses_a_training_state_of_another_set_up(earlier_run, tmp_path, capsys):
    """An optimiser state of a wider network has as many tensors, so torch loads it; the first
    step then failed deep inside AdamW with a traceback."""
    run = _copy(earlier_run, tmp_path)
    other = Trainer(_config(tmp_path / "other", "model.width=0.25"), DistContext())
    other.train_step(*next(other._training_batches()))
    other._save(LAST, {})
    shutil.copy(training_state_path(checkpoint_path(tmp_path / "other", LAST)),
                training_state_path(checkpoint_path(run, LAST)))
    assert main(["--config", SET_UP, *TINY, f"train.output_dir={run}", "train.steps=3",
                 "--resume", "auto"]) == 2
    err = _one_line_error(capsys)
    assert f"{training_state_path(checkpoint_path(run, LAST))} does not fit this run: " \
           f"ValueError: optimizer state 'exp_avg' of parameter 0" in err


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a state dict")
    return path


@pytest.mark.parametrize("override, message", [
    (lambda tmp: f"model.pretrained={tmp / 'resnet18.pth'}",
     "model.pretrained: backbone weights file {tmp}/resnet18.pth does not exist"),
    (lambda tmp: f"model.pretrained={_garbage(tmp)}", "model.pretrained: Weights only load failed"),
    pytest.param(lambda tmp: "train.device=cuda",
                 "device 'cuda' requested but CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
    (lambda tmp: "train.device=gpu", "unknown device 'gpu'; use auto, cpu, cuda or cuda:N"),
], ids=["missing-pretrained", "garbage-pretrained", "cuda-without-cuda", "unknown-device"])
def test_a_set_up_that_cannot_start_stops_with_one_line(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    assert main(["--config", SET_UP, *TINY, f"train.output_dir={out}", override(tmp_path)]) == 2
    assert message.format(tmp=tmp_path) in _one_line_error(capsys)
    assert not out.exists()


def test_a_malformed_config_file_exits_2_without_a_traceback(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"base: {SET_UP}\ntrain: {{steps: 3\n")
    done = subprocess.run([sys.executable, "-m", "densemtl_core.train", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (f"densemtl-train: {config} is not valid YAML: expected ',' or '}}', "
                           f"but got '<stream end>' (line 3, column 1)\n")


def test_resume_from_missing_checkpoint_is_an_error(tmp_path, capsys):
    args = [*TINY, f"train.output_dir={tmp_path}", "--resume", str(tmp_path / "nope.safetensors")]
    assert main(args) == 2
    assert "cannot resume" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_ddp_with_gloo(tmp_path):
    """Two CPU processes under torchrun train one model; rank 0 writes the checkpoint."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_port=29517", "-m", "densemtl_core.train",
               "--config", str(REPO / "config/train/synthetic_densemtl_sd.yaml"), *TINY,
               "train.threads=1", "train.steps=3", "train.batch_size=2",
               f"train.output_dir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from densemtl_core.checkpoint import read_metadata
    assert read_metadata(tmp_path / "last.safetensors").step == 3
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "train_log.jsonl").read_text().splitlines() if '"train"' in line]
    assert steps == [1, 2, 3]  # only rank 0 logs
