"""A folder that a tool writes its results into, checked before any work is done.

A tool writes a fixed set of file names there. An earlier run's results are never overwritten
silently, nor left beside a new run's (a picture the new run did not make would pass for its
own): they are refused, or, when the user asks (``--overwrite``), removed once the new run's
inputs have passed their checks. Anything else in the folder is left alone.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path


def check_results_folder(folder: Path, results: Iterable[Path], *,
                         overwrite: bool = False) -> list[Path]:
    """Create ``folder`` (and its parents) and make sure it can be written. Returns those of
    ``results`` (the files a run writes there) that an earlier run left, which ``overwrite``
    allows replacing (remove them with :func:`remove_results` once everything else is checked)
    and which are refused otherwise.

    Raises ValueError naming the folder and the problem: it is a file, cannot be created or
    written, or holds an earlier run's results.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"results folder {folder} is a file, not a folder")
    earlier = [path for path in results if path.is_file()]
    if earlier and not overwrite:
        raise ValueError(f"results folder {folder} holds an earlier run's results "
                         f"({', '.join(path.name for path in earlier)}); choose another folder, "
                         f"or replace them with --overwrite")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # permissions, a read-only file system
            pass
    except OSError as error:
        raise ValueError(f"results folder {folder} cannot be written: "
                         f"{error.strerror or error}") from error
    return earlier


def remove_results(paths: Iterable[Path]) -> None:
    """Remove an earlier run's results (from :func:`check_results_folder`)."""
    for path in paths:
        path.unlink(missing_ok=True)
