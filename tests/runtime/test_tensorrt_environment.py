"""The version switch between TensorRT 10 and 11 and the choice of CUDA Python binding: plain
functions, exercised here without TensorRT or a GPU."""
import importlib.util

import pytest

from densemtl_core.runtime import PredictorError
from densemtl_core.runtime.cuda_buffers import (CUDA_BINDINGS, MISSING_BINDINGS, cuda_api,
                                                find_cuda_binding)
from densemtl_core.runtime.tensorrt_environment import (check_tensorrt_version,
                                                        network_creation_flags, tensorrt_major)


@pytest.mark.parametrize(("version", "major"), [("10.3.0.30", 10), ("10.16.1", 10),
                                                ("11.4.1.3", 11), (" 11.0 ", 11)])
def test_supported_versions_give_their_major(version, major):
    assert tensorrt_major(version) == major
    assert check_tensorrt_version(version) == major


def test_tensorrt_older_than_10_gets_one_line():
    with pytest.raises(PredictorError, match=r"TensorRT 8\.6\.2 is too old: engines need "
                                             r"TensorRT 10 or 11") as caught:
        check_tensorrt_version("8.6.2")
    assert "\n" not in str(caught.value)


def test_unknown_or_unreadable_versions_are_refused():
    with pytest.raises(PredictorError, match="newer than this code knows"):
        check_tensorrt_version("12.0.0")
    with pytest.raises(PredictorError, match="cannot read the TensorRT version 'dev'"):
        check_tensorrt_version("dev")


def test_network_flags_per_major():
    # TensorRT 10: NetworkDefinitionCreationFlag.STRONGLY_TYPED == 1 (EXPLICIT_BATCH is 0)
    assert network_creation_flags(10, 1) == 0b10
    # TensorRT 11: always strongly typed; the deprecated flag is not passed
    assert network_creation_flags(11, 0) == 0


def test_cuda_python_is_preferred_then_its_old_path_then_pycuda():
    def installed(*names):
        return lambda name: name in names

    assert CUDA_BINDINGS == ("cuda.bindings.runtime", "cuda.cudart", "pycuda.driver")
    assert find_cuda_binding(installed(*CUDA_BINDINGS)) == "cuda.bindings.runtime"
    assert find_cuda_binding(installed("cuda.cudart", "pycuda.driver")) == "cuda.cudart"
    assert find_cuda_binding(installed("pycuda.driver")) == "pycuda.driver"
    assert find_cuda_binding(installed()) is None


@pytest.mark.skipif(any(importlib.util.find_spec(top) for top in ("cuda", "pycuda")),
                    reason="a CUDA Python binding is installed")
def test_without_any_binding_one_line_names_both_packages():
    assert find_cuda_binding() is None  # a missing parent package counts as not installed
    with pytest.raises(PredictorError) as caught:
        cuda_api()
    assert str(caught.value) == MISSING_BINDINGS
    assert "cuda-python" in MISSING_BINDINGS and "pycuda" in MISSING_BINDINGS
