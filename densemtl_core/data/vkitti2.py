"""Virtual KITTI 2: classes decoded from colour label maps, rendered depth, derived normals.

Layout (METHOD.md section 6.3): the ``15-deg-left`` variation of camera 0 of every scene, with
the rgb, classSegmentation and depth tarballs extracted into one tree::

    <root>/Scene<NN>/15-deg-left/frames/rgb/Camera_0/rgb_<frame>.jpg
    <root>/Scene<NN>/15-deg-left/frames/classSegmentation/Camera_0/classgt_<frame>.png
    <root>/Scene<NN>/15-deg-left/frames/depth/Camera_0/depth_<frame>.png

or each tarball extracted into its own folder (``<root>/rgb/Scene<NN>/...``,
``<root>/classSegmentation/Scene<NN>/...``, ``<root>/depth/Scene<NN>/...``).

* classes: exact match of the label colour with the dataset's colour table; other colours
  (``Undefined``) are ignored. Its 14 classes by default (``label_set: vkitti14``); the 8 the
  method adapts to Cityscapes with (``label_set: vkcs8``: tree and vegetation make vegetation,
  truck, car and van make vehicle; terrain, guard rail and misc are ignored) on request;
* depth: 16-bit centimetres; every pixel is valid, the sky saturating at 655.35 m as in the
  method (the depth range of the metrics leaves it out);
* intrinsics: fx = fy = 725.0087, cx = 620.5, cy = 187 for the 1242x375 frame;
* splits: seeded 80 / 20 of all frames (see :class:`SeededSplitDataset`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..labels import IGNORE_INDEX
from .cityscapes import VKCS8_CLASSES
from .common import (ClassSet, Record, Sample, SeededSplitDataset, intrinsics_matrix, read_png,
                     read_rgb, single_channel)
from .transforms import scale_intrinsics

VKITTI2_CLASSES = ClassSet(
    names=("terrain", "sky", "tree", "vegetation", "building", "road", "guard rail",
           "traffic sign", "traffic light", "pole", "misc", "truck", "car", "van"),
    colors=((210, 0, 200), (90, 200, 255), (0, 199, 0), (90, 240, 0), (140, 140, 140),
            (100, 60, 100), (250, 100, 255), (255, 255, 0), (200, 200, 0), (255, 130, 0),
            (80, 80, 80), (160, 60, 60), (255, 127, 80), (0, 139, 139)))
"""The dataset's 14 classes; their colours are both the label encoding and the palette."""

VKCS8_FOLDED = {"tree": "vegetation", "truck": "vehicle", "car": "vehicle", "van": "vehicle"}
"""Virtual KITTI 2 classes that join another class in ``vkcs8``."""

FULL_SIZE = (375, 1242)
CAMERA = intrinsics_matrix(725.0087, 725.0087, 620.5, 187.0)
SCENE_FRAMES = "Scene*/15-deg-left/frames"


def _packed(colors: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> one int per colour."""
    colors = colors.astype(np.int64)
    return (colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]


def colors_to_labels(rgb: np.ndarray, colors: tuple[tuple[int, int, int], ...]) -> Tensor:
    """Class index of every pixel whose colour is exactly ``colors[index]``, else ignore."""
    table = _packed(np.asarray(colors))
    order = np.argsort(table)
    codes = _packed(rgb)
    position = np.searchsorted(table[order], codes).clip(max=len(table) - 1)
    matched = table[order][position] == codes
    return torch.from_numpy(np.where(matched, order[position], IGNORE_INDEX).astype(np.int64))


class VirtualKitti2(SeededSplitDataset):
    name = "vkitti2"
    layout = """\
Scene<NN>/15-deg-left/frames/rgb/Camera_0/rgb_<frame>.jpg
Scene<NN>/15-deg-left/frames/classSegmentation/Camera_0/classgt_<frame>.png
Scene<NN>/15-deg-left/frames/depth/Camera_0/depth_<frame>.png
(or the same trees under rgb/, classSegmentation/ and depth/ folders of the root)"""
    label_sets = {"vkitti14": VKITTI2_CLASSES, "vkcs8": VKCS8_CLASSES}
    _label_maps = {name: classes.label_map(dict(enumerate(VKITTI2_CLASSES.names)), VKCS8_FOLDED)
                   for name, classes in label_sets.items()}

    def _tree(self, kind: str) -> Path:
        """Where the ``Scene<NN>`` folders of ``kind`` (rgb, classSegmentation, depth) live."""
        separate = self.root / kind
        return separate if separate.is_dir() else self.root

    def find_all_records(self) -> list[Record]:
        rgb_root = self._tree("rgb")
        records = []
        for image in sorted(rgb_root.glob(f"{SCENE_FRAMES}/rgb/Camera_0/rgb_*.jpg")):
            frame = image.stem[len("rgb_"):]
            frames = image.relative_to(rgb_root).parents[2]  # Scene<NN>/15-deg-left/frames
            records.append({
                "image": image,
                "semseg": (self._tree("classSegmentation") / frames / "classSegmentation"
                           / "Camera_0" / f"classgt_{frame}.png"),
                "depth": self._tree("depth") / frames / "depth" / "Camera_0" / f"depth_{frame}.png",
            })
        return records

    def decode(self, record: Record) -> Sample:
        image = read_rgb(record["image"])
        labels = read_png(record["semseg"])
        if labels.ndim != 3 or labels.shape[-1] < 3 or labels.dtype != np.uint8:
            raise self.layout_error(record["semseg"], f"holds {labels.dtype} {labels.shape}, "
                                    "expected an 8-bit RGB image")
        classes = colors_to_labels(labels[..., :3], VKITTI2_CLASSES.colors)
        centimetres = single_channel(read_png(record["depth"]), record["depth"])
        return {
            "image": image,
            "semseg": self._label_maps[self.label_set](classes.numpy()),
            "depth": torch.from_numpy(centimetres.astype(np.float32) / 100.0)[None],
            "intrinsics": scale_intrinsics(CAMERA, FULL_SIZE, image.shape[-2:]),
        }
