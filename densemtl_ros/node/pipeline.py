"""Two threads in series with a one-item hand-off: the network on frame N+1 while frame N is
up-sampled and published.

On a small computer the network and the post-processing each take a large share of a frame's
time, and each alone leaves CPU cores (or the GPU) idle; overlapping them raises throughput
towards the slower of the two. The hand-off holds one item: when the second stage falls
behind, the first waits rather than queueing, and newer camera frames replace the waiting one
upstream (see :mod:`densemtl_ros.node.latest_frame`), so latency stays bounded.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from .latest_frame import LatestFrames

_POLL_SECONDS = 0.2


class TwoStagePipeline:
    """``first(item)`` in one thread, then ``second(result)`` in another, for every item taken
    from ``source``; a ``None`` result ends an item after the first stage. An exception in
    either stage goes to ``on_error`` and the pipeline goes on with the next item."""

    def __init__(self, source: LatestFrames, first: Callable[[Any], Any],
                 second: Callable[[Any], None],
                 on_error: Callable[[BaseException], None]) -> None:
        self._source = source
        self._first, self._second, self._on_error = first, second, on_error
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        self._running = threading.Event()
        self._threads = [threading.Thread(target=self._run_first, name="densemtl-network",
                                          daemon=True),
                         threading.Thread(target=self._run_second, name="densemtl-publish",
                                          daemon=True)]

    def start(self) -> None:
        self._running.set()
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the items in progress; the source is closed."""
        self._running.clear()
        self._source.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def _guarded(self, stage: Callable[[Any], Any], item: Any) -> Any:
        try:
            return stage(item)
        except Exception as error:  # one bad frame must not end the pipeline
            self._on_error(error)
            return None

    def _run_first(self) -> None:
        while self._running.is_set():
            item = self._source.take(timeout=_POLL_SECONDS)
            if item is None:
                continue
            result = self._guarded(self._first, item)
            while result is not None and self._running.is_set():
                try:
                    self._handoff.put(result, timeout=_POLL_SECONDS)
                    break
                except queue.Full:
                    continue

    def _run_second(self) -> None:
        while self._running.is_set():
            try:
                result = self._handoff.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            self._guarded(self._second, result)
