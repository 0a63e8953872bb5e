"""Render domains: the source domain renders exactly what it always did; the shifted one keeps the
classes and label conventions but looks measurably different, and reaches the datasets."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from densemtl_core.config import SYNTHETIC_DOMAINS, ConfigError, DataConfig, load_config
from densemtl_core.data import build_dataset
from densemtl_core.data.synthetic import (
    RENDER_DOMAINS, SHIFTED_DOMAIN, SOURCE_DOMAIN, SYNTHETIC_CLASSES, SyntheticScenes,
    SyntheticSequences, edges_from_maps, image_to_tensor, render_scene, render_trajectory,
    scene_seed)

SIZE = (64, 80)
SEEDS = [scene_seed(0, "test", index) for index in range(6)]


def _digest(frames: list[dict[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        for key in sorted(frame):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(frame[key]).tobytes())
    return digest.hexdigest()


# These digests were computed from the renderer as it was before domains existed: the source
# domain must keep every array bit for bit (the shipped model and the other tests rely on it).
@pytest.mark.parametrize("render, expected", [
    (lambda **kw: [render_scene(seed, (32, 48), **kw) for seed in (0, 1, 7)],
     "d0234f13b8f7f3bad8816635d06db6d05be8762042504cb7eb3ffdebaff2bc2e"),
    (lambda **kw: [render_scene(3, (32, 48), supersample=2, max_depth=5.0, **kw)],
     "12ae9a687c089946afffc8a115b8e2e538a425ae9a5d80e54b1ca4592c244efc"),
    (lambda **kw: [render_scene(5, (32, 48), noise=False, **kw)],
     "83e16f25c610998eb91608ff40198eedcaedd417d47cf1dc8846564914f7b185"),
    (lambda **kw: list(render_trajectory(11, 3, (32, 48), speed=0.1, stride=2, **kw)),
     "8381fcb43d39b00bfd6b8d3e9d6a2bf64fe9a4d77c4a87c7492265cf29247749"),
], ids=["scenes", "supersampled", "noiseless", "trajectory"])
def test_the_source_domain_renders_bit_for_bit_as_before(render, expected):
    assert _digest(render()) == expected
    assert _digest(render(domain=SOURCE_DOMAIN)) == expected


def test_the_domains_are_named_as_the_configuration_names_them():
    assert tuple(RENDER_DOMAINS) == SYNTHETIC_DOMAINS == ("source", "shifted")
    assert RENDER_DOMAINS["shifted"] is SHIFTED_DOMAIN
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHIFTED_DOMAIN.blur = 0.0  # type: ignore[misc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, np.ndarray]]]:
    return {name: [render_scene(seed, SIZE, domain=domain) for seed in SEEDS]
            for name, domain in RENDER_DOMAINS.items()}


def test_shifted_scenes_keep_the_classes_and_label_conventions(rendered):
    shifted = rendered["shifted"]
    classes = set().union(*(np.unique(frame["semseg"]).tolist() for frame in shifted))
    assert classes <= set(range(len(SYNTHETIC_CLASSES))) and len(classes) >= 6
    for frame in shifted:
        assert frame["image"].dtype == np.uint8 and frame["image"].shape == (*SIZE, 3)
        assert frame["semseg"].dtype == np.uint8 and frame["edges"].dtype == np.uint8
        assert (frame["depth"] > 0).all()  # every pixel is labelled, so every depth is valid
        np.testing.assert_allclose(np.linalg.norm(frame["normals"], axis=-1), 1.0, atol=1e-4)
        # Normals face the camera: n . (pixel ray) < 0 in the optical frame.
        k = frame["intrinsics"]
        rows, cols = np.mgrid[:SIZE[0], :SIZE[1]]
        rays = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1],
                         np.ones(SIZE)], axis=-1)
        assert ((frame["normals"] * rays).sum(-1) < 0).mean() > 0.999
        recomputed = edges_from_maps(frame["semseg"], frame["depth"], frame["normals"])
        assert (frame["edges"] <= recomputed).all()  # primitive-aware edges are a subset


def test_the_shifted_camera_is_low_and_wide(rendered):
    for frame in rendered["shifted"]:
        height = frame["pose"][2, 3]
        fov = np.degrees(2 * np.arctan(SIZE[1] / 2 / frame["intrinsics"][0, 0]))
        assert SHIFTED_DOMAIN.view_height[0] <= height <= SHIFTED_DOMAIN.view_height[1]
        assert SHIFTED_DOMAIN.fov[0] - 0.01 <= fov <= SHIFTED_DOMAIN.fov[1] + 0.01
    assert all(frame["pose"][2, 3] >= 1.0 for frame in rendered["source"])


def _statistics(frames: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Warmth (mean red minus mean blue), contrast (grey-level standard deviation per image) and
    high-frequency energy (mean absolute difference of neighbouring grey levels)."""
    images = np.stack([frame["image"] for frame in frames]).astype(np.float64) / 255
    grey = images.mean(-1)
    high = np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=2)).mean()
    return {"warmth": float(images[..., 0].mean() - images[..., 2].mean()),
            "contrast": float(grey.std(axis=(1, 2)).mean()), "high_frequency": float(high)}


def test_shifted_images_have_other_statistics(rendered):
    source, shifted = _statistics(rendered["source"]), _statistics(rendered["shifted"])
    assert shifted["warmth"] > source["warmth"] + 0.1  # warm lights
    assert shifted["contrast"] > 1.1 * source["contrast"]  # harsher light, less ambient
    assert shifted["high_frequency"] < 0.75 * source["high_frequency"]  # blur and JPEG


def test_the_shifted_domain_is_deterministic_by_seed():
    first, again = (render_scene(SEEDS[0], SIZE, domain=SHIFTED_DOMAIN) for _ in range(2))
    other = render_scene(SEEDS[1], SIZE, domain=SHIFTED_DOMAIN)
    assert _digest([first]) == _digest([again])
    assert not np.array_equal(first["image"], other["image"])
    walks = [list(render_trajectory(SEEDS[0], 2, SIZE, domain=SHIFTED_DOMAIN)) for _ in range(2)]
    assert _digest(walks[0]) == _digest(walks[1])
    assert walks[0][0]["pose"][2, 3] < 0.8


def test_build_dataset_renders_the_configured_domain():
    cfg = DataConfig(image_size=SIZE, val_length=2, domain="shifted")
    scenes = build_dataset(cfg, "val")
    assert isinstance(scenes, SyntheticScenes) and scenes.domain is SHIFTED_DOMAIN
    expected = render_scene(scene_seed(0, "val", 1), SIZE, domain=SHIFTED_DOMAIN)
    torch.testing.assert_close(scenes[1]["image"], image_to_tensor(expected["image"]))
    source = build_dataset(dataclasses.replace(cfg, domain="source"), "val")[1]["image"]
    assert not torch.equal(source, scenes[1]["image"])
    sequences = build_dataset(cfg, "val", sequence=True)
    assert isinstance(sequences, SyntheticSequences) and sequences.domain is SHIFTED_DOMAIN
    assert sequences.frames(0)[1]["pose"][2, 3] < 0.8


def test_an_unknown_domain_is_a_configuration_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"data.domain must be one of \['source', 'shifted'\], "
                                          r"got 'real'"):
        load_config(overrides=["data.domain=real"])
    with pytest.raises(ConfigError, match="data.domain must be one of"):
        build_dataset(DataConfig(domain="real"), "val")
    assert load_config(overrides=["data.domain=shifted"]).data.domain == "shifted"
