"""The Predictor's memory grows with a frame's pixel count, never with its shape.

Each measurement runs in a fresh interpreter: the peak resident size (``ru_maxrss``) only ever
rises, so earlier tests in this process would hide what one prediction costs.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PEAK_BYTES_PER_PIXEL = """
import resource, sys
import numpy as np
from densemtl_core.runtime import load_predictor
predictor = load_predictor(sys.argv[1], backend="torch", device="cpu")
predictor.predict(np.zeros((64, 80, 3), np.uint8))
frame = np.zeros((int(sys.argv[2]), int(sys.argv[3]), 3), np.uint8)
frame[::2] = 255
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prediction = predictor.predict(frame)
assert prediction.segmentation.shape == frame.shape[:2]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / frame[..., 0].size)
"""


@pytest.mark.parametrize("shape", [(1_000_000, 1), (1, 1_000_000)])
def test_a_one_pixel_wide_frame_costs_what_its_pixel_count_does(four_task_checkpoint, shape):
    """A 1,000,000 x 1 frame took 680 bytes of peak memory per pixel (height x network-width
    intermediates in the resize and the label up-sampling); a 1000 x 1000 frame takes about 33."""
    result = subprocess.run([sys.executable, "-c", PEAK_BYTES_PER_PIXEL,
                             str(four_task_checkpoint), *map(str, shape)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 200
