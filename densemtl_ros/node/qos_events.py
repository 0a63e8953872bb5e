"""Incompatible QoS between the node and another endpoint: warned, with the fix, and counted.

A camera publishing best-effort to a reliable subscription, or a reliable subscriber of an
output published best-effort, is matched by nobody: no data flows and no error is raised. DDS
tells each side when such an endpoint is discovered (``incompatible_qos`` events); the node
turns each into a throttled warning that names the topic, the policy, its own profile, what the
other side likely uses and the parameter that fixes it, and into a count per topic on
``/diagnostics`` (:meth:`.telemetry.Telemetry.incompatible_qos`). DDS reports no event when
such an endpoint leaves, so the count stays until the node restarts.
"""
from __future__ import annotations

from collections.abc import Callable

from rclpy.event_handler import (PublisherEventCallbacks, QoSOfferedIncompatibleQoSInfo,
                                 QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks)
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy


def describe(qos: QoSProfile) -> str:
    """A profile as the warnings and ``ros2 topic info -v`` users compare it with."""
    return (f"reliability {qos.reliability.name.lower()}, durability "
            f"{qos.durability.name.lower()}, depth {qos.depth}")


def _other_side(policy: QoSPolicyKind, qos: QoSProfile, publishing: bool) -> str:
    """What the other endpoint likely uses, and how to fix it, for the policies that differ
    in practice (the node sets neither deadline nor liveliness)."""
    other, ours = ("subscriber", "qos.output.reliability") if publishing else (
        "publisher", "qos.input.reliability")
    if policy == QoSPolicyKind.RELIABILITY and qos.reliability == ReliabilityPolicy.RELIABLE:
        return ("the publisher likely offers best_effort (camera drivers' sensor-data QoS); "
                f"set {ours} to best_effort, which receives from both")
    if policy == QoSPolicyKind.RELIABILITY:
        return (f"the subscriber likely requests reliable; set {ours} to reliable, which "
                "serves both, or subscribe best_effort")
    if policy == QoSPolicyKind.DURABILITY and qos.durability == DurabilityPolicy.VOLATILE:
        return ("the subscriber likely requests transient_local (latched); the node's outputs "
                "are volatile: subscribe volatile")
    return f"the {other}'s {policy.name.lower()} is stricter than the node's: relax it there"


class QoSEvents:
    """The ``event_callbacks`` of the node's subscriptions and publishers.

    ``resolve`` gives a topic's full name (the node's ``resolve_topic_name``), ``warn(kind,
    text)`` is the node's throttled warning, ``count(topic, policy, endpoints)`` records the
    event (the node's telemetry). The callbacks run in the executor and never raise.
    """

    def __init__(self, resolve: Callable[[str], str], warn: Callable[[str, str], object],
                 count: Callable[[str, str, int], None]) -> None:
        self._resolve = resolve
        self._warn = warn
        self._count = count

    def subscription(self, topic: str, qos: QoSProfile) -> SubscriptionEventCallbacks:
        """For a subscription to ``topic`` with ``qos``."""
        return SubscriptionEventCallbacks(
            incompatible_qos=self._handler(self._resolve(topic), qos, publishing=False))

    def publisher(self, topic: str, qos: QoSProfile) -> PublisherEventCallbacks:
        """For a publisher of ``topic`` with ``qos``."""
        return PublisherEventCallbacks(
            incompatible_qos=self._handler(self._resolve(topic), qos, publishing=True))

    def _handler(self, topic: str, qos: QoSProfile, publishing: bool
                 ) -> Callable[[QoSRequestedIncompatibleQoSInfo], None]:
        def on_event(event: QoSRequestedIncompatibleQoSInfo | QoSOfferedIncompatibleQoSInfo
                     ) -> None:
            policy = QoSPolicyKind(event.last_policy_kind)
            self._count(topic, policy.name, max(event.total_count_change, 1))
            if publishing:
                what = (f"a subscriber of {topic} requests incompatible QoS ({policy.name}) and "
                        f"receives nothing: the node publishes {describe(qos)}")
            else:
                what = (f"a publisher on {topic} offers incompatible QoS ({policy.name}) and "
                        f"nothing from it reaches the node: the node subscribes "
                        f"{describe(qos)}")
            self._warn(f"incompatible QoS:{topic}",
                       f"{what}; {_other_side(policy, qos, publishing)} "
                       f"[{event.total_count} such endpoints so far]")
        return on_event
