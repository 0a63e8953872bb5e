"""The densemtl node end to end: real images over Fast DDS in, every output back out."""
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from densemtl_core.data.synthetic import render_scene
from densemtl_ros.node.conversions import image_to_rgb, message_to_array
from densemtl_ros.node.diagnostics import status_name
from densemtl_ros.node.densemtl_node import DenseMTLNode, StartupError
from densemtl_ros.node.outputs import CAMERA_INFO_OUTPUTS, output_specs
from densemtl_ros.node.pointcloud import read_points
from tests.ros.harness import (YUV422_BYTE_ORDER, TestCamera, bayer_mosaic, running,
                               camera_info, exchange, fresh_header, image_message,
                               packed_yuv422, stamp_key, wait_for)

ALL_OUTPUTS = tuple(output_specs())


def _remapped(prefix: str) -> list[str]:
    return ["--ros-args", "-r", f"image:={prefix}/image_raw",
            "-r", f"camera_info:={prefix}/camera_info"]


def _connected(node: DenseMTLNode, camera: TestCamera) -> bool:
    return (camera.image_publisher.get_subscription_count() > 0
            and all(publisher.get_subscription_count() > 0
                    for publisher in node.cameras[0].outputs.publishers.values()))


@pytest.fixture(scope="module")
def system(ros):
    node = DenseMTLNode(cli_args=_remapped("/node_test"))
    camera = TestCamera("node_test_camera", "/node_test")
    with running(node, camera):
        wait_for(lambda: _connected(node, camera), 30, "discovery between node and test camera")
        yield node, camera


@pytest.fixture
def set_parameters(system):
    """Set node parameters for one test and restore them after it."""
    node, _ = system
    saved = []

    def apply(**values):
        names = [name.replace("__", ".") for name in values]
        saved.extend(node.get_parameters(names))
        results = node.set_parameters([Parameter(name, value=value)
                                       for name, value in zip(names, values.values())])
        assert all(result.successful for result in results), results
    yield apply
    node.set_parameters(saved)


def _scene(height: int, width: int, seed: int = 5) -> np.ndarray:
    return render_scene(seed, (height, width))["image"]


def _as_encoding(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels in ``encoding``, the RGB image the node should see; for YUV and Bayer that of
    ``image_to_rgb``, which tests/ros/test_encodings.py checks against known pixels)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    if encoding == "mono8":
        return grey, np.dstack([grey] * 3)
    if encoding == "mono16":
        wide = grey.astype(np.uint16) << 8 | 0x5A  # low byte must not matter
        return wide, np.dstack([grey] * 3)
    if encoding in YUV422_BYTE_ORDER:
        pixels = packed_yuv422(grey, rgb[:, 0::2, 2], rgb[:, 1::2, 0], encoding)
        return pixels, _decoded(pixels, encoding)
    if encoding.startswith("bayer_"):
        wide = rgb.astype(np.uint16) << 8 | 0x5A if encoding.endswith("16") else rgb
        pixels = bayer_mosaic(wide, encoding[len("bayer_"):len("bayer_rggb")])
        return pixels, _decoded(pixels, encoding)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, alpha]),
              "bgra8": np.dstack([rgb[..., ::-1], alpha])}[encoding]
    return pixels, rgb


def _decoded(pixels: np.ndarray, encoding: str) -> np.ndarray:
    return image_to_rgb(image_message(pixels, encoding, fresh_header()), max_pixels=pixels.size)


def _diagnostics_of(node: DenseMTLNode, camera: TestCamera,
                    condition: Callable[[dict[str, str]], bool]
                    ) -> tuple[DiagnosticStatus, dict[str, str]] | None:
    """The node's latest /diagnostics status whose values meet ``condition``, with them."""
    name = status_name(node.get_fully_qualified_name())
    for array in reversed(camera.diagnostics):
        for status in array.status:
            values = {item.key: item.value for item in status.values}
            if status.name == name and condition(values):
                return status, values
    return None


def _check_header(outputs: dict, frame_id: str, key) -> None:
    for name, message in outputs.items():
        assert stamp_key(message.header) == key, name
        assert message.header.frame_id == frame_id, name


