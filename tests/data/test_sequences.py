"""Temporal sample selection on stamps: gaps, stride, static frames and the time-block split."""
from __future__ import annotations

import numpy as np
import pytest

from densemtl_core.config import DataConfig
from densemtl_core.data.sequences import (Timeline, block_ids, gap_limit_ns, held_out_blocks,
                                          plan_split)

S = 1_000_000_000


def stamps(seconds) -> np.ndarray:
    return (np.asarray(seconds, dtype=np.float64) * S).round().astype(np.int64)


def settings(**overrides) -> DataConfig:
    return DataConfig(**{"val_fraction": 0.0, "split_block": 1000.0, **overrides})


def frames_of(triplets):
    return {frame for triplet in triplets for frame in triplet}


def test_triplets_never_cross_a_gap_given_or_by_default():
    seconds = np.concatenate([np.arange(10) * 0.1, 5.0 + np.arange(10) * 0.1])
    timeline = Timeline(stamps(seconds))
    for cfg in (settings(), settings(max_gap=1.0)):
        plan = plan_split([timeline], "train", cfg)
        assert len(plan.triplets) == 2 * 8
        for triplet in plan.triplets:
            sides = {frame < 10 for _, frame in triplet}
            assert len(sides) == 1, triplet
    # A gap set longer than the pause joins both stretches.
    joined = plan_split([timeline], "train", settings(max_gap=10.0))
    assert ((0, 8), (0, 9), (0, 10)) in joined.triplets


def test_default_gap_is_three_median_intervals():
    timeline = stamps([0.0, 0.1, 0.2, 0.45, 0.55, 0.65, 1.0, 1.1, 1.2])
    assert gap_limit_ns(timeline, None) == pytest.approx(0.3 * S)
    assert gap_limit_ns(timeline, 2.0) == 2 * S
    plan = plan_split([Timeline(timeline)], "train", settings())
    # 0.25 s is no gap, 0.35 s is: frames 0-5 and 6-8 are separate stretches.
    assert plan.triplets == [((0, i - 1), (0, i), (0, i + 1)) for i in (1, 2, 3, 4, 7)]


def test_stride_takes_every_stride_th_neighbour():
    timeline = Timeline(stamps(np.arange(12) * 0.1))
    plan = plan_split([timeline], "train", settings(frame_stride=3))
    assert plan.triplets == [((0, i - 3), (0, i), (0, i + 3)) for i in range(3, 9)]


@pytest.mark.parametrize("count, fraction, held", [
    (10, 0.1, {5}), (10, 0.3, {1, 5, 8}), (2, 0.9, {1}), (1, 0.5, set()), (8, 0.0, set())])
def test_held_out_blocks_are_spread_evenly_and_never_all(count, fraction, held):
    assert held_out_blocks(count, fraction) == held


def test_splits_never_share_a_time_block_nor_a_frame():
    seconds = np.arange(0, 60, 0.5)
    timeline = Timeline(stamps(seconds))
    cfg = settings(val_fraction=0.3, split_block=10.0)
    train, val = (plan_split([timeline], split, cfg) for split in ("train", "val"))
    blocks = block_ids(timeline.stamps_ns, 10.0)
    train_blocks = {int(blocks[f]) for _, f in train.frames}
    val_blocks = {int(blocks[f]) for _, f in val.frames}
    assert val_blocks == {1, 4} and train_blocks == {0, 2, 3, 5}
    assert not set(train.frames) & set(val.frames)
    assert len(train.frames) + len(val.frames) == len(seconds)
    for plan in (train, val):
        assert frames_of(plan.triplets) <= set(plan.frames)
    # Consecutive frames only: no train triplet jumps over the held-out block 1.
    assert all(following - previous == 2 for (_, previous), _, (_, following) in train.triplets)
    assert ((0, 19), (0, 40), (0, 41)) not in train.triplets
    assert plan_split([timeline], "test", cfg) == val


def test_near_static_frames_are_skipped_by_odometry():
    steps = [0.1] * 5 + [0.0] * 10 + [0.1] * 5   # moving, standing still, moving again
    positions = np.zeros((20, 3))
    positions[:, 0] = np.cumsum(steps)
    timeline = Timeline(stamps(np.arange(20) * 0.1), positions=positions)
    plan = plan_split([timeline], "train", settings(min_motion=0.05))
    kept = sorted(f for _, f in frames_of(plan.triplets))
    assert kept == [0, 1, 2, 3, 4, 15, 16, 17, 18, 19]
    for triplet in plan.triplets:
        previous, centre, following = (positions[f] for _, f in triplet)
        assert np.linalg.norm(centre - previous) >= 0.05
        assert np.linalg.norm(following - centre) >= 0.05
    # Without a threshold every frame is used, static ones too.
    assert len(plan_split([timeline], "train", settings()).triplets) == 18


def test_frames_without_a_known_position_end_a_stretch():
    positions = np.arange(10, dtype=np.float64).repeat(3).reshape(10, 3)
    positions[5] = np.nan
    timeline = Timeline(stamps(np.arange(10) * 0.1), positions=positions)
    plan = plan_split([timeline], "train", settings(min_motion=0.01))
    assert (0, 5) not in frames_of(plan.triplets)
    assert plan.triplets == [((0, i - 1), (0, i), (0, i + 1)) for i in (1, 2, 3, 7, 8)]


def test_without_odometry_frames_need_enough_image_change():
    change = np.array([0.0] + [0.004] * 9 + [0.0] * 5 + [0.02] * 5)
    timeline = Timeline(stamps(np.arange(20) * 0.1), image_change=change)
    plan = plan_split([timeline], "train", settings(min_image_change=0.01))
    kept = sorted(f for _, f in frames_of(plan.triplets))
    # A slow pan counts once its summed change reaches the threshold; still frames never do.
    assert kept == [0, 3, 6, 9, 15, 16, 17, 18, 19]


def test_several_recordings_combine_and_blocks_never_span_two():
    first, second = (Timeline(stamps(start + np.arange(8) * 0.1)) for start in (0.0, 0.3))
    cfg = settings(val_fraction=0.5, split_block=100.0)
    train, val = (plan_split([first, second], split, cfg) for split in ("train", "val"))
    assert {r for r, _ in train.frames} == {0} and {r for r, _ in val.frames} == {1}
    both = plan_split([first, second], "train", settings())
    assert len(both.triplets) == 12
    assert all(len({r for r, _ in triplet}) == 1 for triplet in both.triplets)


def test_a_timeline_must_be_sorted():
    with pytest.raises(ValueError, match="sorted"):
        Timeline(stamps([0.0, 0.2, 0.1]))
