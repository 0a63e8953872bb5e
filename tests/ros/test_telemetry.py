"""The node's self-measurement and its /diagnostics reports."""
import math
import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from densemtl_ros.node.diagnostics import DiagnosticsReporter, status_name
from densemtl_ros.node.telemetry import DETAIL_CHARACTERS, RECENT_DETAILS, STAGES, Telemetry


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- Telemetry ----------------------------------------------------------------------------------

def receive(telemetry: Telemetry, replaced_waiting: bool) -> None:
    """What the node's image callback reports for one message."""
    telemetry.frame_received()
    if replaced_waiting:
        telemetry.frame_dropped()


def test_rates_over_the_horizon():
    clock = FakeClock()
    telemetry = Telemetry(horizon=5.0, clock=clock)
    start = clock.now
    for index in range(11):  # 10 Hz input for one second
        clock.now = start + index * 0.1
        receive(telemetry, False)
        if index % 2 == 0:  # 5 Hz output
            telemetry.frame_processed({"network": 0.05})
    snapshot = telemetry.snapshot()
    assert snapshot.input_rate == pytest.approx(10.0)
    assert snapshot.output_rate == pytest.approx(5.0)
    # A burst at 20 Hz long after: the old arrivals leave the horizon and do not dilute it.
    burst = start + 30.0
    for index in range(21):
        clock.now = burst + index * 0.05
        receive(telemetry, False)
    snapshot = telemetry.snapshot()
    assert snapshot.input_rate == pytest.approx(20.0)
    assert snapshot.output_rate == 0.0  # the outputs are older than the horizon
    assert snapshot.received == 32 and snapshot.processed == 6  # counters never expire
    clock.now = burst + 1.0 + 5.0 + 0.01
    assert telemetry.snapshot().input_rate == 0.0


def test_rate_counts_only_the_horizon():
    clock = FakeClock(0.0)
    telemetry = Telemetry(horizon=2.0, clock=clock)
    for index in range(41):  # 10 Hz for four seconds
        clock.now = index * 0.1
        receive(telemetry, False)
    assert telemetry.snapshot().input_rate == pytest.approx(10.0)
    clock.now = 4.0 + 1.5  # the newest arrival is 1.5 s old: only [3.5, 4.0] remain
    assert telemetry.snapshot().input_rate == pytest.approx(10.0)
    clock.now = 4.0 + 2.01
    assert telemetry.snapshot().input_rate == 0.0


def test_a_single_frame_has_no_rate():
    telemetry = Telemetry(clock=FakeClock())
    receive(telemetry, False)
    telemetry.frame_processed({})
    snapshot = telemetry.snapshot()
    assert (snapshot.input_rate, snapshot.output_rate) == (0.0, 0.0)


def stage_samples(index: int) -> dict[str, float]:
    """Frame ``index`` (1-based): wait 100 ms, convert i ms, network 10 i ms, upsample 5 ms,
    build 2 i ms, publish 1 ms."""
    return {"wait": 0.1, "convert": index * 1e-3, "network": index * 1e-2, "upsample": 5e-3,
            "build": index * 2e-3, "publish": 1e-3}


def test_stage_percentiles_and_added_latency():
    clock = FakeClock()
    telemetry = Telemetry(window=300, clock=clock)
    for index in range(1, 101):
        clock.now += 0.1
        telemetry.frame_processed(stage_samples(index))
    snapshot = telemetry.snapshot()
    assert set(snapshot.latency) == set(STAGES)
    # numpy's linear interpolation over 1..100: p50 = 50.5, p95 = 95.05
    assert snapshot.latency["convert"] == pytest.approx((50.5e-3, 95.05e-3))
    assert snapshot.latency["network"] == pytest.approx((50.5e-2, 95.05e-2))
    assert snapshot.latency["build"] == pytest.approx((101.0e-3, 190.1e-3))
    assert snapshot.latency["handoff"] == (0.0, 0.0)  # not given: zero
    assert snapshot.latency["publish"] == pytest.approx((1e-3, 1e-3))
    assert snapshot.latency["wait"] == pytest.approx((0.1, 0.1))
    # added latency: everything but network and upsample = 100 ms + 3 i ms + 1 ms
    assert snapshot.added_latency == pytest.approx((0.101 + 3 * 50.5e-3, 0.101 + 3 * 95.05e-3))


def test_percentiles_use_the_latest_window():
    telemetry = Telemetry(window=10, clock=FakeClock())
    for index in range(1, 101):
        telemetry.frame_processed(stage_samples(index))
    snapshot = telemetry.snapshot()
    expected = np.percentile(np.arange(91, 101) * 1e-3, (50, 95))
    assert snapshot.latency["convert"] == pytest.approx(tuple(expected))
    assert snapshot.latency["convert"][0] == pytest.approx(95.5e-3)
    assert snapshot.processed == 100