@pytest.mark.parametrize("encoding,size", [("rgb8", (120, 160)), ("bgr8", (97, 131)),
                                           ("rgba8", (64, 80)), ("bgra8", (120, 160)),
                                           ("mono8", (75, 99)), ("mono16", (120, 160)),
                                           ("yuv422", (97, 130)), ("yuyv", (64, 80)),
                                           ("bayer_rggb8", (75, 99)),
                                           ("bayer_gbrg16", (120, 160))])
def test_every_output_for_every_encoding(system, encoding, size):
    node, camera = system
    pixels, expected_rgb = _as_encoding(_scene(*size), encoding)
    height, width = size
    outputs = exchange(camera, lambda header: image_message(pixels, encoding, header),
                       ALL_OUTPUTS, info=lambda header: camera_info(header, height, width))
    key = stamp_key(outputs["depth"].header)
    _check_header(outputs, "test_camera_optical", key)
    expected = node.predictor.predict(expected_rgb)
    metadata = node.predictor.metadata

    segmentation = message_to_array(outputs["segmentation"])
    assert outputs["segmentation"].encoding == "mono8" and outputs["segmentation"].step == width
    assert segmentation.shape == (height, width) and segmentation.dtype == np.uint8
    assert segmentation.max() < len(metadata.class_names)
    assert np.mean(segmentation == expected.segmentation) > 0.999

    depth_message = outputs["depth"]
    assert (depth_message.encoding, depth_message.step) == ("32FC1", 4 * width)
    depth = message_to_array(depth_message)
    finite = np.isfinite(depth)
    assert finite.mean() > 0.5
    np.testing.assert_allclose(depth[finite], expected.depth[finite], rtol=1e-5)
    low, high = metadata.config.model.min_depth, metadata.config.model.max_depth
    saturated = (expected.depth <= low * 1.0001) | (expected.depth >= high * 0.9999)
    assert not (~finite & ~saturated).any()  # NaN only where the network hit its range limit

    normals = message_to_array(outputs["normals"])
    assert (outputs["normals"].encoding, outputs["normals"].step) == ("32FC3", 12 * width)
    assert normals.shape == (height, width, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-3)
    np.testing.assert_allclose(normals, expected.normals, atol=1e-5)

    edges = message_to_array(outputs["edges"])
    assert outputs["edges"].encoding == "mono8"
    assert np.abs(edges.astype(int) - np.round(expected.edges * 255)).max() <= 1

    for name in ("segmentation_color", "normals_color"):
        message = outputs[name]
        assert (message.encoding, message.height, message.width, message.step) == (
            "rgb8", height, width, 3 * width)

    info = outputs["camera_info"]
    assert (info.height, info.width) == (height, width)
    assert list(info.k) == list(camera_info(info.header, height, width).k)
    assert outputs["points"].width > 0 and outputs["points"].height == 1


def test_point_cloud_is_the_depth_back_projected(system, set_parameters):
    node, camera = system
    set_parameters(points__stride=3, points__max_depth=1000.0)
    rgb = _scene(90, 120, seed=11)
    outputs = exchange(camera, lambda header: image_message(rgb, "rgb8", header),
                       ("points", "depth", "segmentation", "camera_info"),
                       info=lambda header: camera_info(header, 90, 120, focal=70.0))
    depth = message_to_array(outputs["depth"])
    labels = message_to_array(outputs["segmentation"])
    fx, _, cx, _, fy, cy = outputs["camera_info"].k[:6]
    points = read_points(outputs["points"])
    rows, cols = np.mgrid[0:90:3, 0:120:3]
    assert len(points) == np.isfinite(depth[rows, cols]).sum()
    column = np.round(points["x"] * fx / points["z"] + cx).astype(int)
    row = np.round(points["y"] * fy / points["z"] + cy).astype(int)
    assert (row % 3 == 0).all() and (column % 3 == 0).all()
    np.testing.assert_allclose(points["z"], depth[row, column], rtol=1e-6)
    np.testing.assert_array_equal(points["label"], labels[row, column])
    packed = points["rgb"].view(np.uint32)
    colours = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)
    np.testing.assert_array_equal(colours, rgb[row, column])


