"""Cityscapes: semantic labels, depth from stereo disparity, normals derived from that depth.

Layout (METHOD.md section 6.1), ``<stem>`` = ``<city>_<seq>_<frame>``::

    <root>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png     (or leftImg8bit_small/, used
    <root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png       when present: pre-shrunk copies)
    <root>/disparity/<split>/<city>/<stem>_disparity.png
    <root>/camera/<split>/<city>/<stem>_camera.json
    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame +- stride>_leftImg8bit.png
                                                                  (temporal samples only; or
                                                                  leftImg8bit_sequence_small/)

* classes: the official 19 training ids by default (``label_set: trainid19``); the method's 16
  (those 19 without terrain, truck and train, ``label_set: method16``) or the 8 it adapts
  Virtual KITTI 2 to Cityscapes with (``label_set: vkcs8``: car and bus make one vehicle class)
  on request; every other label id is ignored;
* depth: z = baseline * fx / ((p - 1) / 256) from the 16-bit disparity p and the image's camera
  file; p <= 1 (no disparity) is invalid (0). Disparities count full-resolution pixels whatever
  the PNG's size, so the full-resolution fx is the right one;
* intrinsics: the camera file's, for the 2048x1024 frame, scaled to the image read;
* splits: the official train / val (test labels are not public: ``test`` reads val);
* temporal samples (``sequence=True``, the method's self-supervised depth, METHOD.md 7.1): each
  labelled frame with its neighbours ``frame_stride`` frames before and after it from the video
  snippets; ``travel`` is unknown (NaN: the recording has no odometry here). The intrinsics stay
  the camera file's, scaled to the image; the method's unscaled constant K (``paper_compat``) is
  a choice of the photometric objective, which sees the model configuration; the dataset does not.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import DataConfig
from .common import (ClassSet, PublicDataset, Record, Sample, first_existing,
                     intrinsics_matrix, read_json, read_png, read_rgb, single_channel)
from .transforms import scale_intrinsics

TRAINID_CLASSES = ClassSet(
    names=("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
           "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
           "bus", "train", "motorcycle", "bicycle"),
    colors=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
            (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
            (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
            (0, 80, 100), (0, 0, 230), (119, 11, 32)))
"""The official 19 evaluation classes (trainIds 0..18) with the official palette."""

METHOD16_CLASSES = TRAINID_CLASSES.subset(("terrain", "truck", "train"))
"""The method's 16 classes, also the order Synthia is mapped to."""

VKCS8_CLASSES = ClassSet(
    names=("road", "building", "pole", "traffic light", "traffic sign", "vegetation", "sky",
           "vehicle"),
    colors=((128, 64, 128), (70, 70, 70), (153, 153, 153), (250, 170, 30), (220, 220, 0),
            (107, 142, 35), (70, 130, 180), (0, 0, 142)))
"""The 8 classes shared by Virtual KITTI 2 and Cityscapes (METHOD.md 6.3), in the method's
order, with the Cityscapes palette (vehicle: car's colour)."""

VKCS8_FOLDED = {"car": "vehicle", "bus": "vehicle"}
"""Cityscapes classes that make the vehicle class of ``vkcs8``."""

LABEL_ID_TO_NAME: dict[int, str] = {
    7: "road", 8: "sidewalk", 11: "building", 12: "wall", 13: "fence", 17: "pole",
    19: "traffic light", 20: "traffic sign", 21: "vegetation", 22: "terrain", 23: "sky",
    24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus", 31: "train",
    32: "motorcycle", 33: "bicycle"}
"""Cityscapes label ids (``*_labelIds.png``) of the 19 evaluation classes."""

FULL_SIZE = (1024, 2048)
"""(H, W) of the frames the camera files describe."""

IMAGE_FOLDERS = ("leftImg8bit_small", "leftImg8bit")
"""Image folders by preference: pre-shrunk copies (what the method reads) when present."""
SEQUENCE_FOLDERS = ("leftImg8bit_sequence_small", "leftImg8bit_sequence")
"""Video snippet folders by the same preference."""
_STEM = re.compile(r"(?P<snippet>.+_\d+)_(?P<frame>\d{6})")
"""``<city>_<seq>_<frame>``: the snippet and the frame number within the recording."""


