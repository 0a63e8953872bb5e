"""The report of the synthetic study: tables in docs/RESULTS.md, docs/study_results.json and a
picture of Δm per row.

Only the part of RESULTS.md between the ``generated`` markers is rewritten, so the discussion
written around the tables survives a regeneration. Δm of every run is taken against the mean of
the single-task runs over all seeds; a row's figures are the mean ± standard deviation over its
seeds. Size, FLOPs and latency are measured here, on the machine running the report, with one
thread and a batch of one at the study's input size.
"""
from __future__ import annotations

import functools
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from densemtl_core.config import load_config
from densemtl_core.models import build_model
from densemtl_core.models.flops import forward_flops
from densemtl_core.tasks import TASKS, delta_m
from densemtl_core.viz import save_png
from study_spec import EVALUATIONS, StudyRow, StudySpec, eval_command, train_command

BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"
RESULTS_FORMAT_VERSION = 1


def markers(spec: StudySpec) -> tuple[str, str]:
    """The comments around a study's generated part of RESULTS.md."""
    if not spec.name:
        return BEGIN, END
    return f"<!-- generated:{spec.name}:begin -->", f"<!-- generated:{spec.name}:end -->"


def _seed_metrics(spec: StudySpec, row: StudyRow, evaluation: str = "test"
                  ) -> dict[int, dict[str, dict[str, float]]]:
    found = {}
    for seed in row.seeds:
        path = spec.run_dir(row, seed) / evaluation / "metrics.json"
        if path.exists():
            found[seed] = json.loads(path.read_text(encoding="utf-8"))["metrics"]
    return found


def _stl_baselines(spec: StudySpec, results: dict[str, dict[int, Any]]) -> dict[str, float]:
    """Per task, the single-task runs' main metric averaged over seeds (``results``: by row,
    the runs of one way of scoring)."""
    baselines = {}
    for row in spec.rows:
        if row.group != "stl" or not results[row.name]:
            continue
        for task, task_spec in TASKS.items():
            values = [m[task][task_spec.main_metric] for m in results[row.name].values() if task in m]
            if values:
                baselines[task] = statistics.fmean(values)
    return baselines


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@functools.lru_cache(maxsize=None)  # a row scored several ways is measured once
def _cost(row: StudyRow, threads: int = 1, repeats: int = 20) -> dict[str, float]:
    """Parameters, forward FLOPs and median CPU latency of the row's network (batch 1)."""
    cfg = load_config(row.config, list(row.overrides))
    model = build_model(cfg.model).eval()
    image = torch.rand(1, 3, *cfg.data.image_size)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(5):
                model(image)
            medians = []
            for _ in range(3):  # the best of three medians shrugs off a busy moment
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(image)
                    times.append(time.perf_counter() - start)
                medians.append(float(np.median(times)))
    finally:
        torch.set_num_threads(previous_threads)
    return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflops": forward_flops(model, cfg.data.image_size) / 1e9,
            "latency_ms": 1000 * min(medians)}


def gather(spec: StudySpec) -> dict[str, Any]:
    scored = {name: {row.name: _seed_metrics(spec, row, name) if name in row.evaluations else {}
                     for row in spec.rows} for name in EVALUATIONS}
    # Rows are compared with the single-task baselines scored the same way; a task whose
    # baseline is not scored that way (segmentation: scaling touches depth only) takes the
    # plain one.
    plain = _stl_baselines(spec, scored["test"])
    baselines = {name: {**plain, **_stl_baselines(spec, results)}
                 for name, results in scored.items()}
    rows = []
    for evaluation, row in ((name, row) for name in EVALUATIONS for row in spec.rows):
        runs = scored[evaluation][row.name]
        if not runs:
            continue
        tasks = [task for task in TASKS if task in next(iter(runs.values()))]
        metric_names = {task: sorted(next(iter(runs.values()))[task]) for task in tasks}
        summary = {task: {name: _mean_std([m[task][name] for m in runs.values()])
                          for name in metric_names[task]} for task in tasks}
        deltas = []
        if all(task in baselines[evaluation] for task in tasks):
            deltas = [delta_m({t: m[t][TASKS[t].main_metric] for t in tasks},
                              baselines[evaluation])
                      for m in runs.values()]
        rows.append({
            "name": row.name + EVALUATIONS[evaluation][1], "group": row.group,
            "evaluation": evaluation, "config": row.config,
            "overrides": list(row.overrides), "tasks": tasks, "seeds": sorted(runs),
            "metrics": summary, "delta_m": _mean_std(deltas) if deltas else None,
            "gap_closed": None, "cost": _cost(row),
            "commands": [[" ".join(train_command(spec, row, seed)),
                          " ".join(eval_command(spec, row, seed, evaluation))]
                         for seed in sorted(runs)]})
    _add_gaps_closed(spec, rows, scored)
    return {"format_version": RESULTS_FORMAT_VERSION, "stl_baselines": baselines["test"],
            "stl_baselines_by_evaluation": baselines,
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
            "test_scenes": spec.test_length, "rows": rows}


