"""The ``densemtl`` ROS 2 node: camera images in; segmentation, depth, normals, edges out.

    ros2 launch densemtl_ros camera.launch.py                              # on a ROS 2 install
    densemtl-node --ros-args --params-file config/densemtl.yaml -r image:=/camera/image_raw

Threads: the executor runs the subscription callbacks, which only check a message's header and
leave it in a keep-latest slot (:mod:`densemtl_ros.node.latest_frame`). A two-stage pipeline
(:mod:`densemtl_ros.node.pipeline`) takes the newest frame: one thread converts it and runs the
network, the other up-samples the maps the subscribed outputs need and publishes them, so the
network works on the next frame meanwhile. A slow model therefore drops frames (counted)
instead of queueing them, and a bad frame is refused, logged (throttled) and counted without
disturbing the frames around it.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.signals import SignalHandlerOptions
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from densemtl_core.recordings.calibration import Calibration
from densemtl_core.recordings.encodings import camera_image_to_rgb, resize_rgb
from densemtl_core.runtime import NetworkOutputs, Predictor, load_predictor

from .conversions import ImageConversionError, check_image
from .diagnostics import DiagnosticsReporter, status_name
from .latest_frame import LatestFrame
from .outputs import CAMERA_INFO_OUTPUTS, FrameOutputs, OutputPublishers, camera_info_for
from .parameters import NodeSettings, check_parameters, parameter_specs
from .pipeline import TwoStagePipeline
from .qos_events import QoSEvents
from .ros_arguments import params_file_problem, without_source_locations
from ..depth_units import DepthPublishing, depth_publishing, unpublished_warning
from ..published import published_maps
from .telemetry import Telemetry

NODE_NAME = "densemtl"
RCLError = rclpy_implementation.RCLError  # what rcl's failures raise (rclpy does the same)


class StartupError(RuntimeError):
    """The node cannot start (a model that does not load, an invalid parameter)."""


@dataclass(frozen=True)
class _Frame:
    message: Image | CompressedImage
    received: float  # time.perf_counter() in the callback


@dataclass(frozen=True)
class _Job:
    """A frame between the two pipeline stages, with what it is to be published with."""

    frame: _Frame
    rgb: np.ndarray
    network: NetworkOutputs
    active: frozenset[str]
    settings: NodeSettings
    calibration: Calibration | None  # usable for this frame, or None
    handed_off: float
    seconds: dict[str, float]


def _qos(reliability: str, depth: int) -> QoSProfile:
    policy = (ReliabilityPolicy.RELIABLE if reliability == "reliable"
              else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def network_threads() -> int:
    """CPU threads for the network when ``model.threads`` is 0: all cores but one, which the
    pipeline's up-sampling and publishing stage needs at the same time (measured on 2 cores:
    the second intra-op thread sped the network up by 10 % and slowed that stage down more)."""
    return max(1, (os.cpu_count() or 1) - 1)


def load_node_predictor(settings: NodeSettings) -> Predictor:
    """The Predictor the parameters ask for; StartupError with the reason when it cannot load."""
    path = settings.engine_path or settings.model_path or None
    try:
        return load_predictor(path, backend=settings.backend, device=settings.device,
                              threads=settings.threads or network_threads(),
                              rebuild=settings.rebuild_engine)
    except Exception as error:  # a model that does not load ends the node with one message
        raise StartupError(f"cannot load the model {path or '(shipped default)'} with backend "
                           f"{settings.backend}: {error}") from error


class DenseMTLNode(Node):
    """Dense multi-task inference on a camera stream (see the module docstring)."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        self.add_on_set_parameters_callback(self._check_parameters)
        self._parameter_specs = parameter_specs()  # a publish.* switch per output of the table now
        try:
            for spec in self._parameter_specs.values():
                self.declare_parameter(spec.name, spec.default, spec.descriptor())
        except (InvalidParameterValueException, InvalidParameterTypeException) as error:
            raise StartupError(f"invalid parameter: {error}") from error
        self.settings = self._declared_settings()
        self.add_post_set_parameters_callback(self._apply_parameters)
        model = (self.settings.engine_path or self.settings.model_path
                 or "the shipped default model")
        self.get_logger().info(f"loading {model} ({self.settings.backend} backend)")
        self.predictor = load_node_predictor(self.settings)
        self.depth = self._depth_publishing()
        self.telemetry = Telemetry()
        self._qos_events = QoSEvents(self.resolve_topic_name, self._warn,
                                     self.telemetry.incompatible_qos)
        self._latest: LatestFrame[_Frame] = LatestFrame()
        self._calibration: Calibration | None = None  # the latest camera_info's
        self._reported_calibration_problem: str | None = None
        self._last_warning: dict[str, float] = {}
        self.outputs = OutputPublishers(
            self, self.predictor.metadata,
            _qos(self.settings.output_reliability, self.settings.output_depth),
            withheld_tasks=self.depth.withheld_tasks, qos_events=self._qos_events)
        self._subscribe()
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        name = self.get_fully_qualified_name()
        self._reporter = DiagnosticsReporter(
            name=status_name(name),
            hardware_id=f"{name}: {self.predictor.backend.name} ({self.settings.device})",
            static_values=self._static_diagnostics())
        self.create_timer(self.settings.diagnostics_period, self._report)
        self.pipeline = TwoStagePipeline(self._latest, self._run_network, self._publish,
                                         self._failed)
        self.pipeline.start()
        metadata = self.predictor.metadata
        self.get_logger().info(
            f"ready: {self.predictor.backend.name} backend, tasks {', '.join(metadata.tasks)}, "
            f"network input {self.predictor.input_size[1]}x{self.predictor.input_size[0]}, "
            f"listening on {self._image_topic}")

    # -- set-up -----------------------------------------------------------------------------

    def _subscribe(self) -> None:
        qos = _qos(self.settings.input_reliability, self.settings.input_depth)
        image_topic = self.resolve_topic_name("image")
        if self.settings.compressed:
            image_topic += "/compressed"  # the image_transport naming convention
            self.create_subscription(CompressedImage, image_topic, self._on_image, qos,
                                     event_callbacks=self._qos_events.subscription(image_topic,
                                                                                   qos))
        else:
            self.create_subscription(Image, image_topic, self._on_image, qos,
                                     event_callbacks=self._qos_events.subscription(image_topic,
                                                                                   qos))
        self._image_topic = image_topic
        info_qos = _qos(self.settings.input_reliability, 1)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, info_qos,
                                 event_callbacks=self._qos_events.subscription("camera_info",
                                                                               info_qos))

    def _depth_publishing(self) -> DepthPublishing:
        """How the model's depth is published (see :mod:`densemtl_ros.depth_units`): a scale
        given for a metric model stops the start; a relative depth without one is warned about
        once, here, and withheld."""
        try:
            depth = depth_publishing(self.predictor.depth_units,
                                     self.settings.relative_depth_scale)
        except ValueError as error:
            raise StartupError(str(error)) from error
        if not depth.published and "depth" in self.predictor.tasks:
            self.get_logger().warning(unpublished_warning())
        return depth

    def _static_diagnostics(self) -> dict[str, str]:
        metadata = self.predictor.metadata
        model = self.settings.engine_path or self.settings.model_path or "shipped default"
        values = {"backend": self.predictor.backend.name, "model": model,
                  "tasks": ", ".join(metadata.tasks),
                  "network input": "x".join(map(str, self.predictor.input_size[::-1])),
                  "image topic": self._image_topic}
        if "depth" in metadata.tasks:
            values["depth"] = self.depth.describe()
        return values

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate only (at declaration and on ``ros2 param set``): a refused change is
        never applied."""
        reason = check_parameters({parameter.name: parameter.value for parameter in parameters
                                   if parameter.name in self._parameter_specs},  # not rclpy's
                                  self._parameter_specs)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        """Apply accepted changes: the processing threads see a new settings snapshot, whole."""
        self.settings = self._declared_settings()

    def _declared_settings(self) -> NodeSettings:
        """The settings the declared parameters hold now."""
        return NodeSettings.from_values({name: self.get_parameter(name).value
                                         for name in self._parameter_specs})

    # -- callbacks (executor thread): cheap, never raise ------------------------------------

    def _on_image(self, message: Image | CompressedImage) -> None:
        """Refuse a malformed header at once (so that it cannot displace a good waiting
        frame); leave the pixels' conversion to the processing thread."""
        self.telemetry.frame_received()
        if isinstance(message, Image):
            try:
                check_image(message, max_pixels=self.settings.max_pixels)
            except ImageConversionError as error:
                self._refuse(error)
                return
        if self._latest.put(_Frame(message, time.perf_counter())):
            self.telemetry.frame_dropped()

    def _on_camera_info(self, message: CameraInfo) -> None:
        self._calibration = Calibration.of_message(message)

    def _refuse(self, error: ImageConversionError) -> None:
        self.telemetry.frame_refused(error.kind, error.detail)
        self._warn(f"refused:{error.kind}", f"frame refused: {error}")

    def _warn(self, kind: str, text: str) -> bool:
        """Warn at most once per ``log_throttle`` seconds for each kind of problem: a fixed
        phrase per class of problem, never the input's values, which ``text`` gives. Returns
        whether it warned."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -float("inf")) < self.settings.log_throttle:
            return False
        self._last_warning[kind] = now
        snapshot = self.telemetry.snapshot()
        self.get_logger().warning(f"{text} [refused {snapshot.refused}, failed "
                                  f"{snapshot.failed} so far]")
        return True

    def _report(self) -> None:
        self._diagnostics.publish(self._reporter.report(self.telemetry.snapshot(),
                                                        self.get_clock().now().to_msg()))

    # -- processing threads -----------------------------------------------------------------

    def _run_network(self, frame: _Frame) -> _Job | None:
        """First stage: convert the image and run the network (None: nothing to publish)."""
        settings = self.settings
        started = time.perf_counter()
        try:
            rgb = camera_image_to_rgb(
                frame.message, compressed=isinstance(frame.message, CompressedImage),
                max_pixels=settings.max_pixels, mono16_bits=settings.mono16_bits)
        except ImageConversionError as error:
            self._refuse(error)
            return None
        converted = time.perf_counter()
        active = self.outputs.wanted(settings)
        calibration = self._calibration  # read once: the subscription may replace it
        if active & CAMERA_INFO_OUTPUTS and not self._usable(calibration, rgb.shape[:2]):
            active, calibration = active - CAMERA_INFO_OUTPUTS, None
        if not active:
            self.telemetry.frame_skipped()
            return None
        network = self.predictor.run_network(rgb)
        finished = time.perf_counter()
        return _Job(frame=frame, rgb=rgb, network=network, active=active, settings=settings,
                    calibration=calibration, handed_off=finished,
                    seconds={"wait": started - frame.received, "convert": converted - started,
                             "network": finished - converted})

    def _usable(self, calibration: Calibration | None, image_size: tuple[int, int]) -> bool:
        """Whether a camera_info arrived that describes images of ``image_size``. An unusable
        one is counted for every frame and warned about when what is wrong with it changes
        (throttled); it withholds only the outputs that need it."""
        if calibration is None:
            return False
        problem = calibration.problem(*image_size)
        if problem is None:
            if self._reported_calibration_problem is not None:
                self._reported_calibration_problem = None
                self.get_logger().info("camera_info usable again: ~/camera_info and ~/points "
                                       "resume")
            return True
        self.telemetry.outputs_withheld("unusable camera_info", problem)
        if problem != self._reported_calibration_problem and self._warn(
                "unusable camera_info", f"{problem}: ~/camera_info and ~/points are withheld "
                                        "until a usable camera_info arrives; the other outputs "
                                        "go on"):
            self._reported_calibration_problem = problem
        return False

    def _publish(self, job: _Job) -> None:
        """Second stage: up-sample the maps the active outputs need, build and publish them."""
        started = time.perf_counter()
        settings, header = job.settings, job.frame.message.header
        size = (self.predictor.input_size if settings.resolution == "network"
                else job.rgb.shape[:2])
        prediction = self.predictor.finish(job.network, output_size=size,
                                           tasks=self.outputs.needed_tasks(job.active))
        upsampled = time.perf_counter()
        rgb = job.rgb if job.rgb.shape[:2] == tuple(size) else resize_rgb(job.rgb, size)
        outputs = FrameOutputs(header=header, rgb=rgb,
                               maps=published_maps(prediction, self.predictor.metadata,
                                                   self.depth.scale),
                               camera_info=camera_info_for(job.calibration, header, *size))
        prepared = time.perf_counter()
        building, sending = self.outputs.publish(job.active, outputs, settings)
        self.telemetry.frame_processed({
            **job.seconds, "handoff": started - job.handed_off, "upsample": upsampled - started,
            "build": prepared - upsampled + building, "publish": sending})

    def _failed(self, error: BaseException) -> None:
        self.telemetry.frame_failed()
        self._warn(f"failed:{type(error).__name__}",
                   f"frame failed: {type(error).__name__}: {error}")

    # -- shutdown ---------------------------------------------------------------------------

    def destroy_node(self) -> None:
        if hasattr(self, "pipeline"):  # rclpy's shutdown also destroys a node whose start failed
            self.pipeline.stop()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``densemtl-node [--ros-args ...]``; 0 once stopped (Ctrl-C or
    SIGTERM, also while the model loads), 1 when the node cannot start, 2 for ROS arguments or
    a parameters file that cannot be used.

    rclpy's signal handlers are not installed: on Ctrl-C they shut the context down at once,
    from their own thread, while the pipeline may be publishing a frame (which then fails,
    "publisher's context is invalid"). Here the signal raises KeyboardInterrupt in this thread,
    which only waits while the executor spins in another, so it lands at once; then the
    pipeline is stopped and waited for, the node destroyed, and the context shut down last, by
    leaving ``with rclpy.init()``.
    """
    args = sys.argv if argv is None else argv
    logger = rclpy.logging.get_logger(NODE_NAME)
    problem = params_file_problem(args, NODE_NAME)
    ros = None
    if problem is None:
        try:
            ros = rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        except RCLError as error:
            problem = f"invalid ROS arguments: {without_source_locations(str(error))}"
    if ros is None:
        logger.fatal(f"cannot start: {problem}")
        return 2
    with ros:  # leaving it shuts the context down, also destroying a node still alive
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
        try:
            node = DenseMTLNode()
        except StartupError as error:
            logger.fatal(str(error))
            return 1
        except KeyboardInterrupt:
            logger.info("stopped while starting")
            return 0
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            _spin_until_interrupted(executor)
        finally:
            for stop in (signal.SIGINT, signal.SIGTERM):  # the clean-up below is bounded
                signal.signal(stop, signal.SIG_IGN)
            executor.shutdown()
            node.destroy_node()  # stops the pipeline first: a frame in flight is published
    return 0


def _spin_until_interrupted(executor: SingleThreadedExecutor) -> None:
    """Spin ``executor`` in a thread until Ctrl-C or SIGTERM reaches this (main) thread; an
    error raised while spinning is raised here."""
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            executor.spin()
        except BaseException as error:  # handed to the main thread
            errors.append(error)
    spinning = threading.Thread(target=spin, name="densemtl-executor", daemon=True)
    spinning.start()
    try:
        spinning.join()
    except KeyboardInterrupt:
        return
    if errors:
        raise errors[0]


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
