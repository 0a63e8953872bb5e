"""Training throughput (images/s) and forward latency of the small and the full-size models.

    python benchmarks/model_speed.py [--configs small resnet101 sd sde_sd] [--steps 5] [--threads N]
    python benchmarks/model_speed.py --speedups [--steps 20] [--before TREE]

"small" is config/train/synthetic_densemtl_sdne.yaml (ResNet-18, width 0.25) at 128x160;
"resnet101" is the method's network (ResNet-101, width 1) on the same SDNE task set at 256x320.
"sd" and "sde_sd" put a supervised DenseMTL SD step beside the same network learning depth
from video (synthetic_sde_densemtl_sd.yaml: three frames, the pose network, warping at four
scales), both at 128x160: the cost of self-supervision. A training step is the trainer's own:
its objectives, backward and the optimiser step. Prints one line per configuration; figures
depend on the machine, nothing is asserted.

``--speedups`` times the real trainer (``Trainer.train_step`` on batches from its own loader,
the wait for the next batch included) on the small model at 128x160, batch 8, with today's
settings and with each speed-up (``SPEEDUPS``) alone and together, in one run. The steps are a
run's first: every sample is rendered, as in the first epoch (later epochs read the cache).
``--before TREE`` first times, the same way, the trainer of another checkout (a ``git worktree``
of an earlier commit) with its default settings: before and after, side by side in one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from densemtl_core.config import load_config
from densemtl_core.distributed import DistContext
from densemtl_core.models import build_model
from densemtl_core.objectives import Step
from densemtl_core.train import Trainer, build_objectives

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = REPO / "config/train"
SIZE_128 = "data.image_size=[128, 160]"
CONFIGS = {  # name -> (set-up, overrides, training batch size)
    "small": ("synthetic_densemtl_sdne.yaml", [SIZE_128], 8),
    "resnet101": ("synthetic_densemtl_sdne.yaml", ["model.backbone=resnet101", "model.width=1.0",
                                                   "data.image_size=[256, 320]"], 2),
    "sd": ("synthetic_densemtl_sd.yaml", [SIZE_128], 8),
    "sde_sd": ("synthetic_sde_densemtl_sd.yaml", [SIZE_128], 8),
}

SPEEDUPS = {  # name -> overrides of the small set-up at 128x160
    "now, defaults (float32)": [],
    "data.num_workers=1": ["data.num_workers=1"],
    "train.precision=bfloat16": ["train.precision=bfloat16"],
    "both": ["data.num_workers=1", "train.precision=bfloat16"],
}


def fake_batch(config, batch_size: int) -> dict[str, torch.Tensor]:
    """Random inputs and targets of the right shapes: speed does not depend on the values."""
    height, width = config.data.image_size
    batch = {
        "image": torch.rand(batch_size, 3, height, width),
        "semseg": torch.randint(0, config.model.num_classes, (batch_size, height, width)),
        "depth": torch.rand(batch_size, 1, height, width) * 9 + 1,
        "normals": torch.nn.functional.normalize(torch.randn(batch_size, 3, height, width), dim=1),
        "edges": torch.randint(0, 2, (batch_size, height, width)),
    }
    if config.objectives.photometric.enabled:  # a frame triplet with its camera
        focal = 0.8 * width
        intrinsics = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        batch.update(image_prev=torch.rand(batch_size, 3, height, width),
                     image_next=torch.rand(batch_size, 3, height, width),
                     intrinsics=intrinsics.expand(batch_size, 3, 3),
                     travel=torch.full((batch_size, 2), 0.05))
    return batch


def measure(name: str, setup: str, overrides: list[str], steps: int, batch_size: int) -> None:
    config = load_config(TRAIN_CONFIGS / setup, overrides)
    model = build_model(config.model)
    objectives = build_objectives(config, model)
    trained = [*model.parameters(), *(p for o in objectives.values() for p in o.parameters())]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    batch = fake_batch(config, batch_size)
    params = sum(p.numel() for p in model.parameters()) / 1e6

    model.train()
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        outputs = model(batch["image"])
        step_view = Step(batch, outputs, model)
        total = sum(objective.loss(step_view)[0] for objective in objectives.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        if step:  # the first step pays for allocations
            times.append(time.perf_counter() - start)
    train_ips = batch_size / statistics.median(times)

    model.eval()
    image = batch["image"][:1]
    latencies = []
    with torch.inference_mode():
        for step in range(steps * 2 + 1):
            start = time.perf_counter()
            model(image)
            if step:
                latencies.append(time.perf_counter() - start)
    latencies.sort()
    p50 = statistics.median(latencies) * 1e3
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1e3
    height, width = config.data.image_size
    print(f"{name:10s} {config.model.backbone:9s} width={config.model.width:<4} "
          f"{height}x{width}  params={params:6.2f}M  train={train_ips:7.2f} img/s "
          f"(batch {batch_size})  forward p50={p50:8.1f} ms  p95={p95:8.1f} ms "
          f"(batch 1, {torch.get_num_threads()} threads)")


def trainer_speed(overrides: list[str], steps: int) -> float:
    """Training images/s of the real trainer's steps, loading included (median of ``steps``
    after two warm-up steps)."""
    with tempfile.TemporaryDirectory() as out_dir:
        config = load_config(TRAIN_CONFIGS / "synthetic_densemtl_sdne.yaml",
                             [SIZE_128, "train.device=cpu", f"train.output_dir={out_dir}",
                              *overrides])
        trainer = Trainer(config, DistContext())
        trainer.network.train()
        batches = trainer._training_batches()
        times = []
        for step in range(steps + 2):
            start = time.perf_counter()
            trainer.train_step(*next(batches))
            if step >= 2:
                times.append(time.perf_counter() - start)
        del batches  # stops the loader's workers
    return config.train.batch_size / statistics.median(times)


def checkout_speed(tree: Path, steps: int) -> float:
    """:func:`trainer_speed` with default settings on the densemtl_core of checkout ``tree``,
    in a process of its own that imports that checkout."""
    code = ("import importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('model_speed', sys.argv[1])\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(module)\n"
            "print(module.trainer_speed([], int(sys.argv[2])))")
    result = subprocess.run([sys.executable, "-c", code, __file__, str(steps)], cwd=tree,
                            env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.split()[-1])


def compare_speedups(steps: int, before: Path | None) -> None:
    rows = [(f"before ({before.name}, defaults)", lambda: checkout_speed(before, steps))] \
        if before else []
    rows += [(name, lambda overrides=overrides: trainer_speed(overrides, steps))
             for name, overrides in SPEEDUPS.items()]
    baseline = None
    for name, speed_of in rows:
        speed = speed_of()
        baseline = baseline or speed
        print(f"{name:28s} train={speed:6.2f} img/s  x{speed / baseline:4.2f}  (small, 128x160, "
              f"batch 8, {torch.get_num_threads()} threads)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--speedups", action="store_true",
                        help="compare the trainer's speed-ups instead (SPEEDUPS)")
    parser.add_argument("--before", type=Path,
                        help="with --speedups: first time the trainer of this checkout")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.speedups:
        compare_speedups(args.steps, args.before)
        return
    for name in args.configs:
        setup, overrides, batch_size = CONFIGS[name]
        measure(name, setup, overrides, args.steps, batch_size)


if __name__ == "__main__":
    main()
