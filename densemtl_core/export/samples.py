"""Sample frames for export checks and INT8 calibration: procedural scenes with ground truth."""
from __future__ import annotations

from ..data.synthetic import render_scene, scene_seed


def synthetic_frames(count: int, size: tuple[int, int], split: str = "test",
                     seed: int = 0) -> list[dict]:
    """``count`` rendered scenes of ``split`` (see ``render_scene`` for the keys); the test split
    checks accuracy, the train split feeds calibration, so checks never see calibration data."""
    return [render_scene(scene_seed(seed, split, index), size) for index in range(count)]