def test_missing_stages_count_as_zero_and_empty_is_nan():
    telemetry = Telemetry(clock=FakeClock())
    snapshot = telemetry.snapshot()
    assert all(math.isnan(p50) and math.isnan(p95) for p50, p95 in snapshot.latency.values())
    assert all(math.isnan(value) for value in snapshot.added_latency)
    telemetry.frame_processed({"network": 0.2})
    snapshot = telemetry.snapshot()
    assert snapshot.latency["network"] == pytest.approx((0.2, 0.2))
    assert snapshot.latency["convert"] == (0.0, 0.0)
    assert snapshot.added_latency == (0.0, 0.0)


def test_counters_and_refusals_by_reason():
    telemetry = Telemetry(clock=FakeClock())
    for replaced in (False, True, True, False, True):
        receive(telemetry, replaced)
    for reason in ("encoding", "size", "encoding", "encoding"):
        telemetry.frame_refused(reason)
    telemetry.frame_failed()
    telemetry.frame_failed()
    telemetry.frame_skipped()
    telemetry.frame_processed({})
    snapshot = telemetry.snapshot()
    assert (snapshot.received, snapshot.dropped, snapshot.refused, snapshot.failed,
            snapshot.skipped, snapshot.processed) == (5, 3, 4, 2, 1, 1)
    assert snapshot.refused_by_reason == {"encoding": 3, "size": 1}
    snapshot.refused_by_reason["size"] = 99  # a snapshot is a copy
    assert telemetry.snapshot().refused_by_reason == {"encoding": 3, "size": 1}


def test_details_are_bounded_per_reason_latest_first():
    """A name per frame (300 bogus encodings) keeps one counter and the latest few names."""
    telemetry = Telemetry(clock=FakeClock())
    for index in range(300):
        telemetry.frame_refused("unsupported encoding", f"bogus{index}")
    telemetry.frame_refused("unsupported encoding", "bogus297")  # seen again: moves first
    telemetry.frame_refused("unsupported encoding", "y" * 1000)
    telemetry.frame_refused("step too small")
    snapshot = telemetry.snapshot()
    assert snapshot.refused_by_reason == {"unsupported encoding": 302, "step too small": 1}
    assert snapshot.refused_details == {"unsupported encoding": (
        "y" * DETAIL_CHARACTERS, "bogus297", "bogus299", "bogus298", "bogus296")}
    assert len(snapshot.refused_details["unsupported encoding"]) == RECENT_DETAILS


def test_counters_are_thread_safe():
    telemetry = Telemetry()

    def feed():
        for _ in range(2000):
            receive(telemetry, True)
            telemetry.frame_processed({"convert": 1e-3})
            telemetry.frame_refused("size")

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = telemetry.snapshot()
    assert (snapshot.received, snapshot.dropped, snapshot.processed, snapshot.refused) == (
        8000, 8000, 8000, 8000)


# -- DiagnosticsReporter ------------------------------------------------------------------------

STATIC = {"backend": "onnxruntime", "model": "shipped default", "image topic": "/cam/image"}
NAME = status_name("/perception/densemtl")


def values_of(report: DiagnosticArray) -> dict[str, str]:
    assert isinstance(report, DiagnosticArray)
    assert len(report.status) == 1
    return {pair.key: pair.value for pair in report.status[0].values}


def stream(telemetry: Telemetry, clock: FakeClock, frames: int = 10) -> None:
    """One second at 10 Hz, every frame processed with stage_samples(2)."""
    for _ in range(frames):
        clock.now += 0.1
        receive(telemetry, False)
        telemetry.frame_processed(stage_samples(2))


def test_report_levels():
    clock = FakeClock()
    telemetry = Telemetry(clock=clock)
    reporter = DiagnosticsReporter(NAME, "onnxruntime (cpu)", STATIC)
    stamp = Time(sec=12, nanosec=34)

    def level():
        status = reporter.report(telemetry.snapshot(), stamp).status[0]
        return status.level, status.message

    assert level() == (DiagnosticStatus.WARN, "no images received recently")
    stream(telemetry, clock)
    assert level()[0] == DiagnosticStatus.OK
    telemetry.frame_failed()
    stream(telemetry, clock)
    code, message = level()
    assert code == DiagnosticStatus.ERROR and message.startswith("1 frames failed")
    stream(telemetry, clock)
    assert level()[0] == DiagnosticStatus.OK, "only failures since the previous report count"
    telemetry.frame_refused("size")
    telemetry.frame_refused("encoding")
    stream(telemetry, clock)
    code, message = level()
    assert code == DiagnosticStatus.WARN and message.startswith("2 frames refused")
    stream(telemetry, clock)
    assert level()[0] == DiagnosticStatus.OK
    telemetry.frame_refused("size")
    telemetry.frame_failed()
    stream(telemetry, clock)
    assert level()[0] == DiagnosticStatus.ERROR, "a failure outranks a refusal"
    clock.now += 60.0  # the camera stopped: nothing within the rate horizon
    assert level() == (DiagnosticStatus.WARN, "no images received recently")


