"""Tiny copies of the four public datasets in their exact on-disk layouts, written into a test's
temporary folder, with the raw values chosen so that every decoding rule can be checked.

Each ``make_*`` writes a complete dataset of 32x64 samples and returns a description of what it
wrote (ids, splits, the raw values of one sample). The label, depth and normal PNGs are written
here independently of the loaders: 8-bit and single-channel 16-bit files with Pillow, 16-bit
RGB files by :func:`write_png16_rgb` straight from the PNG specification.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (32, 64)
"""(H, W) of every fixture image: a multiple of 16, so that it is a valid network size too."""


def write_png16_rgb(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG (colour type 2), unfiltered scanlines, big-endian samples."""
    height, width, _ = array.shape
    rows = array.astype(">u2")
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_image(path: Path, array: np.ndarray) -> None:
    """uint8 HxW / HxWx3 or uint16 HxW, saved exactly (JPEG is lossy: images only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*SIZE, 3), dtype=np.uint8)


@dataclass
class Written:
    """What a builder wrote: sample names per split and the raw maps of the first train sample."""

    root: Path
    splits: dict[str, list[str]]
    raw: dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# NYUDv2
# ----------------------------------------------------------------------------------------------

NYU_NORMAL_PIXELS = {
    "towards_camera": ((128, 128, 255), (0.0, 0.0, -1.0)),
    "up": ((128, 255, 128), (0.0, -1.0, 0.0)),
    "right": ((255, 128, 128), (1.0, 0.0, 0.0)),
    "missing": ((128, 128, 128), (0.0, 0.0, 0.0)),
}
"""Stored colour -> expected optical-frame normal, one block of columns each."""


def make_nyudv2(root: Path, train: int = 3, val: int = 2) -> Written:
    ids = [f"{i:04d}" for i in range(train + val)]
    splits = {"train": ids[:train], "val": ids[train:]}
    (root / "gt_sets").mkdir(parents=True)
    for split, names in splits.items():
        (root / "gt_sets" / f"{split}.txt").write_text("\n".join(names) + "\n")
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]]
    written = Written(root, splits)
    for index, id_ in enumerate(ids):
        # 0..42: void, the 40 classes and two ids beyond them
        labels = ((cols // 2 + rows * 5 + index) % 43).astype(np.uint8)
        depth = (1.0 + 0.05 * cols + 0.01 * rows + index).astype(np.float32)
        depth[:4, :4] = 0.0
        depth[5, 5] = np.nan
        normals = np.zeros((*SIZE, 3), dtype=np.uint8)
        for block, (stored, _) in enumerate(NYU_NORMAL_PIXELS.values()):
            normals[:, block * 16:(block + 1) * 16] = stored
        edges = np.where((cols % 9 == 0) | (rows == 10), 255, 0).astype(np.uint8)
        write_image(root / "images" / f"{id_}.png", random_rgb(index))
        write_image(root / "segmentation" / f"{id_}.png", labels)
        (root / "depth").mkdir(exist_ok=True)
        np.save(root / "depth" / f"{id_}.npy", depth)
        write_image(root / "normals" / f"{id_}.png", normals)
        write_image(root / "edge" / f"{id_}.png", edges)
        if index == 0:
            written.raw = {"semseg": labels, "depth": depth, "edges": edges}
    return written


# ----------------------------------------------------------------------------------------------
# Cityscapes
# ----------------------------------------------------------------------------------------------

CITYSCAPES_CAMERA = {"baseline": 0.2, "fx": 2000.0, "fy": 2010.0, "u0": 1020.0, "v0": 510.0}
CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}


CITYSCAPES_SNIPPET_FRAMES = range(17, 22)
"""Frame numbers of each video snippet written: the labelled frame 19 and two either side."""


def make_cityscapes(root: Path, per_city: int = 2, images: str = "leftImg8bit",
                    sequence: str | None = None) -> Written:
    """``per_city`` frames per city; ``images`` is the image folder (``leftImg8bit[_small]``).
    ``sequence`` names a video snippet folder (``leftImg8bit_sequence[_small]``) to write frames
    17..21 of every snippet into (19 a copy of the labelled image); the first train sample's
    frames are in ``raw`` as ``frame_<n>``."""
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]]
    written = Written(root, {split: [] for split in CITYSCAPES_CITIES})
    camera = CITYSCAPES_CAMERA
    for split, cities in CITYSCAPES_CITIES.items():
        for city in cities:
            for frame in range(per_city):
                stem = f"{city}_{frame:06d}_000019"
                seed = sum(len(stems) for stems in written.splits.values())
                written.splits[split].append(stem)
                label_ids = ((cols + 3 * rows) % 36).astype(np.uint8)  # 0..35: every official id
                label_ids[0, :3] = 255
                # Depth 5 + col/16 m as disparity (p - 1) / 256 px; row 0 holds p = 0 and p = 1.
                depth = 5.0 + cols / 16.0
                disparity = np.round(camera["baseline"] * camera["fx"] / depth * 256 + 1)
                disparity[0, 0], disparity[0, 1] = 0, 1
                disparity = disparity.astype(np.uint16)
                folder = f"{split}/{city}"
                image = random_rgb(seed)
                write_image(root / images / folder / f"{stem}_leftImg8bit.png", image)
                snippet = {number: image if number == 19 else random_rgb(1000 + 10 * seed + number)
                           for number in CITYSCAPES_SNIPPET_FRAMES}
                if sequence is not None:
                    for number, frame_image in snippet.items():
                        name = f"{city}_{frame:06d}_{number:06d}_leftImg8bit.png"
                        write_image(root / sequence / folder / name, frame_image)
                write_image(root / "gtFine" / folder / f"{stem}_gtFine_labelIds.png", label_ids)
                write_image(root / "disparity" / folder / f"{stem}_disparity.png", disparity)
                (root / "camera" / folder).mkdir(parents=True, exist_ok=True)
                (root / "camera" / folder / f"{stem}_camera.json").write_text(json.dumps({
                    "extrinsic": {"baseline": camera["baseline"], "pitch": 0.05},
                    "intrinsic": {key: camera[key] for key in ("fx", "fy", "u0", "v0")}}))
                if not written.raw:
                    written.raw = {"semseg": label_ids, "disparity": disparity,
                                   **{f"frame_{n}": snippet[n] for n in snippet}}
    written.splits = {split: sorted(stems) for split, stems in written.splits.items()}
    return written


# ----------------------------------------------------------------------------------------------
# Virtual KITTI 2
# ----------------------------------------------------------------------------------------------

VKITTI2_COLORS = ((210, 0, 200), (90, 200, 255), (0, 199, 0), (90, 240, 0), (140, 140, 140),
                  (100, 60, 100), (250, 100, 255), (255, 255, 0), (200, 200, 0), (255, 130, 0),
                  (80, 80, 80), (160, 60, 60), (255, 127, 80), (0, 139, 139))
"""colors.txt of the dataset, in class order (terrain .. van), copied from its documentation."""
VKITTI2_UNDEFINED = (0, 0, 0)


def make_vkitti2(root: Path, scenes: tuple[str, ...] = ("Scene01", "Scene02"), frames: int = 5,
                 separate_trees: bool = False) -> Written:
    """``separate_trees`` puts rgb/, classSegmentation/ and depth/ side by side in the root."""
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]]
    palette = np.array(VKITTI2_COLORS + (VKITTI2_UNDEFINED, (1, 2, 3)), dtype=np.uint8)
    written = Written(root, {"all": []})
    for scene in scenes:
        for frame in range(frames):
            name = f"{frame:05d}"
            written.splits["all"].append(f"{scene}/{name}")
            class_index = (cols // 4 + rows + frame) % len(palette)  # 14 classes, 2 other colours
            centimetres = (500 + 10 * cols + rows + 100 * frame).astype(np.uint16)
            centimetres[0, 0] = 65535  # the sky saturates
            for kind, file_name, array in (
                    ("rgb", f"rgb_{name}.jpg", random_rgb(frame)),
                    ("classSegmentation", f"classgt_{name}.png", palette[class_index]),
                    ("depth", f"depth_{name}.png", centimetres)):
                tree = root / kind if separate_trees else root
                write_image(tree / scene / "15-deg-left" / "frames" / kind / "Camera_0" / file_name,
                            array)
            if not written.raw:
                written.raw = {"class_index": class_index, "centimetres": centimetres}
    return written


# ----------------------------------------------------------------------------------------------
# Synthia
# ----------------------------------------------------------------------------------------------

SYNTHIA_TO_CLASS = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10,
                    17: 11, 8: 12, 19: 13, 12: 14, 11: 15}
"""Synthia id -> index among the method's 16 classes (METHOD.md section 6.2)."""


