"""Keep-latest mailboxes, one per camera, between the subscription callbacks and the network.

A camera publishes faster than a network infers on a small computer. Queueing the excess
makes every output later than the last, without bound; the node instead keeps only each
camera's newest waiting frame: a new frame replaces the one still waiting (which counts as
dropped), so the latency of what is published stays one inference plus at most one frame
interval.

The network takes the waiting frames of all cameras at once, as one batch: every camera with a
frame is in the next batch, so a fast camera cannot starve a slow one, and a camera that stops
only leaves the batches smaller. With a time-sync window, a batch holds the frames whose
stamps lie within the window of the frame that has waited longest, and the taker waits (at most
the window, from that frame's arrival) for every camera to have one; frames outside the window
stay for a later batch.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class _Waiting(Generic[Item]):
    item: Item
    stamp: float  # seconds, the message header's
    arrived: float  # time.monotonic()


class LatestFrames(Generic[Item]):
    """Thread-safe keep-latest slots, one per camera: ``put`` never blocks, ``take`` waits
    for a batch. ``window`` gives the time-sync window in seconds when asked (0: off), so that
    it can change while frames flow."""

    def __init__(self, cameras: int, window: Callable[[], float] = lambda: 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if cameras < 1:
            raise ValueError(f"at least one camera is needed, got {cameras}")
        self._condition = threading.Condition()
        self._slots: list[_Waiting[Item] | None] = [None] * cameras
        self._window, self._clock = window, clock
        self._closed = False

    def put(self, camera: int, item: Item, stamp: float = 0.0) -> bool:
        """Store ``item`` of ``camera`` for the taker; returns True when it replaced one of the
        same camera never taken."""
        with self._condition:
            replaced = self._slots[camera] is not None
            self._slots[camera] = _Waiting(item, stamp, self._clock())
            self._condition.notify()
            return replaced

    def take(self, timeout: float | None = None) -> list[Item] | None:
        """The next batch, in camera order (emptying those slots), or None after ``timeout``
        or once closed with nothing left."""
        with self._condition:
            if not self._condition.wait_for(self._any_waiting, timeout):
                return None
            window = self._window()
            if window > 0 and not self._closed:
                oldest = min(waiting.arrived for waiting in self._slots if waiting is not None)
                self._condition.wait_for(lambda: self._closed or all(self._slots),
                                         max(0.0, oldest + window - self._clock()))
            return self._take_batch(window)

    def close(self) -> None:
        """Wake the taker for good; later ``take`` calls return what is left, then None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _any_waiting(self) -> bool:
        return self._closed or any(waiting is not None for waiting in self._slots)

    def _take_batch(self, window: float) -> list[Item] | None:
        """The waiting frames within ``window`` of the longest-waiting one's stamp (all of
        them when the window is 0), their slots emptied (the caller holds the lock)."""
        waiting = [(camera, slot) for camera, slot in enumerate(self._slots) if slot is not None]
        if not waiting:
            return None
        if window > 0:
            reference = min(waiting, key=lambda entry: entry[1].arrived)[1].stamp
            waiting = [(camera, slot) for camera, slot in waiting
                       if abs(slot.stamp - reference) <= window]
        for camera, _ in waiting:
            self._slots[camera] = None
        return [slot.item for _, slot in waiting]
