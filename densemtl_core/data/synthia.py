"""SYNTHIA-RAND-CITYSCAPES: 16 Cityscapes classes from 16-bit label maps, depth, derived normals.

Layout (METHOD.md section 6.2); a label or depth file has the image's name without ``_PIT``::

    <root>/RGB/<name>.png
    <root>/GT/LABELS/<name>.png          (labels of the CTRL-UDA release; the older
                                          parsed_LABELS/ folder, at the root or in GT/, also works)
    <root>/Depth/Depth/<name>.png

* classes: the first channel of the 16-bit label PNG is the Synthia class id, mapped onto the
  method's 16 Cityscapes classes (:data:`SYNTHIA_TO_METHOD16`); other ids are ignored;
* depth: first channel of a 16-bit PNG, centimetres; every non-zero pixel is valid;
* intrinsics: fx = fy = 532.74, cx = 640, cy = 380 for the 1280x760 frame;
* splits: seeded 80 / 20 of all images (see :class:`SeededSplitDataset`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .cityscapes import METHOD16_CLASSES
from .common import (LabelMap, Record, Sample, SeededSplitDataset, first_existing,
                     intrinsics_matrix, read_png, read_rgb, single_channel)
from .transforms import scale_intrinsics

SYNTHIA_TO_METHOD16: dict[int, str] = {
    3: "road", 4: "sidewalk", 2: "building", 21: "wall", 5: "fence", 7: "pole",
    15: "traffic light", 9: "traffic sign", 6: "vegetation", 1: "sky", 10: "person",
    17: "rider", 8: "car", 19: "bus", 12: "motorcycle", 11: "bicycle"}
"""Synthia class id -> class name of the method's 16 (Synthia's pedestrian is person)."""

FULL_SIZE = (760, 1280)
CAMERA = intrinsics_matrix(532.740352, 532.740352, 640.0, 380.0)
LABEL_FOLDERS = (Path("GT/LABELS"), Path("parsed_LABELS"), Path("GT/parsed_LABELS"))


class Synthia(SeededSplitDataset):
    name = "synthia"
    layout = """\
RGB/<name>.png
GT/LABELS/<name>.png      (or parsed_LABELS/, or GT/parsed_LABELS/)
Depth/Depth/<name>.png"""
    label_sets = {"method16": METHOD16_CLASSES}
    _label_map = LabelMap({synthia_id: METHOD16_CLASSES.names.index(name)
                           for synthia_id, name in SYNTHIA_TO_METHOD16.items()})

    def find_all_records(self) -> list[Record]:
        images = self.root / "RGB"
        if not images.is_dir():
            raise self.layout_error(images, "is missing")
        labels = first_existing([self.root / folder for folder in LABEL_FOLDERS])
        records = []
        for image in sorted(images.rglob("*.png")):
            relative = image.relative_to(images)
            plain = relative.with_name(relative.name.replace("_PIT", ""))
            records.append({"image": image, "semseg": labels / plain,
                            "depth": self.root / "Depth" / "Depth" / plain})
        return records

    def decode(self, record: Record) -> Sample:
        image = read_rgb(record["image"])
        class_ids = single_channel(read_png(record["semseg"]), record["semseg"])
        centimetres = single_channel(read_png(record["depth"]), record["depth"])
        return {
            "image": image,
            "semseg": self._label_map(class_ids),
            "depth": torch.from_numpy(centimetres.astype(np.float32) / 100.0)[None],
            "intrinsics": scale_intrinsics(CAMERA, FULL_SIZE, image.shape[-2:]),
        }
