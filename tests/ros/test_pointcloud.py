"""densemtl_ros.node.pointcloud: back-projection, packing, and reading clouds back."""
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import Header

from densemtl_ros.node.pointcloud import (POINT_DTYPE, POINT_FIELDS, depth_to_points,
                                     make_pointcloud, read_points)

FX, FY, CX, CY = 500.0, 400.0, 320.0, 240.0
HEIGHT, WIDTH = 480, 640
K = np.array([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])


def _plane(depth: float = 2.0) -> np.ndarray:
    return np.full((HEIGHT, WIDTH), depth, np.float32)


def _camera_info(height: int = HEIGHT, width: int = WIDTH) -> CameraInfo:
    info = CameraInfo(height=height, width=width)
    info.k = K.flatten().tolist()
    return info


def _point_at(points: np.ndarray, pixels: np.ndarray, row: int, col: int) -> np.ndarray:
    (index,) = np.flatnonzero((pixels[:, 0] == row) & (pixels[:, 1] == col))
    return points[index]


def test_a_fronto_parallel_plane_gives_the_known_points():
    points, pixels = depth_to_points(_plane(), FX, FY, CX, CY)
    assert points.dtype == np.float32 and points.shape == (HEIGHT * WIDTH, 3)
    np.testing.assert_array_equal(_point_at(points, pixels, 240, 320), [0.0, 0.0, 2.0])
    np.testing.assert_allclose(_point_at(points, pixels, 0, 0), [-1.28, -1.2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(_point_at(points, pixels, 479, 639), [1.276, 1.195, 2.0],
                               rtol=1e-6)
    np.testing.assert_allclose(_point_at(points, pixels, 240, 570), [1.0, 0.0, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(points[:, 2], 2.0)
    # Projecting every point back lands on its own pixel.
    np.testing.assert_allclose(points[:, 0] * FX / points[:, 2] + CX, pixels[:, 1], atol=1e-3)
    np.testing.assert_allclose(points[:, 1] * FY / points[:, 2] + CY, pixels[:, 0], atol=1e-3)


def test_invalid_and_far_pixels_are_dropped():
    depth = _plane()
    bad = {(1, 1): np.nan, (1, 2): 0.0, (1, 3): -1.0, (1, 4): np.inf, (1, 5): 10.0}
    for pixel, value in bad.items():
        depth[pixel] = value
    depth[2, 2] = 5.0  # exactly max_depth: kept
    points, pixels = depth_to_points(depth, FX, FY, CX, CY, max_depth=5.0)
    assert len(points) == HEIGHT * WIDTH - len(bad)
    kept = set(map(tuple, pixels.tolist()))
    assert not kept & set(bad) and (2, 2) in kept
    assert np.isfinite(points).all() and (points[:, 2] > 0).all()


def test_stride_keeps_every_strided_row_and_column_in_row_major_order():
    depth = np.ones((7, 10), np.float32)
    depth[3, 6] = np.nan
    points, pixels = depth_to_points(depth, FX, FY, CX, CY, stride=3)
    rows, cols = np.mgrid[0:7:3, 0:10:3]
    expected = [(r, c) for r, c in zip(rows.ravel(), cols.ravel()) if (r, c) != (3, 6)]
    assert pixels.tolist() == [list(pixel) for pixel in expected]
    np.testing.assert_allclose(points[:, 0], (pixels[:, 1] - CX) / FX)


@pytest.mark.parametrize("depth, stride, reason", [
    (np.ones((4, 4), np.uint16), 1, "floating-point"),
    (np.ones((4, 4, 1), np.float32), 1, "HxW"),
    (np.ones((4, 4), np.float32), 0, "stride must be at least 1"),
])
def test_depth_to_points_refuses_bad_arguments(depth, stride, reason):
    with pytest.raises(ValueError, match=reason):
        depth_to_points(depth, FX, FY, CX, CY, stride=stride)


@pytest.mark.parametrize("intrinsics", [(0.0, FY, CX, CY), (FX, np.nan, CX, CY),
                                        (FX, FY, np.nan, CY), (FX, FY, CX, -np.inf)])
def test_intrinsics_that_would_make_nan_points_are_refused(intrinsics):
    with pytest.raises(ValueError, match="intrinsics must be finite with non-zero focal"):
        depth_to_points(_plane(), *intrinsics)
    k = np.array([[intrinsics[0], 0, intrinsics[2]], [0, intrinsics[1], intrinsics[3]],
                  [0, 0, 1]])
    with pytest.raises(ValueError, match="intrinsics must be finite"):
        make_pointcloud(Header(), _plane(), k)


def test_a_cloud_with_a_non_finite_point_is_not_dense():
    """Valid depths (finite, positive) can still overflow float32 once back-projected."""
    depth = _plane()
    wide_angle = np.array([[1.0, 0.0, CX], [0.0, 1.0, CY], [0.0, 0.0, 1.0]])
    assert make_pointcloud(Header(), depth, wide_angle, stride=8).is_dense
    depth[0, 0] = 3e38  # x = 3e38 * (0 - 320) / 1
    cloud = make_pointcloud(Header(), depth, wide_angle, stride=8)
    assert not np.isfinite(read_points(cloud)["x"]).all()
    assert not cloud.is_dense


def _decoded_colours(points: np.ndarray) -> np.ndarray:
    packed = points["rgb"].view(np.uint32)
    assert not (packed >> 24).any()
    return np.stack([packed >> 16 & 255, packed >> 8 & 255, packed & 255], axis=-1)


def test_cloud_round_trips_through_read_points():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 8.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    labels = rng.integers(0, 300, (HEIGHT, WIDTH), dtype=np.uint16)
    header = Header(frame_id="camera_optical_frame")
    cloud = make_pointcloud(header, depth, _camera_info(), rgb=rgb, labels=labels, stride=4,
                            max_depth=6.0)
    expected, pixels = depth_to_points(depth, FX, FY, CX, CY, stride=4, max_depth=6.0)
    assert cloud.header is header
    assert (cloud.height, cloud.width, cloud.is_dense, cloud.is_bigendian) == (
        1, len(expected), True, False)
    assert (cloud.point_step, cloud.row_step, len(cloud.data)) == (
        20, 20 * len(expected), 20 * len(expected))
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1),
        ("label", 16, PointField.UINT32, 1)]
    points = read_points(cloud)
    assert points.dtype == POINT_DTYPE and len(points) == len(expected)
    for axis, name in enumerate("xyz"):
        np.testing.assert_array_equal(points[name], expected[:, axis])
    np.testing.assert_array_equal(_decoded_colours(points), rgb[pixels[:, 0], pixels[:, 1]])
    np.testing.assert_array_equal(points["label"], labels[pixels[:, 0], pixels[:, 1]])


def test_colours_and_labels_default_to_zero_and_a_matrix_gives_the_same_points():
    depth = _plane()
    from_info = read_points(make_pointcloud(Header(), depth, _camera_info(), stride=8))
    from_matrix = read_points(make_pointcloud(Header(), depth, K, stride=8))
    np.testing.assert_array_equal(from_info, from_matrix)
    assert not from_info["rgb"].view(np.uint32).any() and not from_info["label"].any()
    assert (from_info["x"][from_info["z"] > 0] != 0).any()


def test_an_empty_cloud_is_valid():
    cloud = make_pointcloud(Header(), np.full((4, 5), np.nan, np.float32), K)
    assert (cloud.width, len(cloud.data)) == (0, 0)
    assert len(read_points(cloud)) == 0


def test_camera_info_of_another_resolution_is_refused():
    with pytest.raises(ValueError, match="camera_info describes 240x320 images but the depth "
                                         "is 480x640"):
        make_pointcloud(Header(), _plane(), _camera_info(240, 320))


@pytest.mark.parametrize("keyword, values, reason", [
    ("rgb", np.zeros((HEIGHT, WIDTH, 3), np.float32), "rgb must be a 480x640x3 uint8 array"),
    ("rgb", np.zeros((10, 10, 3), np.uint8), "rgb must be a 480x640x3 uint8 array"),
    ("labels", np.zeros((HEIGHT, WIDTH), np.int64), "labels must be a 480x640 unsigned"),
])
def test_colours_and_labels_must_match_the_depth(keyword, values, reason):
    with pytest.raises(ValueError, match=reason):
        make_pointcloud(Header(), _plane(), K, **{keyword: values})


def test_point_fields_describe_point_dtype():
    assert [(f.name, f.offset) for f in POINT_FIELDS] == [
        (name, offset) for name, (_, offset) in POINT_DTYPE.fields.items()]
    assert POINT_DTYPE.itemsize == 20


def test_read_points_honours_foreign_layouts():
    """A big-endian cloud with padding inside points and at the end of its two rows."""
    values = np.zeros((2, 3), [("x", ">f4"), ("pad", "V2"), ("intensity", ">u2"),
                               ("ring", ">u2", (2,))])
    values["x"] = [[1.5, -2.0, 3.25], [4.0, 5.5, -6.0]]
    values["intensity"] = [[1, 2, 3], [400, 500, 60000]]
    values["ring"] = np.arange(12).reshape(2, 3, 2)
    rows = np.zeros((2, values.dtype.itemsize * 3 + 4), np.uint8)
    rows[:, :values.dtype.itemsize * 3] = values.view(np.uint8).reshape(2, -1)
    cloud = PointCloud2(height=2, width=3, is_bigendian=True, point_step=values.dtype.itemsize,
                        row_step=rows.shape[1], data=rows.tobytes())
    cloud.fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                    PointField(name="intensity", offset=6, datatype=PointField.UINT16, count=1),
                    PointField(name="ring", offset=8, datatype=PointField.UINT16, count=2)]
    points = read_points(cloud)
    assert points.shape == (6,)
    np.testing.assert_array_equal(points["x"], values["x"].ravel())
    np.testing.assert_array_equal(points["intensity"], values["intensity"].ravel())
    np.testing.assert_array_equal(points["ring"], values["ring"].reshape(6, 2))


def test_read_points_refuses_a_cloud_with_missing_data():
    cloud = make_pointcloud(Header(), _plane(), K, stride=100)
    cloud.data = cloud.data[:-1]
    with pytest.raises(ValueError, match="inconsistent cloud"):
        read_points(cloud)
