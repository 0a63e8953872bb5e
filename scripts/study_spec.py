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
    evaluations: tuple[str, ...] = ("test",)
    """How the row is scored (names of ``EVALUATIONS``): a relative-depth model only
    median-scaled, a metric one both ways."""


EVALUATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "test": ((), ""),
    "test_median_scaled": (("--median-scaling",), " (median-scaled)"),
    "test_shifted": (("--domain", "shifted"), " (shifted domain)"),
}
"""Ways a study scores each run on the test split: name (the run's sub-folder) -> the extra
``densemtl-eval`` options and the suffix its rows carry in the report."""

DEFAULT_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Single-task baselines and multi-task models", ("stl", "main")),
    ("Ablation of the exchange (SDNE)", ("ablation",)))


@dataclass(frozen=True)
class StudySpec:
    output_dir: Path
    test_length: int
    rows: tuple[StudyRow, ...] = field(default_factory=tuple)
    name: str = ""
    """Names the report's files and its part of RESULTS.md; empty for the main study."""
    tables: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_TABLES
    """The report's tables: title and the row groups it shows."""
    gaps: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Per row group, the rows whose main metrics bound a gap (e.g. source-only and oracle):
    the report gives each row of the group the share of that gap it closes."""

    def run_dir(self, row: StudyRow, seed: int) -> Path:
        return self.output_dir / row.name / f"seed{seed}"

    @property
    def file_stem(self) -> str:
        return f"study_{self.name}" if self.name else "study"


def load_spec(path: Path) -> StudySpec:
    with open(path, encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    default_seeds = tuple(raw["seeds"])
    default_evaluations = tuple(raw.get("evaluations", ("test",)))
    rows = tuple(StudyRow(name=r["name"], config=r["config"], group=r["group"],
                          seeds=tuple(r.get("seeds", default_seeds)),
                          overrides=tuple(r.get("overrides", ())),
                          evaluations=tuple(r.get("evaluations", default_evaluations)))
                 for r in raw["rows"])
    for row in rows:
        if not row.evaluations or set(row.evaluations) - set(EVALUATIONS):
            raise ValueError(f"{path}: row {row.name}: evaluations must be a non-empty subset of "
                             f"{sorted(EVALUATIONS)}, got {list(row.evaluations)}")
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: row names must be unique")
    tables = tuple((t["title"], tuple(t["groups"])) for t in raw.get("tables", ())) \
        or DEFAULT_TABLES
    gaps = {group: (str(bounds[0]), str(bounds[1]))
            for group, bounds in raw.get("gaps", {}).items()}
    for group, bounds in gaps.items():
        if not set(bounds) <= set(names):
            raise ValueError(f"{path}: gaps.{group} names unknown rows {list(bounds)}")
    return StudySpec(output_dir=REPO / raw["output_dir"], test_length=int(raw["test_length"]),
                     rows=rows, name=str(raw.get("name", "")), tables=tables, gaps=gaps)


def train_command(spec: StudySpec, row: StudyRow, seed: int) -> list[str]:
    """Resume the run from its last checkpoint, or start it over where it left none (the
    folder is the study's own)."""
    return ["densemtl-train", "--config", row.config, "--resume", "auto", "--overwrite",
            *row.overrides,
            f"train.seed={seed}",
            f"train.output_dir={_relative(spec.run_dir(row, seed))}"]


def eval_command(spec: StudySpec, row: StudyRow, seed: int, evaluation: str = "test"
                 ) -> list[str]:
    run_dir = _relative(spec.run_dir(row, seed))
    return ["densemtl-eval", "--checkpoint", f"{run_dir}/last.safetensors", "--split", "test",
            "--length", str(spec.test_length), *EVALUATIONS[evaluation][0],
            "--out", f"{run_dir}/{evaluation}"]


def _relative(path: Path) -> str:
    """``path`` as the commands show it: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
