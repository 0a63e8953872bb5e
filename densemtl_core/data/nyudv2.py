"""NYUDv2 in the multi-task package distributed with ATRC: 40 classes, depth, normals, edges.

Layout (METHOD.md section 6.4)::

    <root>/gt_sets/{train,val}.txt      one image id per line (795 / 654)
    <root>/images/<id>.png              (.jpg accepted)
    <root>/segmentation/<id>.png        0 = void, 1..40 = classes
    <root>/depth/<id>.npy               float metres
    <root>/normals/<id>.png             RGB, n = 2 v / 255 - 1
    <root>/edge/<id>.png                0 / 255

* classes: label k in 1..40 becomes k - 1, void (0) and anything above 40 the ignore label;
* depth: metres; zero, negative and non-finite values are invalid (0), unlike the released
  code, which trusts every pixel (METHOD.md 9.8);
* normals: the shipped ground truth, unit-normalised; pixels whose stored vector is about zero
  are invalid (0). The files are read as x right, y up, z towards the camera, the usual
  convention of normal-map images, and turned into the optical frame (x right, y down,
  z forward). That reading is an assumption: to check it on a copy of the data, compare a
  sample's ``normals`` with :func:`~densemtl_core.data.common.normals_from_depth` of its
  ``depth`` and ``intrinsics`` (mean cosine near +1, not -1);
* edges: the shipped ones, any non-zero value being an edge;
* intrinsics: the NYU Depth v2 colour camera (640x480 frame); the ATRC copies are 560x425
  crops of that frame without the white border, taken here to start at row 45, column 40
  (approximate to a pixel: only the returned intrinsics depend on it); any other size is
  taken as a resized full frame;
* splits: the package's train / val lists (``test`` reads val).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .common import (ClassSet, LabelMap, PublicDataset, Record, Sample, first_existing,
                     intrinsics_matrix, read_npy, read_png, read_rgb, single_channel)
from .transforms import scale_intrinsics

CLASS_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "other structure", "other furniture", "other prop")


def _voc_color(index: int) -> tuple[int, int, int]:
    """Colour ``index`` of the PASCAL VOC colour map (bits of the index spread over R, G, B)."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= ((index >> 0) & 1) << shift
        green |= ((index >> 1) & 1) << shift
        blue |= ((index >> 2) & 1) << shift
        index >>= 3
    return red, green, blue


NYU40_CLASSES = ClassSet(CLASS_NAMES, tuple(_voc_color(k + 1) for k in range(len(CLASS_NAMES))))
"""NYUDv2 has no official palette; class k takes PASCAL VOC colour k + 1 (0 is black)."""

FULL_SIZE = (480, 640)
COLOR_CAMERA = intrinsics_matrix(518.857901, 519.469611, 325.582449, 253.736166)
"""Intrinsics of the NYU Depth v2 colour camera for the full 640x480 frame."""
BORDERLESS_CROP = {(425, 560): (45, 40)}
"""Image size -> (top, left) of the crop it was cut from the full frame."""
PNG_AXES_TO_OPTICAL = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)
"""Sign of each optical axis in the files' (x right, y up, z towards the camera) frame."""


class NYUDv2(PublicDataset):
    name = "nyudv2"
    layout = """\
gt_sets/{train,val}.txt    one image id per line
images/<id>.png            (or .jpg)
segmentation/<id>.png
depth/<id>.npy
normals/<id>.png
edge/<id>.png"""
    label_sets = {"nyu40": NYU40_CLASSES}
    _label_map = LabelMap({k: k - 1 for k in range(1, len(CLASS_NAMES) + 1)})

    def find_records(self) -> list[Record]:
        listing = self.root / "gt_sets" / f"{self.split}.txt"
        if not listing.is_file():
            raise self.layout_error(listing, "is missing")
        ids = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
        return [{
            "image": first_existing([self.root / "images" / f"{id_}{suffix}"
                                     for suffix in (".png", ".jpg")]),
            "semseg": self.root / "segmentation" / f"{id_}.png",
            "depth": self.root / "depth" / f"{id_}.npy",
            "normals": self.root / "normals" / f"{id_}.png",
            "edges": self.root / "edge" / f"{id_}.png",
        } for id_ in ids if id_]

    def decode(self, record: Record) -> Sample:
        image = read_rgb(record["image"])
        depth = read_npy(record["depth"]).astype(np.float32)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise self.layout_error(record["depth"], f"holds shape {depth.shape}, expected HxW")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        raw_labels = single_channel(read_png(record["semseg"]), record["semseg"])
        edges = single_channel(read_png(record["edges"]), record["edges"])
        return {
            "image": image,
            "semseg": self._label_map(raw_labels),
            "depth": torch.from_numpy(depth)[None],
            "normals": self._normals(record),
            "edges": torch.from_numpy((edges > 0).astype(np.int64)),
            "intrinsics": self._intrinsics(tuple(image.shape[-2:])),
        }

    def _normals(self, record: Record) -> Tensor:
        stored = read_png(record["normals"])
        if stored.ndim != 3 or stored.shape[-1] < 3 or stored.dtype != np.uint8:
            raise self.layout_error(record["normals"], f"holds {stored.dtype} {stored.shape}, "
                                    "expected an 8-bit RGB image")
        vectors = torch.from_numpy(stored[..., :3].astype(np.float32)).permute(2, 0, 1)
        vectors = 2.0 * vectors / 255.0 - 1.0
        length = vectors.norm(dim=0, keepdim=True)
        valid = length > 0.5
        return torch.where(valid, vectors / length.clamp_min(1e-6), 0.0) * PNG_AXES_TO_OPTICAL

    @staticmethod
    def _intrinsics(size: tuple[int, int]) -> Tensor:
        if size in BORDERLESS_CROP:
            top, left = BORDERLESS_CROP[size]
            cropped = COLOR_CAMERA.clone()
            cropped[0, 2] -= left
            cropped[1, 2] -= top
            return cropped
        return scale_intrinsics(COLOR_CAMERA, FULL_SIZE, size)