def test_network_resolution_rescales_camera_info(system, set_parameters):
    node, camera = system
    set_parameters(output__resolution="network")
    net_height, net_width = node.predictor.input_size
    outputs = exchange(camera, lambda header: image_message(_scene(120, 160), "rgb8", header),
                       ALL_OUTPUTS, info=lambda header: camera_info(header, 120, 160))
    for name in ("segmentation", "depth", "normals", "edges", "segmentation_color"):
        assert (outputs[name].height, outputs[name].width) == (net_height, net_width), name
    info = outputs["camera_info"]
    assert (info.height, info.width) == (net_height, net_width)
    scale = net_width / 160
    assert info.k[0] == pytest.approx(100.0 * scale)
    assert info.k[2] == pytest.approx((79.5 + 0.5) * scale - 0.5)


def test_overlay_alpha_one_gives_the_class_colours(system, set_parameters):
    node, camera = system
    set_parameters(color__overlay_alpha=1.0)
    outputs = exchange(camera, lambda header: image_message(_scene(64, 80), "rgb8", header),
                       ("segmentation", "segmentation_color"))
    labels = message_to_array(outputs["segmentation"])
    palette = np.array(node.predictor.metadata.class_colors, np.uint8)
    np.testing.assert_array_equal(message_to_array(outputs["segmentation_color"]),
                                  palette[labels])


def test_disabled_outputs_are_not_published(system, set_parameters):
    node, camera = system
    set_parameters(publish__normals=False, publish__edges=False)
    rgb = _scene(64, 80)
    outputs = exchange(camera, lambda header: image_message(rgb, "rgb8", header), ("depth",))
    time.sleep(0.5)
    key = stamp_key(outputs["depth"].header)
    assert key not in camera.received["normals"] and key not in camera.received["edges"]


IMAGE_OUTPUTS = tuple(name for name in ALL_OUTPUTS if name not in CAMERA_INFO_OUTPUTS)


def _with_k(info: CameraInfo, fx: float, fy: float | None = None) -> CameraInfo:
    k = list(info.k)
    k[0], k[4] = fx, fx if fy is None else fy
    info.k = k
    return info


UNUSABLE_CAMERA_INFOS = {  # what the problem must name -> camera_info for a 120x160 image
    "size is 0x0": lambda header: _with_k(camera_info(header, 0, 0), 0.0),
    "focal length is fx 0, fy 0": lambda header: _with_k(camera_info(header, 60, 80), 0.0),
    "focal length is fx -100": lambda header: _with_k(camera_info(header, 120, 160), -100.0),
    "focal length is fx nan": lambda header: _with_k(camera_info(header, 120, 160), np.nan),
    "focal length is fx 100, fy inf": lambda header: _with_k(camera_info(header, 120, 160),
                                                             100.0, np.inf),
    "another aspect ratio": lambda header: camera_info(header, 100, 160),
}


def _scene_frame(header: Header) -> Image:
    return image_message(_scene(120, 160), "rgb8", header)


@pytest.mark.parametrize("problem", UNUSABLE_CAMERA_INFOS)
def test_an_unusable_camera_info_withholds_only_the_outputs_that_need_it(system, problem):
    """A bad camera_info once stopped every output: the frame failed before publishing."""
    node, camera = system
    bad_info = UNUSABLE_CAMERA_INFOS[problem]
    exchange(camera, _scene_frame, IMAGE_OUTPUTS, info=bad_info)  # the node has it now
    before = node.cameras[0].telemetry.snapshot()
    outputs = exchange(camera, _scene_frame, IMAGE_OUTPUTS, info=bad_info)
    key = stamp_key(outputs["depth"].header)
    assert (outputs["depth"].height, outputs["depth"].width) == (120, 160)
    time.sleep(0.5)
    assert key not in camera.received["camera_info"] and key not in camera.received["points"]
    after = node.cameras[0].telemetry.snapshot()
    assert after.failed == before.failed
    assert (after.withheld_by_reason["unusable camera_info"]
            > before.withheld_by_reason.get("unusable camera_info", 0))
    assert problem in after.withheld_details["unusable camera_info"][0]
    # A usable camera_info brings both back.
    outputs = exchange(camera, _scene_frame, ALL_OUTPUTS,
                       info=lambda header: camera_info(header, 120, 160))
    assert outputs["points"].width > 0 and outputs["points"].is_dense


