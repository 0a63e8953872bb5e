"""The keep-latest slots between the subscriptions and the network: one camera, and several
batched (fairness, the time-sync window)."""
import threading
import time

from densemtl_ros.node.latest_frame import LatestFrames


def one_camera() -> LatestFrames:
    return LatestFrames(1)


# -- one camera -----------------------------------------------------------------------------------

def test_put_reports_replacing_a_waiting_item():
    slot = one_camera()
    assert slot.put(0, "a") is False
    assert slot.put(0, "b") is True
    assert slot.put(0, "c") is True
    assert slot.take(timeout=0) == ["c"]  # only the latest is kept
    assert slot.put(0, "d") is False  # the slot was emptied by take
    assert slot.take(timeout=0) == ["d"]


def test_take_empties_the_slot_and_times_out():
    slot = one_camera()
    slot.put(0, 1)
    assert slot.take(timeout=1.0) == [1]
    began = time.monotonic()
    assert slot.take(timeout=0.1) is None
    waited = time.monotonic() - began
    assert 0.09 <= waited < 1.0
    assert slot.take(timeout=0) is None


def test_falsy_items_are_items():
    slot = one_camera()
    slot.put(0, 0)
    assert slot.put(0, "") is True
    assert slot.take(timeout=0) == [""]


def test_put_wakes_a_blocked_taker():
    slot = one_camera()
    taken = []
    taker = threading.Thread(target=lambda: taken.append(slot.take(timeout=5.0)))
    taker.start()
    time.sleep(0.1)
    began = time.monotonic()
    slot.put(0, "frame")
    taker.join(timeout=2.0)
    assert not taker.is_alive()
    assert taken == [["frame"]]
    assert time.monotonic() - began < 1.0


def test_close_wakes_a_blocked_taker():
    slot = one_camera()
    taken = []
    taker = threading.Thread(target=lambda: taken.append(slot.take()))  # no timeout
    taker.start()
    time.sleep(0.1)
    assert taker.is_alive(), "take() must block while the slot is empty"
    began = time.monotonic()
    slot.close()
    taker.join(timeout=2.0)
    assert not taker.is_alive(), "close() did not wake the taker"
    assert time.monotonic() - began < 0.5
    assert taken == [None]


def test_take_after_close_returns_what_is_left_then_none():
    slot = one_camera()
    slot.put(0, "last")
    slot.close()
    assert slot.take() == ["last"]
    began = time.monotonic()
    assert slot.take() is None  # no timeout, yet returns at once
    assert time.monotonic() - began < 0.5


def test_many_producers_one_consumer_lose_nothing_but_replacements():
    """Every put either is taken or is counted as replaced, one camera or four."""
    for cameras in (1, 4):
        slots = LatestFrames(cameras)
        replaced = [0] * 4
        taken = []
        done = threading.Event()

        def produce(index):
            for number in range(500):
                replaced[index] += slots.put(index % cameras, (index, number))

        def consume():
            while not done.is_set():
                taken.extend(slots.take(timeout=0.01) or [])

        consumer = threading.Thread(target=consume)
        consumer.start()
        producers = [threading.Thread(target=produce, args=(index,)) for index in range(4)]
        for producer in producers:
            producer.start()
        for producer in producers:
            producer.join()
        done.set()
        consumer.join(timeout=5.0)
        taken += slots.take(timeout=0) or []
        assert len(taken) + sum(replaced) == 4 * 500
        assert len(set(taken)) == len(taken)


# -- several cameras ------------------------------------------------------------------------------

def test_a_batch_holds_the_newest_frame_of_every_camera_that_has_one():
    slots = LatestFrames(3)
    slots.put(2, "c1")
    slots.put(0, "a1")
    slots.put(0, "a2")
    assert slots.take(timeout=0) == ["a2", "c1"]  # camera order; camera 1 has none
    assert slots.take(timeout=0) is None


def test_a_fast_camera_does_not_starve_a_slow_one():
    """Every frame of a slow camera is in the next batch, however fast another publishes."""
    slots = LatestFrames(2)
    batches = []
    for tick in range(100):
        slots.put(0, ("fast", tick))
        if tick % 10 == 0:
            slots.put(1, ("slow", tick))
        if tick % 3 == 0:
            batches.append(slots.take(timeout=0))
    slow = [item for batch in batches for item in batch if item[0] == "slow"]
    assert [tick for _, tick in slow] == list(range(0, 100, 10))


def test_the_sync_window_batches_frames_of_close_stamps_and_keeps_the_others():
    window = [0.010]
    slots = LatestFrames(3, window=lambda: window[0])
    slots.put(0, "a", stamp=100.000)  # waited longest: the reference
    slots.put(1, "b", stamp=100.008)
    slots.put(2, "c", stamp=100.050)  # 50 ms off: stays for a later batch
    assert slots.take(timeout=0) == ["a", "b"]
    assert slots.take(timeout=0.5) == ["c"]  # now the longest-waiting: served, not starved
    window[0] = 0.0  # the window can change while frames flow: off, all at once
    slots.put(0, "a", stamp=1.0)
    slots.put(2, "c", stamp=9.0)
    assert slots.take(timeout=0) == ["a", "c"]


def test_the_sync_window_waits_for_the_other_cameras_at_most_the_window():
    slots = LatestFrames(2, window=lambda: 0.2)
    slots.put(0, "a", stamp=5.0)
    threading.Timer(0.05, lambda: slots.put(1, "b", stamp=5.01)).start()
    began = time.monotonic()
    assert slots.take(timeout=1.0) == ["a", "b"]  # waited for camera 1, not the whole window
    assert time.monotonic() - began < 0.19
    slots.put(0, "a", stamp=6.0)  # camera 1 has stopped
    began = time.monotonic()
    assert slots.take(timeout=1.0) == ["a"]
    assert 0.15 <= time.monotonic() - began < 0.9