def _add_gaps_closed(spec: StudySpec, rows: list[dict[str, Any]],
                     scored: dict[str, dict[str, dict[int, Any]]]) -> None:
    """Each row of a group with a gap (``spec.gaps``) gets, per task, the share of the gap
    between the bounding rows' mean main metrics that it closes (mean ± std over its seeds;
    1 = as good as the upper bound, 0 = no better than the lower, below 0 = worse). A task the
    upper bound does no better on has no gap, and no share."""
    for report_row in rows:
        if report_row["group"] not in spec.gaps:
            continue
        evaluation = report_row["evaluation"]
        name = report_row["name"].removesuffix(EVALUATIONS[evaluation][1])
        lower, upper = (scored[evaluation][bound] for bound in spec.gaps[report_row["group"]])
        if not lower or not upper:
            continue
        closed = {}
        for task in report_row["tasks"]:
            key = TASKS[task].main_metric
            low = statistics.fmean(m[task][key] for m in lower.values())
            high = statistics.fmean(m[task][key] for m in upper.values())
            if (high > low) if TASKS[task].higher_is_better else (high < low):  # else no gap
                closed[task] = _mean_std([(m[task][key] - low) / (high - low)
                                          for m in scored[evaluation][name].values()])
        report_row["gap_closed"] = closed


def _cell(value: tuple[float, float] | None, digits: int, scale: float = 1.0,
          signed: bool = False) -> str:
    if value is None:
        return "–"
    mean, std = value
    sign = "+" if signed else ""
    return f"{round(mean * scale, digits) + 0.0:{sign}.{digits}f} ± {std * scale:.{digits}f}"


def _main_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = [spec.study_column for spec in TASKS.values()]
    gap_tasks = [task for task in TASKS if any(task in (row["gap_closed"] or {}) for row in rows)]
    lines = ["| row | tasks | seeds | " + "".join(f"{column.header} | " for column in columns)
             + "".join(f"gap closed {TASKS[task].letter} % | " for task in gap_tasks)
             + "Δm % ↑ | params M | GFLOPs | CPU ms |",
             "|---|---|---|" + "---|" * (len(columns) + len(gap_tasks)) + "---|---|---|---|"]
    for row in rows:
        metric = row["metrics"]
        cells = [_cell(metric[task][spec.main_metric], spec.study_column.digits,
                       spec.study_column.scale) if task in metric else ""
                 for task, spec in TASKS.items()]
        cells += [_cell((row["gap_closed"] or {}).get(task), 0, 100, signed=True)
                  for task in gap_tasks]
        cost = row["cost"]
        letters = "".join(TASKS[t].letter for t in row["tasks"])
        lines.append(f"| {row['name']} | {letters} | {len(row['seeds'])} | " + " | ".join(cells)
                     + f" | {_cell(row['delta_m'], 2, signed=True)} | {cost['params_m']:.2f} "
                     f"| {cost['gflops']:.3f} | {cost['latency_ms']:.1f} |")
    return lines


