"""The node's health as ``diagnostic_msgs/DiagnosticArray`` for ``/diagnostics``.

One status per report: its level says whether frames flow and whether any were refused or
failed since the previous report, and it stays WARN once an endpoint with incompatible QoS was
seen (DDS reports such an endpoint when it appears, never when it leaves, and while it exists
its data silently goes nowhere: see :mod:`.qos_events`); its values give rates, counters and
per-stage latency percentiles (what ``rqt_runtime_monitor`` and the diagnostic aggregator
show). Its name and hardware_id start with the node's fully qualified name, so that two
nodes (one per camera, in their namespaces) are two statuses: the aggregator keys statuses by
name.
"""
from __future__ import annotations

from collections.abc import Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from .telemetry import BatchSnapshot, TelemetrySnapshot

def status_name(node_name: str, camera: str = "") -> str:
    """The status name of the node whose fully qualified name is ``node_name``, e.g.
    "/perception/densemtl: dense multi-task inference", or of its ``camera`` when it serves
    several: "/perception/densemtl: front: dense multi-task inference"."""
    return f"{node_name}: {camera + ': ' if camera else ''}dense multi-task inference"


def _level_and_message(now: TelemetrySnapshot, before: TelemetrySnapshot | None
                       ) -> tuple[bytes, str]:
    failed = now.failed - (before.failed if before else 0)
    refused = now.refused - (before.refused if before else 0)
    withheld = now.withheld - (before.withheld if before else 0)
    if now.received == 0 or now.input_rate == 0.0:
        return DiagnosticStatus.WARN, "no images received recently"
    if failed:
        return DiagnosticStatus.ERROR, f"{failed} frames failed in inference since last report"
    if refused:
        return DiagnosticStatus.WARN, f"{refused} frames refused since last report"
    if withheld:
        earlier = before.withheld_by_reason if before else {}
        reasons = [f"{reason}: {now.withheld_details[reason][0]}"
                   if now.withheld_details.get(reason) else reason
                   for reason, count in sorted(now.withheld_by_reason.items())
                   if count > earlier.get(reason, 0)]
        return (DiagnosticStatus.WARN, f"{withheld} frames without some outputs since last "
                                       f"report ({'; '.join(reasons)})")
    return DiagnosticStatus.OK, f"processing {now.output_rate:.1f} Hz of {now.input_rate:.1f} Hz"


def _with_incompatible_qos(level: bytes, message: str, now: TelemetrySnapshot
                           ) -> tuple[bytes, str]:
    """At least WARN, naming each topic and its last incompatible policy, once an endpoint
    with incompatible QoS was seen since the node started."""
    if not now.incompatible_qos:
        return level, message
    topics = "; ".join(f"{topic} ({', '.join(now.incompatible_qos_details.get(topic, ()))})"
                       for topic in sorted(now.incompatible_qos))
    return max(level, DiagnosticStatus.WARN), f"{message}; incompatible QoS on {topics}"


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _by_reason(what: str, counts: Mapping[str, int],
               details: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """A count per reason, and the latest details of each, under keys that do not vary with
    the input (the details are the value)."""
    values = {}
    for reason, count in sorted(counts.items()):
        values[f"{what}: {reason}"] = str(count)
        if details.get(reason):
            values[f"{what}: {reason}: latest"] = " | ".join(details[reason])
    return values


class DiagnosticsReporter:
    """Builds successive reports; remembers the previous one to report what changed."""

    def __init__(self, name: str, hardware_id: str, static_values: Mapping[str, str]) -> None:
        self._name = name
        self._hardware_id = hardware_id
        self._static = dict(static_values)
        self._previous: TelemetrySnapshot | None = None

    def report(self, snapshot: TelemetrySnapshot, stamp: Time) -> DiagnosticArray:
        level, message = _with_incompatible_qos(
            *_level_and_message(snapshot, self._previous), snapshot)
        self._previous = snapshot
        values = {
            "input rate (Hz)": f"{snapshot.input_rate:.2f}",
            "output rate (Hz)": f"{snapshot.output_rate:.2f}",
            "frames received": str(snapshot.received),
            "frames processed": str(snapshot.processed),
            "frames dropped (replaced while waiting)": str(snapshot.dropped),
            "frames refused": str(snapshot.refused),
            "frames failed": str(snapshot.failed),
            "frames skipped (no subscriber)": str(snapshot.skipped),
            "frames with outputs withheld": str(snapshot.withheld),
            "added latency p50 (ms)": _milliseconds(snapshot.added_latency[0]),
            "added latency p95 (ms)": _milliseconds(snapshot.added_latency[1]),
        }
        for stage, (p50, p95) in snapshot.latency.items():
            values[f"{stage} p50 (ms)"] = _milliseconds(p50)
            values[f"{stage} p95 (ms)"] = _milliseconds(p95)
        values.update(_by_reason("refused", snapshot.refused_by_reason,
                                 snapshot.refused_details))
        values.update(_by_reason("outputs withheld", snapshot.withheld_by_reason,
                                 snapshot.withheld_details))
        values.update(_by_reason("incompatible QoS", snapshot.incompatible_qos,
                                 snapshot.incompatible_qos_details))
        values.update(self._static)
        status = DiagnosticStatus(
            level=level, name=self._name, message=message, hardware_id=self._hardware_id,
            values=[KeyValue(key=key, value=value) for key, value in values.items()])
        return DiagnosticArray(header=Header(stamp=stamp),
                               status=[status])


def network_status(name: str, hardware_id: str, snapshot: BatchSnapshot) -> DiagnosticStatus:
    """The shared network stage of a node serving several cameras (the cameras each have a
    status of their own): batches per second, frames per batch, time per batch."""
    level, message = ((DiagnosticStatus.OK, f"{snapshot.batch_rate:.1f} batches/s of "
                                            f"{snapshot.mean_batch:.2f} frames")
                      if snapshot.batch_rate > 0 else
                      (DiagnosticStatus.WARN, "the network has not run recently"))
    values = {"batches": str(snapshot.batches), "frames": str(snapshot.frames),
              "batch rate (Hz)": f"{snapshot.batch_rate:.2f}",
              "frames per batch (mean)": f"{snapshot.mean_batch:.2f}",
              "network per batch p50 (ms)": _milliseconds(snapshot.network[0]),
              "network per batch p95 (ms)": _milliseconds(snapshot.network[1])}
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=key, value=value)
                                    for key, value in values.items()])
