"""Reports as strict JSON: a metric with nothing to average is null, never NaN.

Python's ``json`` writes NaN and Infinity, which strict parsers (``jq``, JavaScript,
``json.loads(..., parse_constant=...)`` users) reject; a metric no sample scored is unknown, not
a number.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def finite_json(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, numbers) with every NaN or infinite float as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def write_json(path: Path, value: Any) -> Path:
    """``value`` written to ``path`` as strict JSON (see :func:`finite_json`), indented, keys
    sorted, with a final newline."""
    path.write_text(json.dumps(finite_json(value), indent=2, sort_keys=True, allow_nan=False)
                    + "\n", encoding="utf-8")
    return path
