"""A process that only runs a model loads nothing of training, datasets, evaluation or export.

Each case runs in a fresh interpreter and lists the modules it loaded beyond ``import torch``
(torch itself loads tqdm through ``torch.hub`` when tqdm is installed); none may be above the
runtime's floor in ``tests/floors.py`` or one of its packages of training and pictures.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.floors import above_the_runtime

REPO = Path(__file__).resolve().parents[2]


def modules_loaded_by(code: str) -> list[str]:
    """The modules ``code`` loads in a fresh interpreter that has imported torch."""
    script = (f"import sys\nimport torch\nbefore = set(sys.modules)\n{code}\n"
              f"print('\\n'.join(sorted(set(sys.modules) - before)))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_importing_the_runtime_loads_no_training():
    loaded = modules_loaded_by("import densemtl_core.runtime")
    assert "densemtl_core.runtime" in loaded
    assert [module for module in loaded if above_the_runtime(module)] == []


def modules_loaded_by_predicting(model: Path, backend: str) -> list[str]:
    """The modules loading ``model`` with ``backend`` on the CPU and predicting one frame load."""
    return modules_loaded_by(
        "import numpy as np\nfrom densemtl_core.runtime import load_predictor\n"
        f"predictor = load_predictor({str(model)!r}, backend={backend!r}, device='cpu')\n"
        "predictor.predict(np.zeros((48, 64, 3), np.uint8))")


def test_running_an_onnx_file_loads_no_training_and_no_network_code(four_task_onnx):
    loaded = modules_loaded_by_predicting(four_task_onnx, "onnxruntime")
    assert "onnxruntime" in loaded
    assert [module for module in loaded if above_the_runtime(module)] == []
    assert [module for module in loaded if module.startswith("densemtl_core.models")] == []


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_running_a_checkpoint_loads_no_training(four_task_checkpoint, backend):
    """The torch backend and the checkpoint exported in memory both build the network."""
    loaded = modules_loaded_by_predicting(four_task_checkpoint, backend)
    assert "densemtl_core.models.network" in loaded
    assert [module for module in loaded if above_the_runtime(module)] == []
