"""Virtual KITTI 2 loader: colour labels, centimetre depth, both layouts, the seeded split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densemtl_core.data.cityscapes import VKCS8_CLASSES
from densemtl_core.data.common import DatasetLayoutError
from densemtl_core.data.transforms import scale_intrinsics
from densemtl_core.data.vkitti2 import CAMERA, VirtualKitti2
from densemtl_core.labels import IGNORE_INDEX
from tests.data.fixtures import SIZE, VKITTI2_COLORS, make_vkitti2


@pytest.fixture
def vkitti(tmp_path):
    return make_vkitti2(tmp_path / "vkitti2")


def whole_dataset(root, **kwargs) -> list[VirtualKitti2]:
    return [VirtualKitti2(root, split, SIZE, **kwargs) for split in ("train", "val")]


def described_sample(root, **kwargs) -> tuple[VirtualKitti2, dict]:
    """Scene01 frame 00000 (the fixture's described frame) and the dataset holding it."""
    for dataset in whole_dataset(root, **kwargs):
        for index, record in enumerate(dataset.records):
            if record["image"].name == "rgb_00000.jpg" and "Scene01" in record["image"].parts:
                return dataset, dataset[index]
    raise AssertionError("Scene01 frame 00000 is in no split")


def test_colours_decode_to_classes_and_unknown_colours_are_ignored(vkitti):
    dataset, sample = described_sample(vkitti.root)
    semseg = sample["semseg"].numpy()
    index = vkitti.raw["class_index"]
    expected = np.where(index < len(VKITTI2_COLORS), index, IGNORE_INDEX)
    assert np.array_equal(semseg, expected)
    assert set(np.unique(semseg).tolist()) == set(range(14)) | {IGNORE_INDEX}
    assert dataset.class_colors == VKITTI2_COLORS and dataset.num_classes == 14


def test_vkcs8_folds_the_classes_into_the_eight_shared_with_cityscapes(vkitti):
    vkcs8, sample = described_sample(vkitti.root, label_set="vkcs8")
    # terrain sky tree vegetation building road guard-rail sign light pole misc truck car van,
    # then the fixture's two unknown colours
    folded = (IGNORE_INDEX, 6, 5, 5, 1, 0, IGNORE_INDEX, 4, 3, 2, IGNORE_INDEX, 7, 7, 7,
              IGNORE_INDEX, IGNORE_INDEX)
    assert np.array_equal(sample["semseg"].numpy(), np.array(folded)[vkitti.raw["class_index"]])
    assert vkcs8.num_classes == 8 and vkcs8.class_names == VKCS8_CLASSES.names
    assert vkcs8.class_colors == VKCS8_CLASSES.colors
    assert VirtualKitti2(vkitti.root, "train", SIZE).num_classes == 14  # the default


def test_depth_is_centimetres_and_intrinsics_follow_the_image(vkitti):
    _, sample = described_sample(vkitti.root)
    np.testing.assert_allclose(sample["depth"][0].numpy(), vkitti.raw["centimetres"] / 100.0,
                               rtol=1e-6)
    assert sample["depth"][0, 0, 0] == pytest.approx(655.35)
    torch.testing.assert_close(sample["intrinsics"], scale_intrinsics(CAMERA, (375, 1242), SIZE))


def test_split_is_seeded_disjoint_and_complete(vkitti):
    train, val = whole_dataset(vkitti.root, seed=42)
    train_images = {r["image"] for r in train.records}
    val_images = {r["image"] for r in val.records}
    assert (len(train_images), len(val_images)) == (8, 2)
    assert train_images.isdisjoint(val_images) and len(train_images | val_images) == 10
    assert [r["image"] for r in VirtualKitti2(vkitti.root, "train", SIZE, seed=42).records] == [
        r["image"] for r in train.records]
    assert VirtualKitti2(vkitti.root, "test", SIZE, seed=42).records == val.records


def test_tarballs_extracted_side_by_side_are_read_too(tmp_path):
    written = make_vkitti2(tmp_path / "separate", separate_trees=True)
    train, val = whole_dataset(written.root)
    assert len(train) + len(val) == 10
    assert train[0]["semseg"].shape == SIZE


def test_missing_depth_names_the_file_and_the_layout(vkitti, tmp_path):
    missing = (vkitti.root / "Scene02" / "15-deg-left" / "frames" / "depth" / "Camera_0"
               / "depth_00003.png")
    missing.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        whole_dataset(vkitti.root)
    assert f"{missing} is missing" in str(error.value)
    assert "classSegmentation/Camera_0/classgt_<frame>.png" in str(error.value)
    with pytest.raises(DatasetLayoutError, match="holds no train samples"):
        VirtualKitti2(tmp_path, "train", SIZE)
