"""The folder a bag evaluation writes its results into, checked before any work is done.

A run writes a fixed set of names (:func:`result_files`). An earlier run's results are never
overwritten silently, nor left beside a new report (a mosaic of a task the new run did not
score would pass for its own): they are refused, or removed when asked, once the run's inputs
have passed their checks. Anything else in the folder (the recording itself, the user's files)
is left alone.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from densemtl_core.config import TASK_NAMES

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
    """Create ``folder`` (and its parents) and make sure it can be written. Returns an earlier
    run's results in it, which ``overwrite`` allows replacing (remove them with
    :func:`remove_results` once everything else is checked) and which are refused otherwise.

    Raises ValueError naming the folder and the problem: it is a file, cannot be created or
    written, or holds an earlier run's results.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"report folder {folder} is a file, not a folder")
    earlier = [path for path in result_files(folder) if path.is_file()]
    if earlier and not overwrite:
        raise ValueError(f"report folder {folder} holds an earlier run's results "
                         f"({', '.join(path.name for path in earlier)}); choose another folder, "
                         f"or replace them with --overwrite")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # permissions, a read-only file system
            pass
    except OSError as error:
        raise ValueError(f"report folder {folder} cannot be written: "
                         f"{error.strerror or error}") from error
    return earlier


def remove_results(paths: list[Path]) -> None:
    """Remove an earlier run's results (from :func:`check_report_folder`)."""
    for path in paths:
        path.unlink(missing_ok=True)