def test_an_unusable_camera_info_is_warned_once_per_change_and_is_no_failure(
        system, set_parameters):
    node, camera = system
    set_parameters(log_throttle=0.0)
    exchange(camera, _scene_frame, ALL_OUTPUTS, info=lambda header: camera_info(header, 120, 160))
    warnings = _warnings_on_rosout(node, camera, "are withheld")
    failed = node.cameras[0].telemetry.snapshot().failed
    for problem in ("focal length is fx 0, fy 0", "focal length is fx nan"):
        for _ in range(3):
            exchange(camera, _scene_frame, IMAGE_OUTPUTS, info=UNUSABLE_CAMERA_INFOS[problem])
    wait_for(lambda: len(warnings) >= 2, 10, "the warnings")
    time.sleep(0.5)
    assert len(warnings) == 2, warnings
    assert "fx 0, fy 0" in warnings[0] and "fx nan" in warnings[1]

    status, values = wait_for(
        lambda: _diagnostics_of(node, camera, lambda values: "fx nan" in values.get(
            "outputs withheld: unusable camera_info: latest", "")),
        10, "a diagnostics report of the camera_info problem")
    assert status.level != DiagnosticStatus.ERROR and "failed" not in status.message
    assert int(values["frames failed"]) == failed == node.cameras[0].telemetry.snapshot().failed
    exchange(camera, _scene_frame, ALL_OUTPUTS, info=lambda header: camera_info(header, 120, 160))


def test_a_camera_info_of_another_size_and_the_same_aspect_is_scaled(system):
    node, camera = system
    outputs = exchange(camera, _scene_frame, ALL_OUTPUTS,
                       info=lambda header: camera_info(header, 60, 80, focal=50.0))
    info = outputs["camera_info"]
    assert (info.height, info.width) == (120, 160)
    assert info.k[0] == pytest.approx(100.0) and info.k[2] == pytest.approx((39.5 + 0.5) * 2 - 0.5)
    assert outputs["points"].width > 0


BAD_FRAMES = {
    "unsupported encoding": dict(encoding="nv12", height=4, width=4, step=8, data=bytes(32)),
    "odd width for pixel pairs": dict(encoding="yuyv", height=4, width=3, step=6,
                                      data=bytes(24)),
    "step shorter than a row": dict(encoding="rgb8", height=4, width=4, step=6, data=bytes(24)),
    "truncated data": dict(encoding="rgb8", height=4, width=4, step=12, data=bytes(20)),
    "zero size": dict(encoding="rgb8", height=0, width=0, step=0, data=b""),
    "8000x8000": dict(encoding="rgb8", height=8000, width=8000, step=24000, data=bytes(64)),
}


def test_bad_frames_are_refused_counted_and_the_node_goes_on(system):
    node, camera = system
    for name, fields in BAD_FRAMES.items():
        before = node.cameras[0].telemetry.snapshot().refused
        message = Image(header=fresh_header(), **fields)

        def counted():
            camera.send(message)
            return node.cameras[0].telemetry.snapshot().refused > before
        wait_for(counted, 20, f"the {name} frame to be refused")
    reasons = node.cameras[0].telemetry.snapshot().refused_by_reason
    assert "unsupported encoding" in reasons and "width not a whole pixel group" in reasons
    assert node.pipeline.alive
    outputs = exchange(camera, lambda header: image_message(_scene(64, 80), "rgb8", header),
                       ("segmentation", "depth"))
    assert outputs["depth"].height == 64


