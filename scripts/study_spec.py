"""The synthetic study's spec: its rows and seeds, where each run lives and the commands that
make it. The runner (study.py) and the report (study_report.py) both read it, so it lives apart
from either."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StudyRow:
    name: str
    config: str
    group: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudySpec:
    output_dir: Path
    test_length: int
    rows: tuple[StudyRow, ...] = field(default_factory=tuple)

    def run_dir(self, row: StudyRow, seed: int) -> Path:
        return self.output_dir / row.name / f"seed{seed}"


def load_spec(path: Path) -> StudySpec:
    with open(path, encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    default_seeds = tuple(raw["seeds"])
    rows = tuple(StudyRow(name=r["name"], config=r["config"], group=r["group"],
                          seeds=tuple(r.get("seeds", default_seeds)),
                          overrides=tuple(r.get("overrides", ())))
                 for r in raw["rows"])
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: row names must be unique")
    return StudySpec(output_dir=REPO / raw["output_dir"], test_length=int(raw["test_length"]),
                     rows=rows)


def train_command(spec: StudySpec, row: StudyRow, seed: int) -> list[str]:
    """Resume the run from its last checkpoint, or start it over where it left none (the
    folder is the study's own)."""
    return ["densemtl-train", "--config", row.config, "--resume", "auto", "--overwrite",
            *row.overrides,
            f"train.seed={seed}",
            f"train.output_dir={_relative(spec.run_dir(row, seed))}"]


def eval_command(spec: StudySpec, row: StudyRow, seed: int) -> list[str]:
    run_dir = _relative(spec.run_dir(row, seed))
    return ["densemtl-eval", "--checkpoint", f"{run_dir}/last.safetensors", "--split", "test",
            "--length", str(spec.test_length), "--out", f"{run_dir}/test"]


def _relative(path: Path) -> str:
    """``path`` as the commands show it: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
