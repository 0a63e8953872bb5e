'''The ``densemtl`` ROS 2 node: camera images in; segmentation, depth, normals, edges out.

    ros2 launch densemtl_ros camera.launch.py                              # on a ROS 2 install
    densemtl-node --ros-args --params-file config/densemtl.yaml -r image:=/camera/image_raw
    densemtl-lifecycle-node --ros-args --params-file config/densemtl.yaml  # waits to be managed

The node is a managed (lifecycle) node: configure loads the model (and builds or checks a
TensorRT engine) and creates the publishers, activate subscribes and starts processing,
deactivate stops both but keeps the model loaded, cleanup frees the model, shutdown works from
any state. ``densemtl-node`` drives it to active itself and ends when it cannot configure, as
a plain node does; ``densemtl-lifecycle-node`` leaves every transition to a manager (the launch
file's ``lifecycle:=true``, ``ros2 lifecycle set``). One class serves both, so the two
behave alike frame for frame.

Threads: the executor runs the subscription callbacks, which only check a message's header and
leave it in its camera's keep-latest slot (:mod:`densemtl_ros.node.latest_frame`). A two-stage
pipeline (:mod:`densemtl_ros.node.pipeline`) takes the newest frame of every camera that has
one: one thread converts them and runs the network on them as one batch, the other up-samples
the maps the subscribed outputs need and publishes them, so the network works on the next
batch meanwhile. A slow model therefore drops frames (counted per camera) instead of queueing
them, and a bad frame is refused, logged (throttled) and counted without disturbing the frames
around it.
'''
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
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.executors import SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from densemtl_core.recordings.calibration import Calibration
from densemtl_core.recordings.encodings import camera_image_to_rgb, resize_rgb
from densemtl_core.runtime import NetworkOutputs, Predictor, load_predictor
from densemtl_core.runtime.processing import check_camera_frames

from .cameras import Camera, CameraTopics
from .conversions import ImageConversionError, check_image
from .diagnostics import DiagnosticsReporter, network_status, status_name
from .latest_frame import LatestFrames
from .outputs import CAMERA_INFO_OUTPUTS, FrameOutputs, OutputPublishers, camera_info_for
from .parameters import NodeSettings, check_parameters, parameter_specs
from .pipeline import TwoStagePipeline
from .qos_events import QoSEvents
from .ros_arguments import params_file_problem, without_source_locations
from ..depth_units import DepthPublishing, depth_publishing, unpublished_warning
from ..published import published_maps
from .telemetry import BatchTelemetry, Telemetry

NODE_NAME = "densemtl"
RCLError = rclpy_implementation.RCLError  # what rcl's failures raise (rclpy does the same)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class StartupError(RuntimeError):
    """The node cannot start (a model that does not load, an invalid parameter)."""


@dataclass(frozen=True)
class _Frame:
    camera: Camera
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


def _stamp_seconds(message: Image | CompressedImage) -> float:
    return message.header.stamp.sec + message.header.stamp.nanosec * 1e-9


def network_threads(cameras: int = 1) -> int:
    """CPU threads for the network when ``model.threads`` is 0. One camera: all cores but one,
    which the pipeline's up-sampling and publishing stage needs at the same time (measured on 2
    cores: the second intra-op thread sped the network up by 10 % and slowed that stage down
    more). Several cameras: all cores, as the batch's network is most of the work (4 cameras at
    640x480 on 2 cores: 19.3 output sets/s against 15.4 with one thread)."""
    cores = os.cpu_count() or 1
    return cores if cameras > 1 else max(1, cores - 1)


def load_node_predictor(settings: NodeSettings) -> Predictor:
    """The Predictor the parameters ask for; StartupError with the reason when it cannot load."""
    path = settings.engine_path or settings.model_path or None
    try:
        return load_predictor(path, backend=settings.backend, device=settings.device,
                              threads=settings.threads or network_threads(len(settings.cameras)),
                              rebuild=settings.rebuild_engine)
    except Exception as error:  # a model that does not load ends the node with one message
        raise StartupError(f"cannot load the model {path or '(shipped default)'} with backend "
                           f"{settings.backend}: {error}") from error