def _all_metrics_tables(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for task in TASKS:
        having = [row for row in rows if task in row["metrics"]]
        if not having:
            continue
        names = sorted(having[0]["metrics"][task])
        lines += ["", f"**{task}** (mean ± std over seeds)", "",
                  "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for row in having:
            values = row["metrics"][task]
            lines.append(f"| {row['name']} | "
                         + " | ".join(_cell(values[name], 4) for name in names) + " |")
    return lines


def _commands(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", "Commands that regenerate every run (from the repository root, in the venv):", "",
             "```bash"]
    for row in rows:
        for train, evaluate in row["commands"]:
            lines += [train, evaluate]
    return lines + ["```"]


def render_markdown(spec: StudySpec, report: dict[str, Any]) -> str:
    rows = report["rows"]
    begin, end = markers(spec)
    lines = [begin, "", f"Test split: {report['test_scenes']} scenes. Cost columns measured on "
             f"{report['machine']}, 1 thread, batch 1.", ""]
    for title, wanted in spec.tables:
        chosen = [row for row in rows if row["group"] in wanted]
        if chosen:
            lines += [f"#### {title}", "", *_main_table(chosen), ""]
    lines += ["#### Every metric", *_all_metrics_tables(rows), *_commands(rows), "", end]
    return "\n".join(lines)


def bars_picture(bars: list[tuple[str, tuple[float, float]]], axis: str,
                 bar_height: int = 22) -> np.ndarray:
    """Horizontal bars (mean, with a ±std whisker) around zero, one per (label, value)."""
    width, label_width = 720, 230
    height = bar_height * len(bars) + 40
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    extent = max([abs(mean) + std for _, (mean, std) in bars] + [1.0])
    zero = label_width + (width - label_width - 20) / 2
    scale = (width - label_width - 30) / 2 / extent
    draw.line([(zero, 10), (zero, height - 20)], fill=(0, 0, 0))
    for index, (label, (mean, std)) in enumerate(bars):
        top = 12 + index * bar_height
        colour = (44, 160, 44) if mean >= 0 else (214, 39, 40)
        draw.rectangle([min(zero, zero + mean * scale), top, max(zero, zero + mean * scale),
                        top + bar_height - 6], fill=colour)
        middle = top + (bar_height - 6) / 2
        draw.line([(zero + (mean - std) * scale, middle), (zero + (mean + std) * scale, middle)],
                  fill=(0, 0, 0))
        draw.text((4, top + 2), f"{label}  {mean:+.2f}", fill=(0, 0, 0))
    draw.text((label_width, height - 16), f"{axis}, axis +-{extent:.1f}", fill=(0, 0, 0))
    return np.asarray(canvas)


def delta_m_picture(rows: list[dict[str, Any]]) -> np.ndarray:
    """Δm of every multi-task row against the single-task ones."""
    return bars_picture([(row["name"], row["delta_m"]) for row in rows
                         if row["delta_m"] is not None and row["group"] != "stl"],
                        "delta-m (%) against single-task")


def gap_picture(rows: list[dict[str, Any]]) -> np.ndarray:
    """The share of the gap each row closes, per task, in percent."""
    return bars_picture([(f"{row['name']} {TASKS[task].letter}", (100 * mean, 100 * std))
                         for row in rows for task, (mean, std) in (row["gap_closed"] or {}).items()],
                        "gap closed (%)")


def write_report(spec: StudySpec, out_dir: Path) -> int:
    report = gather(spec)
    if not report["rows"]:
        print("no finished runs to report")
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / f"{spec.file_stem}_results.json"
    picture_path = out_dir / (f"{spec.file_stem}_gap_closed.png" if spec.gaps
                              else f"{spec.file_stem}_delta_m.png")
    results_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown_path = out_dir / "RESULTS.md"
    begin, end = markers(spec)
    text = markdown_path.read_text(encoding="utf-8") if markdown_path.exists() else \
        f"# Results\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise ValueError(f"{markdown_path} lacks the markers {begin} and {end}")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    markdown_path.write_text(head + render_markdown(spec, report) + tail, encoding="utf-8")
    save_png(picture_path, (gap_picture if spec.gaps else delta_m_picture)(report["rows"]))
    print(f"wrote {markdown_path}, {results_path}, {picture_path}")
    return 0
