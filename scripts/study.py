"""Run the synthetic study and write its report (docs/RESULTS.md).

``python scripts/study.py run`` trains and evaluates every (row, seed) of the study spec that has
no test metrics yet, ``--jobs`` at a time with one thread each (small models use two cores better
as two processes than as one process with two threads). It can be stopped and started again: an
interrupted run resumes from its last checkpoint (every 100 steps), bit-exactly, and one
interrupted before its first checkpoint starts over.
``python scripts/study.py report`` gathers the test metrics, measures size, FLOPs and CPU latency
of each row's network and writes the Markdown report, a JSON file with every number and a
picture of Δm per row.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from study_spec import REPO, StudyRow, StudySpec, eval_command, load_spec, train_command


def _executable(command: list[str]) -> list[str]:
    """The console script from the interpreter running this file (the project's venv)."""
    return [str(Path(sys.executable).with_name(command[0])), *command[1:]]


def run_one(spec: StudySpec, row: StudyRow, seed: int) -> str:
    run_dir = spec.run_dir(row, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(run_dir / "study.log", "w", encoding="utf-8") as log:
        evaluations = [eval_command(spec, row, seed, name) for name in row.evaluations]
        for command in (train_command(spec, row, seed), *evaluations):
            full = _executable(command)
            if command[0] == "densemtl-train":  # execution details that leave results unchanged
                full += ["train.threads=1", "train.checkpoint_every=100"]
            result = subprocess.run(full, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                return f"FAILED {row.name} seed {seed} (see {run_dir / 'study.log'})"
    return f"done {row.name} seed {seed} in {time.perf_counter() - start:.0f} s"


def run(spec: StudySpec, jobs: int, only: set[str] | None) -> int:
    pending = [(row, seed) for row in spec.rows for seed in row.seeds
               if (only is None or row.name in only)
               and not all((spec.run_dir(row, seed) / name / "metrics.json").exists()
                           for name in row.evaluations)]
    print(f"{len(pending)} runs to do, {jobs} at a time", flush=True)
    failures = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for index, message in enumerate(pool.map(lambda job: run_one(spec, *job), pending), 1):
            failures += message.startswith("FAILED")
            print(f"[{index}/{len(pending)}] {message}", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--spec", type=Path, default=REPO / "config/study/synthetic.yaml")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (run)")
    parser.add_argument("--only", nargs="*", help="row names to run (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="report folder (report)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    if args.action == "run":
        return run(spec, args.jobs, set(args.only) if args.only else None)
    from study_report import write_report  # torch and the network: only the report needs them
    return write_report(spec, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
