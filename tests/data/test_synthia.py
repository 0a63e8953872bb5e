"""Synthia loader: 16-bit label ids, centimetre depth, label folder variants, the seeded split."""
from __future__ import annotations

import numpy as np
import pytest

from densemtl_core.data.common import DatasetLayoutError
from densemtl_core.data.synthia import Synthia
from densemtl_core.labels import IGNORE_INDEX
from tests.data.fixtures import SIZE, SYNTHIA_TO_CLASS, make_synthia

pytest.importorskip("cv2", reason="Synthia's 16-bit RGB label PNGs are decoded with OpenCV")


def both_splits(root, seed: int = 42) -> list[Synthia]:
    return [Synthia(root, split, SIZE, seed=seed) for split in ("train", "val")]


def described_sample(root) -> dict:
    """The fixture's first image (0000000.png), from whichever split holds it."""
    for dataset in both_splits(root):
        for index, record in enumerate(dataset.records):
            if record["image"].name == "0000000.png":
                return dataset[index]
    raise AssertionError("0000000.png is in no split")


def test_class_ids_map_to_the_methods_16_classes(tmp_path):
    written = make_synthia(tmp_path / "synthia")
    semseg = described_sample(written.root)["semseg"].numpy()
    raw = written.raw["class_ids"]
    expected = np.vectorize(lambda i: SYNTHIA_TO_CLASS.get(int(i), IGNORE_INDEX))(raw)
    assert np.array_equal(semseg, expected)  # the instance ids of the second channel play no part
    assert set(np.unique(semseg).tolist()) == set(range(16)) | {IGNORE_INDEX}
    assert Synthia(written.root, "train", SIZE).class_names[10] == "person"


def test_depth_is_centimetres(tmp_path):
    written = make_synthia(tmp_path / "synthia")
    depth = described_sample(written.root)["depth"][0].numpy()
    np.testing.assert_allclose(depth, written.raw["centimetres"] / 100.0, rtol=1e-6)


@pytest.mark.parametrize("labels", ["GT/LABELS", "parsed_LABELS"])
def test_both_label_folders_and_pit_names_are_found(tmp_path, labels):
    written = make_synthia(tmp_path / "synthia", labels=labels)
    train, val = both_splits(written.root)
    images = sorted(r["image"].name for r in train.records + val.records)
    assert images == sorted(written.splits["all"]) and "0000003_PIT.png" in images
    record = next(r for r in train.records + val.records if r["image"].name == "0000003_PIT.png")
    assert record["semseg"].name == "0000003.png" and record["depth"].name == "0000003.png"


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    written = make_synthia(tmp_path / "synthia", count=20)
    train, val = both_splits(written.root, seed=5)
    train_images = {r["image"] for r in train.records}
    assert (len(train), len(val)) == (16, 4)
    assert train_images.isdisjoint(r["image"] for r in val.records)
    assert Synthia(written.root, "test", SIZE, seed=5).records == val.records


def test_missing_labels_name_the_file_and_the_layout(tmp_path):
    written = make_synthia(tmp_path / "synthia")
    (written.root / "GT" / "LABELS" / "0000004.png").unlink()
    with pytest.raises(DatasetLayoutError) as error:
        both_splits(written.root)
    assert "GT/LABELS/0000004.png is missing" in str(error.value)
    assert "Depth/Depth/<name>.png" in str(error.value)
    with pytest.raises(DatasetLayoutError, match=r"RGB is missing"):
        Synthia(tmp_path, "train", SIZE)