class DenseMTLNode(LifecycleNode):
    """Dense multi-task inference on one or several camera streams (see the module docstring).

    ``autostart``: configure and activate at once, raising StartupError when configuring
    fails (``densemtl-node``); without it the node waits, unconfigured, for a manager.
    """

    def __init__(self, *, autostart: bool = True, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        self.add_on_set_parameters_callback(self._check_parameters)
        self._parameter_specs = parameter_specs()  # a publish.* switch per output of the table now
        try:
            for spec in self._parameter_specs.values():
                default = (Parameter.Type.STRING_ARRAY if isinstance(spec.default, tuple)
                           else spec.default)
                self.declare_parameter(spec.name, default, spec.descriptor())
        except (InvalidParameterValueException, InvalidParameterTypeException) as error:
            raise StartupError(f"invalid parameter: {error}") from error
        self.settings = self._declared_settings()
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._autostart = autostart
        self._last_warning: dict[str, float] = {}
        self._startup_problem = ""
        self.predictor: Predictor | None = None
        self.cameras: list[Camera] = []
        self.pipeline: TwoStagePipeline | None = None
        self._camera_subscriptions: list = []
        self._diagnostics = self._diagnostics_timer = None
        if autostart:
            if self.trigger_configure() != SUCCESS:
                raise StartupError(self._startup_problem)
            self.trigger_activate()

    # -- lifecycle transitions ----------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and create the publishers; FAILURE (unconfigured) with the reason
        logged when the model does not load or a parameter does not fit it."""
        try:
            self._load()
        except StartupError as error:
            self._unload()
            self._startup_problem = str(error)
            if not self._autostart:  # densemtl-node reports it as it ends
                self.get_logger().error(f"cannot configure: {error}")
            return FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers publish from now on
        self._start()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unload()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._unload()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """After a transition raised: back to unconfigured, nothing held."""
        self._stop()
        self._unload()
        return SUCCESS

    # -- set-up -------------------------------------------------------------------------------

    def _load(self) -> None:
        """Configure: the model, each camera's publishers and counters, /diagnostics."""
        self.settings = settings = self._declared_settings()
        model = settings.engine_path or settings.model_path or "the shipped default model"
        self.get_logger().info(f"loading {model} ({settings.backend} backend)")
        self.predictor = load_node_predictor(settings)
        self.depth = self._depth_publishing()
        output_qos = _qos(settings.output_reliability, settings.output_depth)
        self.cameras = [self._camera(index, name, output_qos)
                        for index, name in enumerate(settings.cameras or ("",))]
        self.batches = BatchTelemetry()
        self._diagnostics = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)

    def _camera(self, index: int, name: str, output_qos: QoSProfile) -> Camera:
        topics = CameraTopics.of(name)
        telemetry = Telemetry()
        qos_events = QoSEvents(self.resolve_topic_name, self._warn, telemetry.incompatible_qos)
        image_topic = self.resolve_topic_name(topics.image)
        if self.settings.compressed:
            image_topic += "/compressed"  # the image_transport naming convention
        outputs = OutputPublishers(self, self.predictor.metadata, output_qos,
                                   withheld_tasks=self.depth.withheld_tasks,
                                   qos_events=qos_events, prefix=topics.output_prefix)
        node = self.get_fully_qualified_name()
        reporter = DiagnosticsReporter(
            name=status_name(node, name),
            hardware_id=f"{node}: {self.predictor.backend.name} ({self.settings.device})",
            static_values=self._static_diagnostics(image_topic))
        return Camera(index, topics, image_topic, telemetry, qos_events, outputs, reporter)

    def _start(self) -> None:
        """Activate: subscriptions, the keep-latest slots, /diagnostics' timer, the pipeline."""
        self._slots: LatestFrames[_Frame] = LatestFrames(
            len(self.cameras), window=lambda: self.settings.sync_window)
        image_qos = _qos(self.settings.input_reliability, self.settings.input_depth)
        info_qos = _qos(self.settings.input_reliability, 1)
        image_type = CompressedImage if self.settings.compressed else Image
        for camera in self.cameras:
            self._camera_subscriptions += [
                self.create_subscription(
                    image_type, camera.image_topic,
                    lambda message, camera=camera: self._on_image(camera, message), image_qos,
                    event_callbacks=camera.qos_events.subscription(camera.image_topic,
                                                                   image_qos)),
                self.create_subscription(
                    CameraInfo, camera.topics.camera_info,
                    lambda message, camera=camera: self._on_camera_info(camera, message),
                    info_qos, event_callbacks=camera.qos_events.subscription(
                        camera.topics.camera_info, info_qos))]
        self._diagnostics_timer = self.create_timer(self.settings.diagnostics_period, self._report)
        self.pipeline = TwoStagePipeline(self._slots, self._run_network, self._publish_all,
                                         self._failed_batch)
        self.pipeline.start()
        metadata = self.predictor.metadata
        self.get_logger().info(
            f"ready: {self.predictor.backend.name} backend, tasks {', '.join(metadata.tasks)}, "
            f"network input {self.predictor.input_size[1]}x{self.predictor.input_size[0]}, "
            f"listening on {', '.join(camera.image_topic for camera in self.cameras)}")

    def _stop(self) -> None:
        """Deactivate: the frame in flight is published, then nothing more is received."""
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline = None
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions = []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None

    def _unload(self) -> None:
        """Clean up: the publishers and the model go; the parameters stay."""
        for camera in self.cameras:
            camera.outputs.destroy()
        self.cameras = []
        if self._diagnostics is not None:
            self.destroy_lifecycle_publisher(self._diagnostics)
            self._diagnostics = None
        self.predictor = None

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

    def _static_diagnostics(self, image_topic: str) -> dict[str, str]:
        metadata = self.predictor.metadata
        model = self.settings.engine_path or self.settings.model_path or "shipped default"
        values = {"backend": self.predictor.backend.name, "model": model,
                  "tasks": ", ".join(metadata.tasks),
                  "network input": "x".join(map(str, self.predictor.input_size[::-1])),
                  "image topic": image_topic}
        if "depth" in metadata.tasks:
            values["depth"] = self.depth.describe()
        return values

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate only (at declaration and on ``ros2 param set``): a refused change is
        never applied."""
        reason = check_parameters({parameter.name: parameter.value for parameter in parameters
                                   if parameter.name in self._parameter_specs
                                   and parameter.type_ != Parameter.Type.NOT_SET},
                                  self._parameter_specs)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        """Apply accepted changes: the processing threads see a new settings snapshot, whole."""
        self.settings = self._declared_settings()

    def _declared_settings(self) -> NodeSettings:
        """The settings the declared parameters hold now."""
        return NodeSettings.from_values({name: self._value(name)
                                         for name in self._parameter_specs})

    def _value(self, name: str):
        """A declared parameter's value; an array nobody set is its empty default."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return self._parameter_specs[name].default

    # -- callbacks (executor thread): cheap, never raise ------------------------------------

    def _on_image(self, camera: Camera, message: Image | CompressedImage) -> None:
        """Refuse a malformed header at once (so that it cannot displace a good waiting
        frame); leave the pixels' conversion to the processing thread."""
        camera.telemetry.frame_received()
        if isinstance(message, Image):
            try:
                check_image(message, max_pixels=self.settings.max_pixels)
            except ImageConversionError as error:
                self._refuse(camera, error)
                return
        if self._slots.put(camera.index, _Frame(camera, message, time.perf_counter()),
                           _stamp_seconds(message)):
            camera.telemetry.frame_dropped()

    def _on_camera_info(self, camera: Camera, message: CameraInfo) -> None:
        camera.calibration = Calibration.of_message(message)

    def _refuse(self, camera: Camera, error: ImageConversionError) -> None:
        camera.telemetry.frame_refused(error.kind, error.detail)
        self._warn(f"{camera.topics.name}:refused:{error.kind}",
                   f"{self._on(camera)}frame refused: {error}")

    def _on(self, camera: Camera) -> str:
        """What starts a warning about ``camera``: its name when the node has several."""
        return f"{camera.topics.name}: " if camera.topics.name else ""

    def _warn(self, kind: str, text: str) -> bool:
        """Warn at most once per ``log_throttle`` seconds for each kind of problem: a fixed
        phrase per class of problem, never the input's values, which ``text`` gives. Returns
        whether it warned."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -float("inf")) < self.settings.log_throttle:
            return False
        self._last_warning[kind] = now
        snapshots = [camera.telemetry.snapshot() for camera in self.cameras]
        self.get_logger().warning(
            f"{text} [refused {sum(s.refused for s in snapshots)}, failed "
            f"{sum(s.failed for s in snapshots)} so far]")
        return True

    def _report(self) -> None:
        stamp = self.get_clock().now().to_msg()
        statuses = [status for camera in self.cameras
                    for status in camera.reporter.report(camera.telemetry.snapshot(),
                                                         stamp).status]
        if len(self.cameras) > 1:
            node = self.get_fully_qualified_name()
            statuses.append(network_status(
                f"{node}: network", f"{node}: {self.predictor.backend.name}",
                self.batches.snapshot()))
        self._diagnostics.publish(DiagnosticArray(header=Header(stamp=stamp), status=statuses))

    # -- processing threads -----------------------------------------------------------------

    def _run_network(self, frames: list[_Frame]) -> list[_Job] | None:
        """First stage: convert the images and run the network on them as one batch (None:
        nothing to publish)."""
        settings = self.settings
        taken = time.perf_counter()
        ready = []  # (frame, rgb, active outputs, calibration, conversion seconds)
        for frame in frames:
            camera, began = frame.camera, time.perf_counter()
            try:
                rgb = camera_image_to_rgb(
                    frame.message, compressed=isinstance(frame.message, CompressedImage),
                    max_pixels=settings.max_pixels, mono16_bits=settings.mono16_bits)
            except ImageConversionError as error:
                self._refuse(camera, error)
                continue
            converted = time.perf_counter()
            active = camera.outputs.wanted(settings)
            calibration = camera.calibration  # read once: the subscription may replace it
            if active & CAMERA_INFO_OUTPUTS and not self._usable(camera, calibration,
                                                                   rgb.shape[:2]):
                active, calibration = active - CAMERA_INFO_OUTPUTS, None
            if not active:
                camera.telemetry.frame_skipped()
                continue
            if self.predictor.camera_size is not None:
                try:  # another size would fail the whole batch
                    check_camera_frames([rgb], self.predictor.camera_size)
                except ValueError as error:
                    self._failed(camera, error)
                    continue
            ready.append((frame, rgb, active, calibration, converted - began))
        if not ready:
            return None
        started = time.perf_counter()
        try:
            networks = self.predictor.run_network_batch([rgb for _, rgb, *_ in ready])
        except Exception as error:  # every frame of the batch fails, the node goes on
            for frame, *_ in ready:
                self._failed(frame.camera, error)
            return None
        finished = time.perf_counter()
        self.batches.batch_run(len(ready), finished - started)
        return [_Job(frame=frame, rgb=rgb, network=network, active=active, settings=settings,
                     calibration=calibration, handed_off=finished,
                     seconds={"wait": taken - frame.received, "convert": convert,
                              "network": finished - started})
                for (frame, rgb, active, calibration, convert), network in zip(ready, networks)]

    def _usable(self, camera: Camera, calibration: Calibration | None,
                image_size: tuple[int, int]) -> bool:
        """Whether a camera_info arrived that describes images of ``image_size``. An unusable
        one is counted for every frame and warned about when what is wrong with it changes
        (throttled); it withholds only the outputs that need it."""
        if calibration is None:
            return False
        problem = calibration.problem(*image_size)
        if problem is None:
            if camera.reported_calibration_problem is not None:
                camera.reported_calibration_problem = None
                self.get_logger().info(f"{self._on(camera)}camera_info usable again: "
                                       "~/camera_info and ~/points resume")
            return True
        camera.telemetry.outputs_withheld("unusable camera_info", problem)
        if problem != camera.reported_calibration_problem and self._warn(
                f"{camera.topics.name}:unusable camera_info",
                f"{self._on(camera)}{problem}: ~/camera_info and ~/points are withheld until a "
                "usable camera_info arrives; the other outputs go on"):
            camera.reported_calibration_problem = problem
        return False

    def _publish_all(self, jobs: list[_Job]) -> None:
        """Second stage: each camera's frame in turn; one that fails does not stop the rest."""
        for job in jobs:
            try:
                self._publish(job)
            except Exception as error:
                self._failed(job.frame.camera, error)

    def _publish(self, job: _Job) -> None:
        """Up-sample the maps the active outputs need, build and publish them."""
        started = time.perf_counter()
        camera, settings, header = job.frame.camera, job.settings, job.frame.message.header
        size = (self.predictor.input_size if settings.resolution == "network"
                else job.rgb.shape[:2])
        prediction = self.predictor.finish(job.network, output_size=size,
                                           tasks=camera.outputs.needed_tasks(job.active))
        upsampled = time.perf_counter()
        rgb = job.rgb if job.rgb.shape[:2] == tuple(size) else resize_rgb(job.rgb, size)
        outputs = FrameOutputs(header=header, rgb=rgb,
                               maps=published_maps(prediction, self.predictor.metadata,
                                                   self.depth.scale),
                               camera_info=camera_info_for(job.calibration, header, *size))
        prepared = time.perf_counter()
        building, sending = camera.outputs.publish(job.active, outputs, settings)
        camera.telemetry.frame_processed({
            **job.seconds, "handoff": started - job.handed_off, "upsample": upsampled - started,
            "build": prepared - upsampled + building, "publish": sending})

    def _failed(self, camera: Camera, error: BaseException) -> None:
        camera.telemetry.frame_failed()
        self._warn(f"{camera.topics.name}:failed:{type(error).__name__}",
                   f"{self._on(camera)}frame failed: {type(error).__name__}: {error}")

    def _failed_batch(self, error: BaseException) -> None:
        """What escaped both stages' own handling: counted on every camera."""
        for camera in self.cameras:
            self._failed(camera, error)

    # -- shutdown ---------------------------------------------------------------------------

    def destroy_node(self) -> None:
        if hasattr(self, "pipeline"):  # rclpy's shutdown also destroys a node whose start failed
            self._stop()
        super().destroy_node()


def main(argv: list[str] | None = None, *, autostart: bool = True) -> int:
    """Console entry point: ``densemtl-node [--ros-args ...]``; 0 once stopped (Ctrl-C or
    SIGTERM, also while the model loads), 1 when the node cannot start, 2 for ROS arguments or
    a parameters file that cannot be used. Without ``autostart`` (``densemtl-lifecycle-node``)
    the node waits unconfigured for a manager's transitions, and a model that does not load
    fails the configure transition instead of ending the node.

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
            node = DenseMTLNode(autostart=autostart)
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


def lifecycle_console_main() -> None:
    sys.exit(main(autostart=False))


if __name__ == "__main__":
    console_main()
