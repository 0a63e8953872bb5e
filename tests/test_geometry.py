"""Intrinsics follow a resized image, in numpy for the ROS side and as tensors for training;
orientations convert between rotation matrices and ROS quaternions."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from densemtl_core.data.transforms import scale_intrinsics as scale_tensor_intrinsics
from densemtl_core.geometry import (quaternion_from_rotation, rotation_from_quaternion,
                                    scale_intrinsics)

REPO = Path(__file__).resolve().parents[1]
K = np.array([[500.0, 0.0, 319.5], [0.0, 480.0, 239.5], [0.0, 0.0, 1.0]])


def test_focal_lengths_scale_and_pixel_centres_stay_at_integers():
    """c' = (c + 0.5) * s - 0.5 per axis: halving 480x640 puts the centre pixel at 159.5."""
    scaled = scale_intrinsics(K, (480, 640), (240, 160))
    np.testing.assert_allclose(scaled, [[125.0, 0.0, 79.5], [0.0, 240.0, 119.5],
                                        [0.0, 0.0, 1.0]], rtol=1e-12)
    assert scaled.dtype == K.dtype
    assert K[0, 0] == 500.0  # a new array; the input is untouched


def test_the_tensor_form_gives_the_numpy_values_in_the_sample_dtype():
    intrinsics = torch.from_numpy(K.astype(np.float32))
    scaled = scale_tensor_intrinsics(intrinsics, (480, 640), (375, 1242))
    assert scaled.dtype == torch.float32
    np.testing.assert_array_equal(scaled.numpy(),
                                  scale_intrinsics(K.astype(np.float32), (480, 640), (375, 1242)))
    assert intrinsics[0, 2] == np.float32(319.5)


def test_scaling_a_camera_calibration_imports_no_torch():
    """The node and the bag tools rescale a CameraInfo's 3x3 K and 3x4 P without torch."""
    script = ("import sys\nimport numpy as np\n"
              "from densemtl_core.recordings.calibration import Calibration\n"
              "k = np.array([[500.0, 0, 319.5], [0, 480.0, 239.5], [0, 0, 1]])\n"
              "scaled = Calibration.pinhole(k, 480, 640).scaled(240, 320)\n"
              "assert scaled.k[0, 0] == scaled.p[0, 0] == 250.0, scaled.p\n"
              "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_quaternions_match_scipy_and_round_trip_for_every_kind_of_rotation():
    from scipy.spatial.transform import Rotation
    rotations = list(Rotation.random(300, random_state=0).as_matrix())
    # Half turns about each axis: w = 0, where only the larger-component branches are stable.
    rotations += [np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]),
                  np.diag([-1.0, -1.0, 1.0])]
    for matrix in rotations:
        quaternion = quaternion_from_rotation(matrix)
        assert quaternion[3] >= 0 and np.linalg.norm(quaternion) == pytest.approx(1.0)
        expected = Rotation.from_matrix(matrix).as_quat()
        np.testing.assert_allclose(abs(quaternion @ expected), 1.0, atol=1e-12)  # +-q alike
        np.testing.assert_allclose(rotation_from_quaternion(quaternion), matrix, atol=1e-12)
    # A quarter turn about z by hand, and a rounded (non-unit) recorded quaternion.
    quarter = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(quaternion_from_rotation(quarter),
                               [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(rotation_from_quaternion([0.0, 0.0, 0.7071, 0.7071]), quarter,
                               atol=1e-12)
    with pytest.raises(ValueError):
        rotation_from_quaternion([0.0, 0.0, 0.0, 0.0])