def _warnings_on_rosout(node: DenseMTLNode, camera: TestCamera, containing: str) -> list[str]:
    """A list that fills with the node's warnings containing ``containing``, as /rosout
    carries them; connected (a marker warning came back) when this returns."""
    found: list[str] = []
    marker = f"rosout check {time.monotonic()}"
    connected = threading.Event()

    def record(log: Log) -> None:
        if log.name == node.get_logger().name and log.level == Log.WARN:
            if marker in log.msg:
                connected.set()
            elif containing in log.msg:
                found.append(log.msg)
    camera.create_subscription(Log, "/rosout", record, QoSProfile(depth=1000))
    wait_for(lambda: node.get_logger().warning(marker) or connected.wait(1.0), 10,
             "the node's /rosout")
    return found


def test_varied_bad_input_cannot_multiply_warnings_or_diagnostics_keys(system):
    """300 frames, each with another unknown encoding: warnings stay throttled by the class of
    problem, counters and /diagnostics keys stay bounded (each name was a warning and a key)."""
    node, camera = system
    warnings = _warnings_on_rosout(node, camera, "frame refused")
    before = node.cameras[0].telemetry.snapshot().refused
    began = time.monotonic()
    for index in range(300):
        camera.send(Image(header=fresh_header(), encoding=f"bogus{index}", height=2, width=2,
                          step=6, data=bytes(12)))
        time.sleep(0.003)  # the input's best-effort history holds one frame
    wait_for(lambda: node.cameras[0].telemetry.snapshot().refused >= before + 100, 20,
             "the bogus frames to be refused")
    time.sleep(0.5)
    elapsed = time.monotonic() - began
    assert len(warnings) <= 1 + elapsed / node.settings.log_throttle, warnings

    assert len(node.cameras[0].telemetry.snapshot().refused_by_reason) < 10

    _, values = wait_for(
        lambda: _diagnostics_of(node, camera,
                                lambda values: int(values["frames refused"]) >= before + 100),
        10, "a diagnostics report of the refusals")
    assert len([key for key in values if key.startswith("refused:")]) <= 12, values
    assert len(values["refused: unsupported encoding: latest"].split(" | ")) == 5
    assert "bogus" in values["refused: unsupported encoding: latest"]
    assert len(values) < 50, sorted(values)


def test_parameters_are_validated_at_runtime(system):
    node, _ = system
    for name, value in (("points.stride", 0), ("color.overlay_alpha", 1.5),
                        ("output.resolution", "huge"), ("points.max_depth", float("nan")),
                        ("log_throttle", "often")):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful, name
        assert name in result.reason or "type" in result.reason, result.reason
    assert node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful
    node.set_parameters([Parameter("use_sim_time", value=False)])
    read_only = node.set_parameters([Parameter("model.backend", value="torch")])[0]
    assert not read_only.successful and "read-only" in read_only.reason
    assert node.get_parameter("points.stride").value == 4
    assert node.settings.points_stride == 4


@pytest.mark.parametrize("overrides,message", [
    ([Parameter("points.stride", value=0)], "points.stride"),
    ([Parameter("model.backend", value="tensorflow")], "model.backend"),
    ([Parameter("model.path", value="/nonexistent/model.onnx")], "/nonexistent/model.onnx"),
])
def test_invalid_start_is_one_clear_error(ros, overrides, message):
    with pytest.raises(StartupError, match=message.replace(".", r"\.")):
        DenseMTLNode(parameter_overrides=overrides, namespace="/refused")


def test_diagnostics_report_rates_latencies_and_counters(system):
    node, camera = system
    for _ in range(3):
        exchange(camera, lambda header: image_message(_scene(64, 80), "rgb8", header),
                 ("depth",))

    _, values = wait_for(
        lambda: _diagnostics_of(node, camera,
                                lambda values: int(values["frames processed"]) >= 3),
        10, "a diagnostics report")
    for stage in ("convert", "network", "upsample", "build", "publish"):
        assert float(values[f"{stage} p95 (ms)"]) >= float(values[f"{stage} p50 (ms)"]) > 0
    assert values["backend"] == node.predictor.backend.name
    assert int(values["frames refused"]) >= 0 and "input rate (Hz)" in values


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _publish_at(camera: TestCamera, image: np.ndarray, rate: float, seconds: float) -> dict:
    """Publish ``image`` at ``rate`` Hz for ``seconds`` from another thread; stamp -> time."""
    sent = {}

    def publish():
        began = time.monotonic()
        index = 0
        while time.monotonic() - began < seconds:
            header = fresh_header()
            sent[stamp_key(header)] = time.monotonic()
            camera.send(image_message(image, "rgb8", header))
            index += 1
            time.sleep(max(0.0, began + index / rate - time.monotonic()))
    thread = threading.Thread(target=publish)
    thread.start()
    thread.join()
    return sent


