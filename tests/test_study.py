"""The synthetic study's bookkeeping: spec, commands, Δm against the STL runs, the report."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import study_report  # noqa: E402
import study_spec  # noqa: E402

SPEC = """
output_dir: {out}
test_length: 10
seeds: [1, 2]
rows:
  - {{name: stl_semseg, config: config/train/synthetic_stl_semseg.yaml, group: stl}}
  - {{name: stl_depth, config: config/train/synthetic_stl_depth.yaml, group: stl}}
  - {{name: densemtl_sd, config: config/train/synthetic_densemtl_sd.yaml, group: main}}
  - name: densemtl_sd_prod
    config: config/train/synthetic_densemtl_sd.yaml
    overrides: ["model.fusion=prod"]
    group: ablation
    seeds: [1]
"""


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(out=tmp_path / "runs"))
    return study_spec.load_spec(path)


def _write_metrics(spec, name, seed, metrics):
    row = next(r for r in spec.rows if r.name == name)
    folder = spec.run_dir(row, seed) / "test"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}))


def test_spec_rows_seeds_and_commands(spec):
    assert [r.name for r in spec.rows] == ["stl_semseg", "stl_depth", "densemtl_sd",
                                           "densemtl_sd_prod"]
    assert spec.rows[0].seeds == (1, 2) and spec.rows[-1].seeds == (1,)
    prod = spec.rows[-1]
    train = study_spec.train_command(spec, prod, 1)
    assert train[:6] == ["densemtl-train", "--config", prod.config, "--resume", "auto",
                         "--overwrite"]  # a run stopped before its first checkpoint restarts
    assert "model.fusion=prod" in train and "train.seed=1" in train
    assert study_spec.eval_command(spec, prod, 1)[-1].endswith("densemtl_sd_prod/seed1/test")


def test_duplicate_row_names_are_refused(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(out=tmp_path).replace("name: stl_depth", "name: stl_semseg"))
    with pytest.raises(ValueError, match="unique"):
        study_spec.load_spec(path)


def test_delta_m_is_taken_against_the_mean_of_the_stl_seeds(spec):
    for seed, (miou, rmse) in {1: (0.30, 1.0), 2: (0.50, 1.0)}.items():
        _write_metrics(spec, "stl_semseg", seed, {"semseg": {"miou": miou}})
        _write_metrics(spec, "stl_depth", seed, {"depth": {"rmse": rmse}})
    # +10 % on mIoU (0.44 vs 0.40) and +10 % on RMSE (0.9 vs 1.0): Δm = +10 %.
    _write_metrics(spec, "densemtl_sd", 1, {"semseg": {"miou": 0.44}, "depth": {"rmse": 0.9}})
    report = study_report.gather(spec)
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == {"stl_semseg", "stl_depth", "densemtl_sd"}   # unfinished rows are left out
    assert report["stl_baselines"] == pytest.approx({"semseg": 0.40, "depth": 1.0})
    assert rows["densemtl_sd"]["delta_m"] == pytest.approx((10.0, 0.0))
    assert rows["stl_semseg"]["metrics"]["semseg"]["miou"][0] == pytest.approx(0.40)
    assert rows["densemtl_sd"]["cost"]["params_m"] > rows["stl_semseg"]["cost"]["params_m"]


def test_report_rewrites_only_the_generated_part(spec, tmp_path):
    _write_metrics(spec, "stl_semseg", 1, {"semseg": {"miou": 0.4}})
    out = tmp_path / "docs"
    out.mkdir()
    results = out / "RESULTS.md"
    results.write_text(f"intro\n{study_report.BEGIN}\nold table\n{study_report.END}\noutro\n")
    assert study_report.write_report(spec, out) == 0
    text = results.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| stl_semseg | S | 1 | 40.0 ± 0.0 |" in text
    assert json.loads((out / "study_results.json").read_text())["rows"][0]["name"] == "stl_semseg"
    assert (out / "study_delta_m.png").stat().st_size > 0


def test_rows_are_scored_their_own_ways_against_baselines_scored_alike(tmp_path):
    """A metric depth row is scored as it is and median-scaled, a relative one median-scaled
    only; each is compared with the single-task depth scored the same way."""
    path = tmp_path / "study.yaml"
    path.write_text(f"""
