"""Where the files the package reads at run time are, however it was installed.

``config/`` (the node's parameters file, the Fast DDS profile) is installed beside the code,
not inside it: ``colcon build`` puts it in ``share/densemtl_ros`` of the workspace's install
prefix (found through the ament index), ``pip install`` in ``share/densemtl_ros`` of the
prefix it installs into (setup.py's ``data_files``, listed in the distribution's record), and
a source checkout (also behind an editable or ``colcon build --symlink-install`` install) has
it next to the package. The copy that belongs to the running code wins: the checkout it was
imported from, then the installation it came with.
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "densemtl_ros"
DDS_PROFILE = "fastdds_large_images.xml"


def config_file(name: str) -> Path:
    """``config/<name>`` of this installation; FileNotFoundError names the places looked in."""
    looked = []
    for path in _candidates(Path("config", name)):
        if path.is_file():
            return path
        looked.append(str(path))
    raise FileNotFoundError(f"config/{name} of {PACKAGE} is not installed (looked in: "
                            f"{', '.join(looked) or 'no source checkout, ament index or pip record'})")


def dds_profile() -> Path:
    """The Fast DDS profile with shared-memory segments large enough for the image outputs."""
    return config_file(DDS_PROFILE)


def _candidates(relative: Path) -> Iterator[Path]:
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "package.xml").is_file() and (checkout / "setup.py").is_file():
        yield checkout / relative
    share = _ament_share()
    if share is not None:
        yield share / relative
    recorded = _recorded_by_pip(relative)
    if recorded is not None:
        yield recorded


def _ament_share() -> Path | None:
    """share/<package> in the ament index (a colcon or ROS installation), if there is one."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (LookupError, OSError, ValueError):  # not indexed, or no AMENT_PREFIX_PATH at all
        return None


def _recorded_by_pip(relative: Path) -> Path | None:
    """Where pip put share/<package>/<relative> for the installed distribution, if it did."""
    try:
        files = importlib.metadata.distribution(PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    suffix = ("share", PACKAGE, *relative.parts)
    for file in files:
        if file.parts[-len(suffix):] == suffix:
            return Path(file.locate()).resolve()
    return None
