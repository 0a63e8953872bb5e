"""The trainer's speed settings on real tiny trainings: bfloat16 autocast on the CPU, loader
workers that serve every epoch from one loader, and the rendered-scene cache."""
import numpy as np
import torch

from densemtl_core.checkpoint import load_checkpoint
from densemtl_core.config import load_config
from densemtl_core.data.synthetic import SyntheticScenes
from densemtl_core.distributed import DistContext
from densemtl_core.train import LAST, Trainer, checkpoint_path
from tests.test_train import SET_UP, TINY


def _trainer(tmp_path, *extra: str) -> Trainer:
    return Trainer(load_config(SET_UP, TINY + [f"train.output_dir={tmp_path}", *extra]),
                   DistContext())


def test_bfloat16_with_workers_trains_and_saves_a_loadable_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, "train.steps=3", "train.precision=bfloat16",
                       "data.num_workers=1")
    metrics = trainer.fit()
    assert all(np.isfinite(value) for task in metrics.values() for value in task.values()
               if value is not None)
    model, metadata = load_checkpoint(checkpoint_path(tmp_path, LAST))
    assert metadata.step == 3
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


def test_bfloat16_runs_the_network_in_bfloat16_and_the_losses_in_float32(tmp_path):
    batch, _ = next(_trainer(tmp_path)._training_batches())
    losses = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        trainer = _trainer(tmp_path, f"train.precision={precision}")
        outputs = trainer.forward(batch["image"])
        assert all(o.dtype == torch.float32 for by_scale in outputs.values()
                   for o in by_scale.values())
        losses[precision] = trainer.train_step(batch)["total"]
    assert np.isfinite(losses["bfloat16"])
    assert losses["bfloat16"] != losses["float32"]  # the autocast is on
    assert abs(losses["bfloat16"] - losses["float32"]) < 0.05 * losses["float32"]


def test_workers_give_the_batches_of_the_main_process_across_epoch_ends(tmp_path):
    """One loader spans the epochs: each epoch still drops its own incomplete batch, and
    workers change nothing (no flips: those draw from each process's generator)."""
    steps = 9  # 16 samples, batches of 5: three batches an epoch, one sample dropped
    streams = []
    for workers in (0, 1):
        trainer = _trainer(tmp_path, "train.batch_size=5", "data.hflip=false",
                           f"data.num_workers={workers}")
        batches = trainer._training_batches()
        streams.append([next(batches)[0]["image"] for _ in range(steps)])
    for epoch in range(3):
        order = trainer._epoch_order(trainer.train_set, trainer.config.train.seed, epoch)
        for index in range(3):
            expected = torch.stack([trainer.train_set[i]["image"]
                                    for i in order[index * 5:(index + 1) * 5]])
            assert torch.equal(streams[0][epoch * 3 + index], expected)
    for main, worker in zip(*streams):
        assert torch.equal(main, worker)


def test_the_render_cache_returns_the_rendered_samples():
    cached = SyntheticScenes("train", 2, size=(24, 32), cache=True)
    fresh = SyntheticScenes("train", 2, size=(24, 32), cache=False)
    for index in range(2):
        first, again, rendered = cached[index], cached[index], fresh[index]
        assert first.keys() == rendered.keys()
        for key in rendered:
            assert torch.equal(first[key], rendered[key]) and torch.equal(again[key],
                                                                          rendered[key])
