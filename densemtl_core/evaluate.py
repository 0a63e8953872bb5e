"""Evaluation: dataset-wide metrics per task, a metrics JSON and a mosaic of predictions.

``densemtl-eval --checkpoint CKPT --split test --out DIR``
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .checkpoint import CheckpointError, ModelMetadata, data_origin, load_checkpoint
from .config import SYNTHETIC_DOMAINS, ConfigError, ModelConfig
from .data import build_dataset
from .devices import DeviceError, resolve_device
from .distributed import DistContext, all_reduce_sum_
from .losses import resize_to_label
from .results_folder import check_results_folder, remove_results
from .strict_json import write_json
from .tasks import TASKS, decode_outputs
from .viz import mosaic, save_png

METRICS_FORMAT_VERSION = 1
METRICS_FILE = "metrics.json"
PICTURE_FILE = "predictions.png"
RESULT_FILES = (METRICS_FILE, PICTURE_FILE)


def outputs_at_scale(outputs: dict[str, dict[int, torch.Tensor]], scale: int,
                     size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Raw outputs of one scale, resized to ``size`` the way the losses see them."""
    resized = {}
    for task, by_scale in outputs.items():
        resized[task] = resize_to_label(by_scale[scale], size)
    return resized


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, cfg: ModelConfig, *,
             device: torch.device, scale: int = 0, ctx: DistContext | None = None,
             progress: bool = True) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` over every sample of ``loader`` (all ranks' shards when distributed).

    Predictions at ``scale`` are resized to the label resolution before decoding; scale 0 is the
    network's final output (METHOD.md section 9.2). Samples flagged ``has_<task>`` False carry
    no label of that task and are left out of its meter.
    """
    ctx = ctx or DistContext(device=device)
    was_training = model.training
    model.eval()
    meters = {task: TASKS[task].make_meter(cfg) for task in cfg.tasks}
    batches = tqdm(loader, desc="evaluate", unit="batch", leave=False,
                   disable=not (progress and ctx.is_main))
    for batch in batches:
        image = batch["image"].to(device, non_blocking=True)
        outputs = model(image)
        decoded = decode_outputs(outputs_at_scale(outputs, scale, image.shape[-2:]), cfg)
        for task, prediction in decoded.items():
            if task not in batch:
                continue
            prediction, target = prediction.float().cpu(), batch[task]
            labelled = batch.get(f"has_{task}")  # partly labelled data (recordings, folders)
            if labelled is not None:
                if not labelled.any():
                    continue
                prediction, target = prediction[labelled.cpu()], target[labelled]
            TASKS[task].update_meter(meters[task], prediction, target)
    if ctx.enabled:
        for meter in meters.values():
            state = meter.state()
            meter.load_state({key: all_reduce_sum_(value.to(ctx.device, copy=True), ctx).to(value.device)
                              for key, value in state.items()})
    model.train(was_training)
    return {task: meter.compute() for task, meter in meters.items()}


def unscored_tasks(metrics: dict[str, dict[str, float]]) -> list[str]:
    """The tasks whose main metric is not a number: no sample had a valid pixel of them."""
    return [task for task, values in metrics.items()
            if not math.isfinite(values[TASKS[task].main_metric])]


def main_metric_summary(metrics: dict[str, dict[str, float]]) -> str:
    """One line with each task's main metric, e.g. ``semseg miou=0.71 | depth rmse=0.42``."""
    parts = []
    for task, values in metrics.items():
        key = TASKS[task].main_metric
        parts.append(f"{task} {key}={values[key]:.4g}")
    return " | ".join(parts)


@torch.no_grad()
def prediction_mosaic(model: torch.nn.Module, dataset: Dataset, metadata: ModelMetadata,
                      indices: Sequence[int], device: torch.device) -> np.ndarray:
    """Rows of input | each task's prediction | its ground truth, for the given samples."""
    cfg = metadata.config.model
    info = metadata.display_info()
    model.eval()
    rows = []
    for index in indices:
        sample = dataset[index]
        image = sample["image"].unsqueeze(0).to(device)
        decoded = decode_outputs(outputs_at_scale(model(image), 0, image.shape[-2:]), cfg)
        rgb = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        row = [("input", rgb)]
        for task in cfg.tasks:
            spec = TASKS[task]
            row.append((f"{spec.title} pred", spec.render(spec.to_display(decoded[task][0]), info)))
            if task in sample and bool(sample.get(f"has_{task}", True)):
                target = sample[task]
                target = target if target.dim() == 2 else spec.to_display(target.float())
                row.append((f"{spec.title} gt", spec.render(np.asarray(target), info)))
        rows.append(row)
    return mosaic(rows)


def write_report(out_dir: Path, metrics: dict[str, dict[str, float]], context: dict[str, Any]
                 ) -> Path:
    """``metrics.json`` in ``out_dir``; a metric nothing was scored for is null."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"format_version": METRICS_FORMAT_VERSION, **context, "metrics": metrics}
    return write_json(out_dir / METRICS_FILE, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemtl-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--out", default=None, help="output folder (default: next to checkpoint)")
    parser.add_argument("--length", type=int, default=None,
                        help="number of samples (synthetic data; default: the checkpoint's config)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--scale", type=int, default=0, help="output scale to score (0 = final)")
    parser.add_argument("--median-scaling", action="store_true",
                        help="score depth after per-image median scaling, as a relative-depth "
                             "model always is (shows a metric model's depth up to scale)")
    parser.add_argument("--mosaic-samples", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None, help="dataset root (overrides the checkpoint)")
    parser.add_argument("--domain", default=None, choices=SYNTHETIC_DOMAINS,
                        help="render domain of synthetic data (overrides the checkpoint): "
                             "scores a model on the domain it was adapted to, or was not")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace an earlier evaluation's {' and '.join(RESULT_FILES)} in "
                             f"the output folder (anything else there is left alone)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.length is not None and args.length < 1:
        print(f"densemtl-eval: --length must be at least 1, got {args.length}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).with_suffix("") / args.split
    try:
        earlier = check_results_folder(out_dir, [out_dir / name for name in RESULT_FILES],
                                       overwrite=args.overwrite)
    except ValueError as error:
        print(f"densemtl-eval: {error}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        model, metadata = load_checkpoint(args.checkpoint, device=device)
    except (DeviceError, CheckpointError) as error:
        print(f"densemtl-eval: {error}", file=sys.stderr)
        return 2
    data_cfg = metadata.config.data
    overrides: dict[str, Any] = {}
    if args.length is not None:
        overrides[f"{args.split}_length"] = args.length
    if args.data_root is not None:
        overrides["root"] = args.data_root
    if args.domain is not None:
        overrides["domain"] = args.domain
    data_cfg = dataclasses.replace(data_cfg, **overrides)
    try:
        dataset = build_dataset(data_cfg, args.split, train=False)
    except ConfigError as error:
        print(f"densemtl-eval: {error}", file=sys.stderr)
        return 2
    if len(dataset) == 0:
        print(f"densemtl-eval: the {args.split} split of {data_cfg.dataset} has no samples",
              file=sys.stderr)
        return 2
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                        num_workers=data_cfg.num_workers)
    if args.scale not in metadata.config.model.output_scales:
        print(f"densemtl-eval: scale {args.scale} is not an output of this model "
              f"(scales {list(metadata.config.model.output_scales)})", file=sys.stderr)
        return 2
    model_cfg = metadata.config.model
    if args.median_scaling:  # scored as a relative model is: up to one scale per image
        model_cfg = dataclasses.replace(model_cfg, depth_units="relative")
    start = time.perf_counter()
    metrics = evaluate(model, loader, model_cfg, device=device, scale=args.scale)
    seconds = time.perf_counter() - start
    remove_results(earlier)
    report = write_report(out_dir, metrics, {
        "checkpoint": str(args.checkpoint), "split": args.split, "samples": len(dataset),
        "scale": args.scale, "seconds": round(seconds, 3), "dataset": data_cfg.dataset,
        "data": data_origin(data_cfg),
        "depth_units": metadata.config.model.depth_units,
        "depth_scoring": "median-scaled" if model_cfg.depth_units == "relative" else "metric"})
    for task, values in metrics.items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"{task:8s} {shown}")
    print(f"wrote {report}")
    unscored = unscored_tasks(metrics)
    for task in unscored:
        print(f"densemtl-eval: warning: no sample of the {args.split} split has a valid {task} "
              f"pixel; its metrics are null", file=sys.stderr)
    count = min(args.mosaic_samples, len(dataset))
    if count > 0:
        picture = prediction_mosaic(model, dataset, metadata, range(count), device)
        print(f"wrote {save_png(out_dir / PICTURE_FILE, picture)}")
    return 1 if len(unscored) == len(metrics) else 0


if __name__ == "__main__":
    raise SystemExit(main())
