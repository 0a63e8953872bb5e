"""The node's command-line ROS arguments, checked before rcl reads them: rcl stops with a
traceback on a parameters file it cannot read or parse, and silently ignores one that holds no
``ros__parameters`` at all (so every value the user meant to set would be lost)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml


def params_file_problem(args: Sequence[str], node_name: str) -> str | None:
    """Why a ``--params-file`` among the ROS arguments ``args`` cannot be a parameters file
    (unreadable, not YAML, or without any ``ros__parameters``), or None; ``node_name`` is the
    node's, for the example of how a file is keyed."""
    for path in _ros_argument_values(args, "--params-file"):
        try:
            content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            return f"cannot read the parameters file {path}: {error.strerror or error}"
        except UnicodeDecodeError:
            return f"the parameters file {path} is not UTF-8 text"
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark else ""
            return (f"the parameters file {path} is not valid YAML{line}: "
                    f"{getattr(error, 'problem', None) or error}")
        if not _has_ros_parameters(content):
            return (f"the parameters file {path} has no ros__parameters; it is keyed by node "
                    f"name, e.g. '/**/{node_name}: {{ros__parameters: {{...}}}}'")
    return None


def _ros_argument_values(args: Sequence[str], option: str) -> list[str]:
    """The values of ``option`` within the ``--ros-args ... [--]`` sections of ``args``."""
    values, inside = [], False
    for index, arg in enumerate(args):
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside and arg == option and index + 1 < len(args):
            values.append(args[index + 1])
    return values


def _has_ros_parameters(content: object) -> bool:
    """Whether a mapping of node names (nested by namespace) holds a ros__parameters mapping."""
    if not isinstance(content, dict):
        return False
    return any(isinstance(value, dict) and (key == "ros__parameters" or _has_ros_parameters(value))
               for key, value in content.items())


def without_source_locations(text: str) -> str:
    """rcl's error text without the ", at /path/file.c:123" of each layer."""
    return re.sub(r", at \S+:\d+", "", text)