class Cityscapes(PublicDataset):
    name = "cityscapes"
    layout = """\
leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png   (or leftImg8bit_small/)
gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png
disparity/{train,val}/<city>/<stem>_disparity.png
camera/{train,val}/<city>/<stem>_camera.json
leftImg8bit_sequence/{train,val}/<city>/<city>_<seq>_<frame +- stride>_leftImg8bit.png
    (or leftImg8bit_sequence_small/; only for temporal samples)"""
    label_sets = {"trainid19": TRAINID_CLASSES, "method16": METHOD16_CLASSES,
                  "vkcs8": VKCS8_CLASSES}
    _label_maps = {name: classes.label_map(LABEL_ID_TO_NAME, VKCS8_FOLDED)
                   for name, classes in label_sets.items()}
    has_odometry = False

    def __init__(self, root: str | Path, split: str, size: tuple[int, int],
                 transform: Callable[[Sample], Sample] | None = None,
                 label_set: str | None = None, sequence: bool = False,
                 frame_stride: int = 1) -> None:
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be at least 1, got {frame_stride}")
        self.sequence, self.frame_stride = sequence, frame_stride
        super().__init__(root, split, size, transform, label_set)

    @classmethod
    def sequence_options(cls, cfg: DataConfig) -> dict[str, Any]:
        return {"sequence": True, "frame_stride": cfg.frame_stride}

    def find_records(self) -> list[Record]:
        images = first_existing([self.root / folder / self.split for folder in IMAGE_FOLDERS])
        if not images.is_dir():
            raise self.layout_error(self.root / IMAGE_FOLDERS[-1] / self.split, "is missing")
        suffix = "_leftImg8bit.png"
        records = []
        for image in sorted(images.glob(f"*/*{suffix}")):
            city, stem = image.parent.name, image.name[: -len(suffix)]
            records.append({
                "image": image,
                "semseg": self.root / "gtFine" / self.split / city / f"{stem}_gtFine_labelIds.png",
                "disparity": self.root / "disparity" / self.split / city / f"{stem}_disparity.png",
                "camera": self.root / "camera" / self.split / city / f"{stem}_camera.json",
            })
        if self.sequence:
            snippets = first_existing([self.root / name / self.split for name in SEQUENCE_FOLDERS])
            if not snippets.is_dir():
                raise self.layout_error(self.root / SEQUENCE_FOLDERS[-1] / self.split,
                                        "is missing (the video snippets of temporal samples)")
            for record in records:
                record.update(self._neighbours(record["image"], snippets))
        return records

    def _neighbours(self, image: Path, snippets: Path) -> Record:
        """The snippet frames ``frame_stride`` before and after a labelled image."""
        city, stem = image.parent.name, image.name[: -len("_leftImg8bit.png")]
        parts = _STEM.fullmatch(stem)
        if parts is None:
            raise self.layout_error(image, "is not named <city>_<seq>_<frame>_leftImg8bit.png")
        frame = int(parts["frame"])
        if frame < self.frame_stride:
            raise self.layout_error(image, f"is frame {frame} of its snippet: no frame "
                                           f"{self.frame_stride} before it")
        return {key: snippets / city / f"{parts['snippet']}_{frame + offset:06d}_leftImg8bit.png"
                for key, offset in (("image_prev", -self.frame_stride),
                                    ("image_next", self.frame_stride))}

    def decode(self, record: Record) -> Sample:
        image = read_rgb(record["image"])
        baseline, fx, fy, cx, cy = self._camera(record["camera"])
        disparity = single_channel(read_png(record["disparity"]), record["disparity"])
        disparity = (disparity.astype(np.float64) - 1.0) / 256.0
        depth = np.where(disparity > 0, baseline * fx / np.maximum(disparity, 1e-12), 0.0)
        raw_labels = single_channel(read_png(record["semseg"]), record["semseg"])
        sample = {
            "image": image,
            "semseg": self._label_maps[self.label_set](raw_labels),
            "depth": torch.from_numpy(depth.astype(np.float32))[None],
            "intrinsics": scale_intrinsics(intrinsics_matrix(fx, fy, cx, cy), FULL_SIZE,
                                           image.shape[-2:]),
        }
        if self.sequence:
            sample["image_prev"] = read_rgb(record["image_prev"])
            sample["image_next"] = read_rgb(record["image_next"])
            sample["travel"] = torch.full((2,), float("nan"))
        return sample

    def _camera(self, path: Path) -> tuple[float, float, float, float, float]:
        """Stereo baseline (m) and fx, fy, u0, v0 (full-resolution pixels) of a camera file."""
        camera = read_json(path)
        try:
            return (float(camera["extrinsic"]["baseline"]),
                    *(float(camera["intrinsic"][key]) for key in ("fx", "fy", "u0", "v0")))
        except (KeyError, TypeError, ValueError) as error:
            raise self.layout_error(path, "lacks extrinsic.baseline or intrinsic.fx/fy/u0/v0"
                                    ) from error
