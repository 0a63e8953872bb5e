"""Pairing camera images with ground-truth messages by header stamp.

Ground truth is recorded next to the camera but not necessarily at the same instant nor in the
same order; stamps, not message order, say which belong together. numpy only: bag evaluation and
training from recordings pair frames the same way.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def match_by_stamp(image_stamps_ns: Sequence[int], other_stamps_ns: Sequence[int],
                   tolerance_ns: int) -> list[int | None]:
    """For each image, the index (into ``other_stamps_ns``) of the message nearest in time, or
    ``None`` when none lies within ``tolerance_ns`` (inclusive).

    Neither sequence needs to be sorted. When two messages are equally near (one before, one
    after, or both with the same stamp), the earlier one wins, and among equal stamps the one
    listed first. Matching is not one-to-one: keep the tolerance below half the ground truth's
    period so that an image whose ground truth is missing does not take its neighbour's.
    """
    if tolerance_ns < 0:
        raise ValueError("tolerance_ns must be >= 0")
    images = np.asarray(image_stamps_ns, dtype=np.int64).reshape(-1)
    others = np.asarray(other_stamps_ns, dtype=np.int64).reshape(-1)
    if len(others) == 0:
        return [None] * len(images)
    order = np.argsort(others, kind="stable")
    stamps = others[order]
    after = np.searchsorted(stamps, images, side="left").clip(max=len(stamps) - 1)
    # The first of any run of equal stamps before the image, so equal stamps go to the first.
    before = np.searchsorted(stamps, stamps[(after - 1).clip(min=0)], side="left")
    gap_before = np.abs(images - stamps[before])
    gap_after = np.abs(stamps[after] - images)
    nearest = np.where(gap_before <= gap_after, before, after)
    gap = np.minimum(gap_before, gap_after)
    return [int(order[i]) if g <= tolerance_ns else None for i, g in zip(nearest, gap)]


STAMP_RULE = ("nearest header stamp within the tolerance; where several images or several "
              "ground-truth messages share a stamp, message order pairs them when the image and "
              "the ground-truth stamp are shared by as many messages, and otherwise the "
              "ground truth is ambiguous and not scored")
"""How images are paired with ground truth (:func:`pair_by_stamp`), for reports."""


@dataclass(frozen=True)
class StampPairs:
    """The ground-truth message (index) of each image, or None; ``by_order``: images paired by
    message order among equal stamps; ``ambiguous``: images left without ground truth because
    equal stamps could not be told apart."""

    indices: list[int | None]
    by_order: frozenset[int]
    ambiguous: frozenset[int]


def _positions(stamps: Sequence[int | None]) -> tuple[dict[int, int], dict[int, int]]:
    """Per index, how many messages share its stamp and its rank among them (in order)."""
    counts = Counter(stamps)
    seen: Counter = Counter()
    ranks = {}
    for index, stamp in enumerate(stamps):
        ranks[index] = seen[stamp]
        seen[stamp] += 1
    return {index: counts[stamp] for index, stamp in enumerate(stamps)}, ranks


def pair_by_stamp(image_stamps_ns: Sequence[int | None], other_stamps_ns: Sequence[int | None],
                  tolerance_ns: int) -> StampPairs:
    """Pair each image with the message of ``other_stamps_ns`` nearest in time
    (:func:`match_by_stamp`), unless equal stamps make that ambiguous. ``None`` is a stamp
    that could not be read: it pairs with nothing.

    Stamps alone cannot tell apart images that share one (a driver that stamps 0, or twice
    alike), nor ground-truth messages that do. When the image's stamp is shared by n images and
    the nearest ground-truth stamp by n messages, the k-th such image (in message order) gets
    the k-th such message; with other numbers the image is left without ground truth and
    listed in ``ambiguous`` (never given a neighbour's).
    """
    readable = [index for index, stamp in enumerate(other_stamps_ns) if stamp is not None]
    images = [index for index, stamp in enumerate(image_stamps_ns) if stamp is not None]
    nearest = match_by_stamp([image_stamps_ns[i] for i in images],
                             [other_stamps_ns[j] for j in readable], tolerance_ns)
    image_count, image_rank = _positions(image_stamps_ns)
    other_count, other_rank = _positions(other_stamps_ns)
    other_at = {(other_stamps_ns[j], other_rank[j]): j for j in readable}
    indices: list[int | None] = [None] * len(image_stamps_ns)
    by_order, ambiguous = set(), set()
    for image, match in zip(images, nearest):
        if match is None:
            continue
        other = readable[match]
        if image_count[image] != other_count[other]:
            ambiguous.add(image)
            continue
        indices[image] = other_at[(other_stamps_ns[other], image_rank[image])]
        if image_count[image] > 1:
            by_order.add(image)
    return StampPairs(indices, frozenset(by_order), frozenset(ambiguous))
