"""The files a bag evaluation writes into its report folder (:func:`result_files`), which is
checked before any work like every tool's (:mod:`densemtl_core.results_folder`)."""
from __future__ import annotations

from pathlib import Path

from densemtl_core.config import TASK_NAMES
from densemtl_core.results_folder import check_results_folder

REPORT_FILE = "report.json"
FRAMES_FILE = "frames.csv"
NODE_LOG_FILE = "node.log"
MOSAIC_KINDS = ("worst", "best")


def mosaic_file(folder: Path, kind: str, task: str) -> Path:
    """Where the mosaic of the ``kind`` ("worst" or "best") frames by ``task`` goes."""
    return folder / f"{kind}_{task}.png"


def result_files(folder: Path) -> list[Path]:
    """Every file a run may write into ``folder``."""
    return [folder / REPORT_FILE, folder / FRAMES_FILE, folder / NODE_LOG_FILE,
            *(mosaic_file(folder, kind, task) for kind in MOSAIC_KINDS for task in TASK_NAMES)]


def check_report_folder(folder: Path, *, overwrite: bool = False) -> list[Path]:
    """:func:`densemtl_core.results_folder.check_results_folder` for a bag evaluation's
    results."""
    return check_results_folder(folder, result_files(folder), overwrite=overwrite)
