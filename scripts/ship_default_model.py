"""Make a trained synthetic SDNE checkpoint the shipped default model.

Picks, among the study's DenseMTL SDNE seeds, the one with the best validation Δm against the
single-task runs' validation metrics (the test split plays no part in the choice), stores it in
half precision at ``densemtl_core.pretrained.DEFAULT_MODEL`` and records in its metadata the
metrics of the half-precision model on the whole test split and on the CI regression subset.
``--checkpoint`` ships one checkpoint without choosing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

from densemtl_core.checkpoint import load_checkpoint, save_checkpoint
from densemtl_core.pretrained import DEFAULT_MODEL
from densemtl_core.pretrained_check import REGRESSION_SCENES, measure
from densemtl_core.tasks import TASKS, delta_m, main_values
from study_spec import REPO, load_spec


def _validation(run_dir: Path) -> dict[str, dict[str, float]]:
    return json.loads((run_dir / "metrics_val.json").read_text(encoding="utf-8"))["metrics"]


def choose_by_validation(spec_path: Path, row_name: str) -> Path:
    """The last checkpoint of the seed of ``row_name`` with the best validation Δm."""
    spec = load_spec(spec_path)
    baselines: dict[str, list[float]] = {}
    for row in spec.rows:
        if row.group == "stl":
            for seed in row.seeds:
                for task, values in _validation(spec.run_dir(row, seed)).items():
                    baselines.setdefault(task, []).append(values[TASKS[task].main_metric])
    mean_baselines = {task: statistics.fmean(values) for task, values in baselines.items()}
    row = next(r for r in spec.rows if r.name == row_name)
    scored = []
    for seed in row.seeds:
        metrics = _validation(spec.run_dir(row, seed))
        gain = delta_m(main_values(metrics), mean_baselines)
        print(f"{row_name} seed {seed}: validation Δm {gain:+.2f} %")
        scored.append((gain, seed))
    best_seed = max(scored)[1]
    return spec.run_dir(row, best_seed) / "last.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="ship this checkpoint as it is")
    parser.add_argument("--spec", type=Path, default=REPO / "config/study/synthetic.yaml")
    parser.add_argument("--row", default="densemtl_sdne")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    source = (args.checkpoint or choose_by_validation(args.spec, args.row)).resolve()
    shown = str(source.relative_to(REPO) if source.is_relative_to(REPO) else source)
    model, metadata = load_checkpoint(source)
    # Measure the weights as users will load them: rounded to float16 and back.
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    print(f"measuring the float16 weights of {shown} on the test split ...", file=sys.stderr)
    records = {
        "source": shown,
        "test": {"scenes": metadata.config.data.test_length,
                 "metrics": measure(model, metadata)},
        "regression": {"scenes": REGRESSION_SCENES,
                       "metrics": measure(model, metadata, REGRESSION_SCENES)},
    }
    save_checkpoint(args.out, model, dataclasses.replace(metadata, metrics=records),
                    dtype=torch.float16)
    print(json.dumps(records, indent=2))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
