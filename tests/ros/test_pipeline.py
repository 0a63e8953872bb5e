"""The node's two-stage pipeline: order, overlap, errors and stopping. The first stage takes
a batch (one camera here: a list of one item)."""
import threading
import time

from densemtl_ros.node.latest_frame import LatestFrames
from densemtl_ros.node.pipeline import TwoStagePipeline


def _wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_items_flow_through_both_stages_in_order():
    source, done = LatestFrames(1), []
    pipeline = TwoStagePipeline(source, lambda batch: batch[0] * 10, done.append, on_error=print)
    pipeline.start()
    try:
        for item in range(1, 6):
            source.put(0, item)
            _wait_until(lambda: len(done) == item)
        assert done == [10, 20, 30, 40, 50]
    finally:
        pipeline.stop()


def test_the_stages_overlap():
    """While the second stage works on one item, the first already runs on the next."""
    source, overlapped = LatestFrames(1), threading.Event()
    first_running = threading.Event()
    finished = []

    def first(batch):
        (item,) = batch
        first_running.set()
        time.sleep(0.05)
        first_running.clear()
        return item

    def second(item):
        if first_running.wait(0.04):
            overlapped.set()
        time.sleep(0.1)
        finished.append(item)
    pipeline = TwoStagePipeline(source, first, second, on_error=print)
    pipeline.start()
    try:
        source.put(0, 1)
        _wait_until(lambda: first_running.is_set() or finished)
        time.sleep(0.06)  # the first item has moved on to the second stage
        source.put(0, 2)
        _wait_until(lambda: len(finished) == 2)
        assert overlapped.is_set()
    finally:
        pipeline.stop()


def test_errors_are_reported_and_the_pipeline_goes_on():
    source, errors, done = LatestFrames(1), [], []

    def first(batch):
        (item,) = batch
        if item == "bad first":
            raise ValueError("first stage failed")
        return item

    def second(item):
        if item == "bad second":
            raise RuntimeError("second stage failed")
        done.append(item)
    pipeline = TwoStagePipeline(source, first, second, on_error=errors.append)
    pipeline.start()
    try:
        for item in ("bad first", "bad second", "good"):
            source.put(0, item)
            _wait_until(lambda: len(errors) + len(done) == ("bad first", "bad second",
                                                               "good").index(item) + 1)
        assert [str(error) for error in errors] == ["first stage failed", "second stage failed"]
        assert done == ["good"] and pipeline.alive
    finally:
        pipeline.stop()


def test_none_from_the_first_stage_ends_the_item_and_stop_joins_the_threads():
    source, seen, done = LatestFrames(1), [], []

    def first(batch):
        (item,) = batch
        seen.append(item)
        return None if item == "skip" else item
    pipeline = TwoStagePipeline(source, first, done.append, on_error=print)
    pipeline.start()
    source.put(0, "skip")
    _wait_until(lambda: seen == ["skip"])
    source.put(0, "kept")
    _wait_until(lambda: done == ["kept"])
    pipeline.stop()
    assert not pipeline.alive
