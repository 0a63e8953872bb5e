"""Device choice: a device this machine lacks is one line from every entry point."""
import pytest
import torch

from densemtl_core.devices import DeviceError, resolve_device
from densemtl_core.evaluate import main as evaluate_main

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("name, message", [
    pytest.param("cuda", "device 'cuda' requested but CUDA is not available", marks=NO_CUDA),
    pytest.param("cuda:1", "device 'cuda:1' requested but CUDA is not available", marks=NO_CUDA),
    ("gpu", "unknown device 'gpu'; use auto, cpu, cuda or cuda:N"),
    ("mps", "unknown device 'mps'; use auto, cpu, cuda or cuda:N"),
    ("cuda:x", "unknown device 'cuda:x'"),
])
def test_a_device_this_machine_lacks_is_a_device_error(name, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_cuda_index_beyond_the_machine_is_refused():
    with pytest.raises(DeviceError):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@NO_CUDA
def test_evaluation_on_cuda_without_cuda_exits_2_with_one_line(tmp_path, capsys):
    assert evaluate_main(["--checkpoint", str(tmp_path / "model.safetensors"),
                          "--device", "cuda"]) == 2
    assert capsys.readouterr().err == ("densemtl-eval: device 'cuda' requested but CUDA is not "
                                       "available\n")