def test_withheld_outputs_warn_with_the_reason_and_are_no_failure():
    clock = FakeClock()
    telemetry = Telemetry(clock=clock)
    reporter = DiagnosticsReporter(NAME, "hw", {})
    stream(telemetry, clock)
    reporter.report(telemetry.snapshot(), Time())
    for _ in range(3):
        telemetry.outputs_withheld("unusable camera_info", "camera_info size is 0x0")
    stream(telemetry, clock)
    report = reporter.report(telemetry.snapshot(), Time())
    status = report.status[0]
    assert status.level == DiagnosticStatus.WARN
    assert status.message == ("3 frames without some outputs since last report "
                              "(unusable camera_info: camera_info size is 0x0)")
    values = values_of(report)
    assert values["frames failed"] == "0" and values["frames with outputs withheld"] == "3"
    assert values["outputs withheld: unusable camera_info"] == "3"
    assert values["outputs withheld: unusable camera_info: latest"] == "camera_info size is 0x0"
    stream(telemetry, clock)
    assert reporter.report(telemetry.snapshot(), Time()).status[0].level == DiagnosticStatus.OK


def test_ok_message_gives_the_rates():
    clock = FakeClock()
    telemetry = Telemetry(clock=clock)
    reporter = DiagnosticsReporter(NAME, "hw", {})
    for _ in range(11):
        clock.now += 0.1
        receive(telemetry, True)
    for _ in range(3):
        clock.now += 0.5
        telemetry.frame_processed({})
    status = reporter.report(telemetry.snapshot(), Time()).status[0]
    assert status.level == DiagnosticStatus.OK
    assert status.message == "processing 2.0 Hz of 10.0 Hz"


def test_report_values_in_milliseconds():
    clock = FakeClock()
    telemetry = Telemetry(clock=clock)
    stream(telemetry, clock)  # every frame: wait 100, convert 2, network 20, upsample 5,
    #                           build 4, publish 1 ms
    telemetry.frame_refused("size")
    telemetry.frame_refused("size")
    telemetry.frame_refused("encoding")
    telemetry.frame_skipped()
    reporter = DiagnosticsReporter(NAME, "onnxruntime (cpu)", STATIC)
    report = reporter.report(telemetry.snapshot(), Time(sec=12, nanosec=34))
    assert (report.header.stamp.sec, report.header.stamp.nanosec) == (12, 34)
    status = report.status[0]
    assert status.name == "/perception/densemtl: dense multi-task inference"
    assert status.hardware_id == "onnxruntime (cpu)"
    values = values_of(report)
    assert values["input rate (Hz)"] == "10.00"
    assert values["output rate (Hz)"] == "10.00"
    assert values["frames received"] == "10"
    assert values["frames processed"] == "10"
    assert values["frames dropped (replaced while waiting)"] == "0"
    assert values["frames refused"] == "3"
    assert values["frames failed"] == "0"
    assert values["frames skipped (no subscriber)"] == "1"
    assert values["convert p50 (ms)"] == "2.00" and values["convert p95 (ms)"] == "2.00"
    assert values["network p50 (ms)"] == "20.00" and values["network p95 (ms)"] == "20.00"
    assert values["upsample p50 (ms)"] == "5.00" and values["build p50 (ms)"] == "4.00"
    assert values["publish p95 (ms)"] == "1.00"
    assert values["wait p50 (ms)"] == "100.00"
    assert values["added latency p50 (ms)"] == "107.00"  # 100 + 2 + 4 + 1: all but inference
    assert values["added latency p95 (ms)"] == "107.00"
    assert values["refused: size"] == "2" and values["refused: encoding"] == "1"
    assert not any(key.endswith(": latest") for key in values)  # no details were given
    for key, value in STATIC.items():
        assert values[key] == value
    for stage in STAGES:
        assert f"{stage} p50 (ms)" in values and f"{stage} p95 (ms)" in values
    assert all(isinstance(value, str) for value in values.values())


def test_report_keys_do_not_vary_with_the_details():
    telemetry = Telemetry(clock=FakeClock())
    for index in range(300):
        telemetry.frame_refused("unsupported encoding", f"bogus{index}")
    values = values_of(DiagnosticsReporter(NAME, "hw", {}).report(telemetry.snapshot(), Time()))
    refusal_keys = {key: value for key, value in values.items() if key.startswith("refused")}
    assert refusal_keys == {
        "refused: unsupported encoding": "300",
        "refused: unsupported encoding: latest": "bogus299 | bogus298 | bogus297 | bogus296 | "
                                                 "bogus295"}


def test_report_before_any_frame_has_nan_latencies_and_no_refusal_keys():
    report = DiagnosticsReporter(NAME, "hw", {}).report(Telemetry(clock=FakeClock()).snapshot(),
                                                  Time())
    values = values_of(report)
    assert values["network p50 (ms)"] == "nan"
    assert values["input rate (Hz)"] == "0.00"
    assert not any(key.startswith("refused:") for key in values)
