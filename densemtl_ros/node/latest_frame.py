"""A one-frame mailbox between the subscription callback and the processing thread.

A camera publishes faster than a network infers on a small computer. Queueing the excess
makes every output later than the last, without bound; the node instead keeps only the newest
waiting frame: a new frame replaces the one still waiting (which counts as dropped), so the
latency of what is published stays one inference plus at most one frame interval.
"""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class LatestFrame(Generic[Item]):
    """Thread-safe keep-latest slot: ``put`` never blocks, ``take`` waits for an item."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: Item | None = None
        self._closed = False

    def put(self, item: Item) -> bool:
        """Store ``item`` for the consumer; returns True when it replaced one never taken."""
        with self._condition:
            replaced = self._item is not None
            self._item = item
            self._condition.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Item | None:
        """The waiting item (emptying the slot), or None after ``timeout`` or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the consumer for good; later ``take`` calls return what is left, then None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