def test_at_60_hz_frames_are_dropped_not_queued(system, set_parameters):
    node, camera = system
    set_parameters(**{f"publish__{name}": False for name in ALL_OUTPUTS if name != "depth"})
    rgb = _scene(480, 640)
    _publish_at(camera, rgb, 60, 3.0)  # warm-up: buffers and pools reach their working size
    time.sleep(1.0)
    before, memory_before = node.cameras[0].telemetry.snapshot(), _resident_mb()
    sent = _publish_at(camera, rgb, 60, 8.0)
    time.sleep(1.0)  # let the last frames finish
    after, memory_after = node.cameras[0].telemetry.snapshot(), _resident_mb()

    received = after.received - before.received
    processed = after.processed - before.processed
    dropped = after.dropped - before.dropped
    # The input's DDS history holds one frame too: frames it replaces never reach the node.
    assert len(sent) >= received > processed > 0.1 * len(sent)  # slower than 60 Hz here...
    assert dropped == received - processed - (after.refused - before.refused) \
        - (after.failed - before.failed) - (after.skipped - before.skipped)  # ...and drops count
    latencies = [arrival - sent[key] for key, arrival in camera.arrivals["depth"] if key in sent]
    assert len(latencies) >= 0.9 * processed
    quarter = max(len(latencies) // 4, 1)
    first, last = np.median(latencies[:quarter]), np.median(latencies[-quarter:])
    assert last < 1.5 * first + 0.05, (first, last, after.latency)  # no growing backlog
    assert memory_after - memory_before < 50, (memory_before, memory_after)


@pytest.fixture(scope="module")
def compressed_system(ros):
    node = DenseMTLNode(cli_args=_remapped("/compressed_test"), namespace="/compressed",
                        parameter_overrides=[Parameter("input.compressed", value=True)])
    camera = TestCamera("compressed_test_camera", "/compressed_test",
                        node_namespace="/compressed/densemtl", compressed=True,
                        outputs=("segmentation", "depth"))
    with running(node, camera):
        wait_for(lambda: camera.image_publisher.get_subscription_count() > 0, 30, "discovery")
        yield node, camera


def test_compressed_input(compressed_system):
    node, camera = compressed_system
    rgb = _scene(96, 128)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    outputs = exchange(camera, lambda header: CompressedImage(header=header, format="png",
                                                              data=png),
                       ("segmentation", "depth"))
    expected = node.predictor.predict(rgb)
    np.testing.assert_allclose(message_to_array(outputs["depth"]), expected.depth, rtol=1e-5)
    before = node.cameras[0].telemetry.snapshot().refused
    wait_for(lambda: camera.send(CompressedImage(header=fresh_header(), format="jpeg",
                                                 data=b"not a jpeg at all"))
             or node.cameras[0].telemetry.snapshot().refused > before, 20, "a corrupt JPEG to be refused")


def test_two_nodes_are_two_statuses_in_diagnostics(system, compressed_system):
    """Tools key /diagnostics statuses by name: two nodes (a camera each, in namespaces) once
    reported under one name and hardware_id, so one hid the other."""
    (node, camera), (other, _) = system, compressed_system
    reports = [wait_for(lambda: _diagnostics_of(each, camera, lambda values: True), 10,
                        f"a /diagnostics report from {each.get_fully_qualified_name()}")[0]
               for each in (node, other)]
    assert [report.name for report in reports] == [
        "/densemtl: dense multi-task inference", "/compressed/densemtl: dense multi-task inference"]
    assert reports[0].hardware_id.startswith("/densemtl: ")
    assert reports[1].hardware_id.startswith("/compressed/densemtl: ")