name: sde
output_dir: {tmp_path / "runs"}
test_length: 10
seeds: [1]
rows:
  - {{name: stl_depth, config: config/train/synthetic_stl_depth.yaml, group: stl,
     evaluations: [test, test_median_scaled]}}
  - {{name: sde_depth, config: config/train/synthetic_sde_depth.yaml, group: depth,
     evaluations: [test_median_scaled]}}
""")
    spec = study_spec.load_spec(path)
    relative = spec.rows[1]
    assert study_spec.eval_command(spec, relative, 1, "test_median_scaled")[-3:] == [
        "--median-scaling", "--out", f"{spec.run_dir(relative, 1)}/test_median_scaled"]
    for name, evaluation, rmse in (("stl_depth", "test", 1.0), ("stl_depth",
                                   "test_median_scaled", 0.8), ("sde_depth",
                                   "test_median_scaled", 0.88)):
        folder = spec.run_dir(next(r for r in spec.rows if r.name == name), 1) / evaluation
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"metrics": {"depth": {"rmse": rmse}}}))
    rows = {row["name"]: row for row in study_report.gather(spec)["rows"]}
    assert set(rows) == {"stl_depth", "stl_depth (median-scaled)", "sde_depth (median-scaled)"}
    assert rows["sde_depth (median-scaled)"]["delta_m"] == pytest.approx((-10.0, 0.0))
    begin, end = study_report.markers(spec)
    assert begin == "<!-- generated:sde:begin -->" and spec.file_stem == "study_sde"


def test_an_unknown_way_of_scoring_is_refused(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(out=tmp_path).replace("group: main}",
                                                      "group: main, evaluations: [test_ods]}"))
    with pytest.raises(ValueError, match="evaluations"):
        study_spec.load_spec(path)


def test_each_row_gets_the_share_of_the_source_to_oracle_gap_it_closes(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(f"""
name: uda
output_dir: {tmp_path / "runs"}
test_length: 10
seeds: [1, 2]
evaluations: [test_shifted]
tables:
  - {{title: "SD", groups: [sd]}}
rows:
  - {{name: source_only, config: config/train/synthetic_densemtl_sd.yaml, group: sd}}
  - {{name: oracle, config: config/train/synthetic_densemtl_sd.yaml, group: sd,
     overrides: ["data.domain=shifted"]}}
  - {{name: adapted, config: config/train/synthetic_uda_densemtl_sd.yaml, group: sd}}
gaps:
  sd: [source_only, oracle]
""")
    spec = study_spec.load_spec(path)
    assert study_spec.eval_command(spec, spec.rows[2], 1, "test_shifted")[-4:-2] == [
        "--domain", "shifted"]
    metrics = {"source_only": [(0.30, 2.0), (0.30, 2.0)], "oracle": [(0.50, 1.0), (0.70, 1.0)],
               "adapted": [(0.40, 2.5), (0.50, 1.5)]}
    edges = {"source_only": 0.6, "oracle": 0.5, "adapted": 0.55}  # the oracle is no better
    for row in spec.rows:
        for seed, (miou, rmse) in zip((1, 2), metrics[row.name]):
            folder = spec.run_dir(row, seed) / "test_shifted"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps(
                {"metrics": {"semseg": {"miou": miou}, "depth": {"rmse": rmse},
                             "edges": {"f1": edges[row.name]}}}))
    rows = {row["name"]: row for row in study_report.gather(spec)["rows"]}
    # Gap: mIoU 0.30 -> 0.60, RMSE 2.0 -> 1.0; the adapted seeds close 1/3 and 2/3 of the first,
    # -1/2 and +1/2 of the second.
    closed = rows["adapted (shifted domain)"]["gap_closed"]
    assert closed["semseg"][0] == pytest.approx(0.5)
    assert closed["depth"] == pytest.approx((0.0, math.sqrt(0.5)))
    assert "edges" not in closed
    assert rows["oracle (shifted domain)"]["gap_closed"]["semseg"][0] == pytest.approx(1.0)
    assert "gap closed S %" in study_report.render_markdown(spec, study_report.gather(spec))
    with pytest.raises(ValueError, match="gaps.sd names unknown rows"):
        path.write_text(path.read_text().replace("sd: [source_only, oracle]", "sd: [a, b]"))
        study_spec.load_spec(path)