def make_synthia(root: Path, count: int = 10, labels: str = "GT/LABELS") -> Written:
    """``count`` images; image 3 is stored as ``0000003_PIT.png`` (its labels without ``_PIT``)."""
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]]
    written = Written(root, {"all": []})
    for index in range(count):
        name = f"{index:07d}"
        image_name = f"{name}_PIT.png" if index == 3 else f"{name}.png"
        written.splits["all"].append(image_name)
        class_ids = ((cols + rows + index) % 25).astype(np.uint16)  # ids 0..22 and two unknown
        instance = (1000 + cols).astype(np.uint16)  # second channel, must be ignored
        centimetres = (800 + 20 * cols + 3 * rows).astype(np.uint16)
        write_image(root / "RGB" / image_name, random_rgb(index))
        write_png16_rgb(root / labels / f"{name}.png",
                        np.stack([class_ids, instance, np.zeros_like(instance)], axis=-1))
        write_image(root / "Depth" / "Depth" / f"{name}.png", centimetres)
        if not written.raw:
            written.raw = {"class_ids": class_ids, "centimetres": centimetres}
    return written


BUILDERS = {"nyudv2": make_nyudv2, "cityscapes": make_cityscapes, "vkitti2": make_vkitti2,
            "synthia": make_synthia}
