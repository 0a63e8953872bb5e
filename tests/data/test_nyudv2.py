"""NYUDv2 loader: decoding of every target to the value, splits, layout errors, flips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from densemtl_core.data.common import DatasetLayoutError
from densemtl_core.data.nyudv2 import COLOR_CAMERA, NYUDv2
from densemtl_core.data.transforms import RandomHorizontalFlip, scale_intrinsics
from densemtl_core.labels import IGNORE_INDEX
from tests.data.fixtures import NYU_NORMAL_PIXELS, SIZE, make_nyudv2


@pytest.fixture
def nyud(tmp_path):
    return make_nyudv2(tmp_path / "nyud")


def test_labels_depth_and_edges_decode_to_the_value(nyud):
    sample = NYUDv2(nyud.root, "train", SIZE)[0]
    raw = nyud.raw["semseg"].astype(np.int64)
    expected = np.where((raw == 0) | (raw > 40), IGNORE_INDEX, raw - 1)
    assert np.array_equal(sample["semseg"].numpy(), expected)
    assert {0, 39, IGNORE_INDEX} <= set(np.unique(expected).tolist())

    depth = nyud.raw["depth"]
    expected_depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
    np.testing.assert_allclose(sample["depth"][0].numpy(), expected_depth, rtol=1e-6)
    assert sample["depth"][0, 5, 5] == 0.0 and sample["depth"][0, :4, :4].eq(0).all()

    assert np.array_equal(sample["edges"].numpy(), (nyud.raw["edges"] > 0).astype(np.int64))


def test_stored_normals_become_optical_frame_unit_vectors(nyud, geometry):
    normals = NYUDv2(nyud.root, "train", SIZE)[0]["normals"].numpy().transpose(1, 2, 0)
    for block, (_, expected) in enumerate(NYU_NORMAL_PIXELS.values()):
        decoded = normals[:, block * 16:(block + 1) * 16].reshape(-1, 3)
        if np.linalg.norm(expected) == 0:
            assert np.all(decoded == 0)  # a stored zero vector marks a missing normal
        else:
            assert geometry.angle_deg(decoded, np.array(expected)).max() < 0.5
            np.testing.assert_allclose(np.linalg.norm(decoded, axis=-1), 1.0, rtol=1e-5)


def test_splits_follow_the_lists_and_test_reads_val(nyud):
    assert len(NYUDv2(nyud.root, "train", SIZE)) == len(nyud.splits["train"]) == 3
    val = NYUDv2(nyud.root, "val", SIZE)
    test = NYUDv2(nyud.root, "test", SIZE)
    assert [r["image"].stem for r in val.records] == nyud.splits["val"]
    assert test.records == val.records
    assert NYUDv2(nyud.root, "val", SIZE).num_classes == 40


def test_intrinsics_follow_the_image(nyud):
    dataset = NYUDv2(nyud.root, "train", SIZE)
    torch.testing.assert_close(dataset[0]["intrinsics"],
                               scale_intrinsics(COLOR_CAMERA, (480, 640), SIZE))
    cropped = NYUDv2._intrinsics((425, 560))  # the borderless ATRC copies keep the focal length
    torch.testing.assert_close(cropped[:2, :2], COLOR_CAMERA[:2, :2])
    torch.testing.assert_close(cropped[:2, 2], COLOR_CAMERA[:2, 2] - torch.tensor([40.0, 45.0]))


def test_resizing_keeps_every_edge(nyud):
    edges = NYUDv2(nyud.root, "train", (16, 32))[0]["edges"]
    rows, cols = np.nonzero(nyud.raw["edges"])
    assert edges[rows // 2, cols // 2].eq(1).all()


def test_flip_negates_the_normals_x_component(nyud):
    plain = NYUDv2(nyud.root, "train", SIZE)[1]
    flipped = NYUDv2(nyud.root, "train", SIZE, transform=RandomHorizontalFlip(1.0))[1]
    torch.testing.assert_close(flipped["normals"][0], -plain["normals"][0].flip(-1))
    torch.testing.assert_close(flipped["normals"][1:], plain["normals"][1:].flip(-1))
    assert torch.equal(flipped["semseg"], plain["semseg"].flip(-1))


def test_jpeg_images_are_accepted(nyud):
    image = nyud.root / "images" / "0000.png"
    Image.open(image).save(image.with_suffix(".jpg"))
    image.unlink()
    assert NYUDv2(nyud.root, "train", SIZE)[0]["image"].shape == (3, *SIZE)


def test_missing_files_and_wrong_roots_name_the_path_and_the_layout(nyud, tmp_path):
    (nyud.root / "depth" / "0001.npy").unlink()
    with pytest.raises(DatasetLayoutError, match=r"depth/0001\.npy is missing") as error:
        NYUDv2(nyud.root, "train", SIZE)
    assert "gt_sets/{train,val}.txt" in str(error.value)
    with pytest.raises(DatasetLayoutError, match="is not a directory"):
        NYUDv2(tmp_path / "nowhere", "train", SIZE)
    (nyud.root / "gt_sets" / "val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"gt_sets/val\.txt is missing"):
        NYUDv2(nyud.root, "val", SIZE)


def test_pickled_depth_files_are_refused(nyud):
    np.save(nyud.root / "depth" / "0000.npy", np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(DatasetLayoutError, match="not a plain numpy array"):
        NYUDv2(nyud.root, "train", SIZE)[0]
