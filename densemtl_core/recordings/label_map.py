"""Dataset class ids of a bag's label images -> the model's class ids.

A bag's labels come from a dataset whose ids rarely equal the model's; the mapping is given on
the command line of ``densemtl-bag-eval`` or as ``data.label_map`` for training (inline or as a
YAML/JSON file) and applied to every label image before scoring or learning. numpy and YAML
only, so both the library and the bag tools read it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ..labels import IGNORE_INDEX

_MAX_DATASET_ID = np.iinfo(np.uint16).max
_MAPPING_FILE_SUFFIXES = (".yaml", ".yml", ".json")


class LabelMapping:
    """Dataset class ids -> model class ids, every unmapped id -> ``IGNORE_INDEX``.

    A bag's labels come from a dataset whose ids rarely equal the model's; a 65536-entry look-up
    table maps a whole uint16 label image in one indexing operation.
    """

    def __init__(self, pairs: Mapping[int, int], num_classes: int) -> None:
        for dataset_id, model_id in pairs.items():
            if not 0 <= dataset_id <= _MAX_DATASET_ID:
                raise ValueError(f"dataset id {dataset_id} is outside [0, {_MAX_DATASET_ID}]")
            if not 0 <= model_id < num_classes:
                raise ValueError(f"model id {model_id} (for dataset id {dataset_id}) is outside "
                                 f"[0, {num_classes}) for a model with {num_classes} classes")
        self.pairs = dict(sorted(pairs.items()))
        self.num_classes = num_classes
        dtype = np.min_scalar_type(max(num_classes - 1, IGNORE_INDEX))
        self._table = np.full(_MAX_DATASET_ID + 1, IGNORE_INDEX, dtype=dtype)
        self._table[list(self.pairs)] = list(self.pairs.values())

    @classmethod
    def identity(cls, num_classes: int) -> LabelMapping:
        """For ground truth already in the model's ids: ids outside [0, num_classes) are ignored."""
        return cls({i: i for i in range(num_classes)}, num_classes)

    @classmethod
    def parse(cls, spec: str | Path, num_classes: int, class_names: Sequence[str] = ()
              ) -> LabelMapping:
        """A mapping from a command-line value.

        ``spec`` is a YAML/JSON file (a ``Path``, or text ending in .yaml, .yml or .json) holding
        ``{dataset_id: model_id_or_class_name}``, or inline text such as ``"3:1,4:2,7:floor"``.
        Class names are looked up in ``class_names`` (the model's, in id order).
        """
        if isinstance(spec, Path) or spec.lower().endswith(_MAPPING_FILE_SUFFIXES):
            raw = _read_mapping_file(Path(spec))
        else:
            raw = _parse_inline_mapping(spec)
        names = {name: index for index, name in enumerate(class_names)}
        return cls({_dataset_id(key): _model_id(value, names) for key, value in raw.items()},
                   num_classes)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Map an integer label image (uint16 up to 65535); the result has the same shape."""
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, not {labels.dtype}")
        if labels.dtype not in (np.uint8, np.uint16) and labels.size and (
                labels.min() < 0 or labels.max() > _MAX_DATASET_ID):
            raise ValueError(f"labels must lie in [0, {_MAX_DATASET_ID}]")
        return self._table[labels]


def _read_mapping_file(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise ValueError(f"label mapping file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is valid YAML
    except yaml.YAMLError as error:
        raise ValueError(f"label mapping file {path} is not valid YAML/JSON: {error}") from error
    if not isinstance(values, dict) or not values:
        raise ValueError(f"label mapping file {path} must hold a non-empty "
                         "{dataset_id: model_id_or_class_name} mapping")
    return values


def _parse_inline_mapping(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, colon, value = (part.strip() for part in item.partition(":"))
        if not (colon and key and value):
            raise ValueError(f"bad label mapping entry {item.strip()!r} in {text!r}: expected "
                             "DATASET_ID:MODEL_ID_OR_NAME, e.g. '3:1,4:2,7:floor'")
        if key in pairs:
            raise ValueError(f"dataset id {key} is mapped twice in {text!r}")
        pairs[key] = value
    return pairs


def _dataset_id(key: Any) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and re.fullmatch(r"\d+", key.strip()):
        return int(key)
    raise ValueError(f"dataset id {key!r} is not a non-negative integer")


def _model_id(value: Any, names: Mapping[str, int]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if re.fullmatch(r"\d+", value.strip()):
            return int(value)
        if value in names:
            return names[value]
        known = ", ".join(names) or "none: the model has no class names"
        raise ValueError(f"unknown class name {value!r} (model classes: {known})")
    raise ValueError(f"model class {value!r} is neither an id nor a class name")
