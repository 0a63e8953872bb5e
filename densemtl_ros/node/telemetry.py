"""What the node measures about itself: counters, rates and per-stage latency percentiles.

Kept free of ROS types so that the bookkeeping is tested on its own; ``diagnostics.py`` turns a
:class:`TelemetrySnapshot` into a ``diagnostic_msgs/DiagnosticStatus``.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

STAGES = ("wait", "convert", "network", "handoff", "upsample", "build", "publish")
"""Per frame, from the subscription callback to the last publish: waiting in the keep-latest
slot, message -> RGB, the network (with the Predictor's resizing), waiting between the two
pipeline stages, the Predictor's up-sampling, building the output messages, publishing them."""
INFERENCE_STAGES = ("network", "upsample")
"""What the bare ``Predictor.predict`` does; the rest is the node's added latency."""
RECENT_DETAILS = 5
"""Distinct details kept per reason, the latest: varied bad input (a new encoding name in
every frame) must not grow the node's memory or its /diagnostics report."""
DETAIL_CHARACTERS = 64
"""The most of a detail that is kept."""


@dataclass(frozen=True)
class TelemetrySnapshot:
    received: int
    processed: int
    dropped: int
    refused: int
    failed: int
    skipped: int
    input_rate: float
    output_rate: float
    latency: dict[str, tuple[float, float]]  # stage -> (p50, p95) seconds
    added_latency: tuple[float, float]  # callback to publish minus inference, (p50, p95) s
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    refused_details: dict[str, tuple[str, ...]] = field(default_factory=dict)  # latest first
    withheld: int = 0  # frames published without some of the wanted outputs
    withheld_by_reason: dict[str, int] = field(default_factory=dict)
    withheld_details: dict[str, tuple[str, ...]] = field(default_factory=dict)
    incompatible_qos: dict[str, int] = field(default_factory=dict)  # topic -> endpoints
    incompatible_qos_details: dict[str, tuple[str, ...]] = field(default_factory=dict)  # policies


class _Reasons:
    """Counts by reason, each with its latest few distinct details (the caller locks)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._details: dict[str, deque[str]] = {}

    def add(self, reason: str, detail: str | None, count: int = 1) -> None:
        self.counts[reason] += count
        if detail is None:
            return
        latest = self._details.setdefault(reason, deque(maxlen=RECENT_DETAILS))
        detail = detail[:DETAIL_CHARACTERS]
        if detail in latest:
            latest.remove(detail)
        latest.appendleft(detail)

    def details(self) -> dict[str, tuple[str, ...]]:
        return {reason: tuple(latest) for reason, latest in self._details.items()}


def _recent_rate(times: deque[float], now: float, horizon: float) -> float:
    """Events per second among ``times`` (ascending), those older than ``horizon`` dropped."""
    while times and times[0] < now - horizon:
        times.popleft()
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


class Telemetry:
    """Thread-safe counters fed by the callback and processing threads.

    Rates count events over the last ``horizon`` seconds; latency percentiles use the latest
    ``window`` processed frames, so a report describes the node now, not since start.
    """

    def __init__(self, window: int = 300, horizon: float = 5.0,
                 clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._horizon = horizon
        self._arrivals: deque[float] = deque()
        self._outputs: deque[float] = deque()
        self._stages = {stage: deque(maxlen=window) for stage in STAGES}
        self._added: deque[float] = deque(maxlen=window)
        self._refusals = _Reasons()
        self._withholdings = _Reasons()
        self._incompatible_qos = _Reasons()
        self.received = self.processed = self.dropped = self.failed = self.skipped = 0

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] < now - self._horizon:
            times.popleft()

    def frame_received(self) -> None:
        """Every message the subscription delivers; each then ends up processed, dropped,
        refused, failed or skipped (or is in flight)."""
        with self._lock:
            now = self._clock()
            self.received += 1
            self._arrivals.append(now)
            self._trim(self._arrivals, now)

    def frame_dropped(self) -> None:
        """A frame replaced by a newer one before the processing thread took it."""
        with self._lock:
            self.dropped += 1

    def frame_refused(self, reason: str, detail: str | None = None) -> None:
        """A frame not processed: counted under ``reason``, a fixed phrase for its class of
        problem; ``detail`` (what varied, e.g. the encoding's name) is kept among the latest
        few of that reason."""
        with self._lock:
            self._refusals.add(reason, detail)

    def outputs_withheld(self, reason: str, detail: str | None = None) -> None:
        """A frame whose other outputs go on without some it could not have (``~/points``
        without a usable camera_info); ``reason`` and ``detail`` as for refusals."""
        with self._lock:
            self._withholdings.add(reason, detail)

    def incompatible_qos(self, topic: str, policy: str, endpoints: int = 1) -> None:
        """``endpoints`` discovered on ``topic`` whose QoS cannot match the node's, the last
        incompatible ``policy`` (e.g. "RELIABILITY") kept as the detail."""
        with self._lock:
            self._incompatible_qos.add(topic, policy, endpoints)

    def frame_skipped(self) -> None:
        """A frame taken while no output had a subscriber: nothing to compute."""
        with self._lock:
            self.skipped += 1

    def frame_failed(self) -> None:
        with self._lock:
            self.failed += 1

    def frame_processed(self, stage_seconds: dict[str, float]) -> None:
        with self._lock:
            now = self._clock()
            self.processed += 1
            self._outputs.append(now)
            self._trim(self._outputs, now)
            for stage in STAGES:
                self._stages[stage].append(stage_seconds.get(stage, 0.0))
            self._added.append(sum(seconds for stage, seconds in stage_seconds.items()
                                   if stage not in INFERENCE_STAGES))

    @staticmethod
    def _percentiles(samples: deque[float]) -> tuple[float, float]:
        if not samples:
            return (float("nan"), float("nan"))
        p50, p95 = np.percentile(np.fromiter(samples, float), (50, 95))
        return (float(p50), float(p95))

    def _rate(self, times: deque[float], now: float) -> float:
        return _recent_rate(times, now, self._horizon)

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            now = self._clock()
            return TelemetrySnapshot(
                received=self.received, processed=self.processed, dropped=self.dropped,
                refused=sum(self._refusals.counts.values()), failed=self.failed,
                skipped=self.skipped,
                input_rate=self._rate(self._arrivals, now),
                output_rate=self._rate(self._outputs, now),
                latency={stage: self._percentiles(samples)
                         for stage, samples in self._stages.items()},
                added_latency=self._percentiles(self._added),
                refused_by_reason=dict(self._refusals.counts),
                refused_details=self._refusals.details(),
                withheld=sum(self._withholdings.counts.values()),
                withheld_by_reason=dict(self._withholdings.counts),
                withheld_details=self._withholdings.details(),
                incompatible_qos=dict(self._incompatible_qos.counts),
                incompatible_qos_details=self._incompatible_qos.details())


@dataclass(frozen=True)
class BatchSnapshot:
    batches: int
    frames: int
    batch_rate: float  # batches/s over the horizon
    mean_batch: float  # frames per batch over the latest window
    network: tuple[float, float]  # (p50, p95) seconds per batch


class BatchTelemetry:
    """The shared network stage of a node serving several cameras: how many frames each run
    of the network takes, and how long it runs."""

    def __init__(self, window: int = 300, horizon: float = 5.0,
                 clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._horizon = horizon
        self._runs: deque[float] = deque(maxlen=window)  # bounded without a snapshot too
        self._sizes: deque[int] = deque(maxlen=window)
        self._seconds: deque[float] = deque(maxlen=window)
        self.batches = self.frames = 0

    def batch_run(self, size: int, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self.batches += 1
            self.frames += size
            self._runs.append(now)
            self._sizes.append(size)
            self._seconds.append(seconds)

    def snapshot(self) -> BatchSnapshot:
        with self._lock:
            return BatchSnapshot(
                batches=self.batches, frames=self.frames,
                batch_rate=_recent_rate(self._runs, self._clock(), self._horizon),
                mean_batch=float(np.mean(self._sizes)) if self._sizes else 0.0,
                network=Telemetry._percentiles(self._seconds))
