import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densemtl_core.checkpoint import (CheckpointError, ModelMetadata, load_checkpoint,
                                      read_metadata, save_checkpoint)
from densemtl_core.config import load_config
from densemtl_core.models import build_model

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.width=0.125", "model.backbone=resnet18", "data.image_size=[32, 48]",
        "model.tasks=[semseg, depth]", "model.num_classes=5"]


@pytest.fixture(scope="module")
def trained():
    config = load_config(None, TINY)
    torch.manual_seed(0)
    model = build_model(config.model)
    # Make BatchNorm running statistics non-trivial so they are checked too.
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 48))
    metadata = ModelMetadata(config=config, class_names=tuple("abcde"),
                             class_colors=((1, 2, 3),) * 5, metrics={"val": {"x": 1.5}}, step=7)
    return model.eval(), metadata


def test_round_trip_is_bit_exact(tmp_path, trained):
    model, metadata = trained
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, metadata)
    loaded, loaded_meta = load_checkpoint(path)
    original = model.state_dict()
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    for name in original:
        assert original[name].dtype == restored[name].dtype, name
        assert torch.equal(original[name], restored[name]), name
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for task in a:
        for scale in a[task]:
            assert torch.equal(a[task][scale], b[task][scale])
    assert loaded_meta.config == metadata.config
    assert loaded_meta.class_names == metadata.class_names
    assert loaded_meta.metrics == {"val": {"x": 1.5}} and loaded_meta.step == 7
    assert not list(tmp_path.glob("*.partial"))


def test_metadata_is_readable_without_weights(tmp_path, trained):
    model, metadata = trained
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, metadata)
    meta = read_metadata(path)
    assert meta.tasks == ("semseg", "depth")
    assert meta.input_size == (32, 48)


def test_half_precision_storage_loads_as_float32(tmp_path, trained):
    model, metadata = trained
    path = save_checkpoint(tmp_path / "half.safetensors", model, metadata, dtype=torch.float16)
    assert path.stat().st_size < 0.6 * save_checkpoint(tmp_path / "full.safetensors", model,
                                                       metadata).stat().st_size
    loaded, _ = load_checkpoint(path)
    for name, tensor in loaded.state_dict().items():
        reference = model.state_dict()[name]
        assert tensor.dtype == reference.dtype
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, reference, rtol=1e-3, atol=1e-3)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_corrupt_file(tmp_path, trained):
    model, metadata = trained
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, metadata)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        read_metadata(garbage)


def test_foreign_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no densemtl metadata"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_metadata(tmp_path, trained):
    model, metadata = trained
    other = dataclasses.replace(metadata, config=load_config(None, TINY + ["model.num_classes=7"]))
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, other)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(path)
    wider = dataclasses.replace(metadata, config=load_config(
        None, TINY + ["model.tasks=[semseg, depth, normals]"]))
    path = save_checkpoint(tmp_path / "ckpt2.safetensors", model, wider)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


PEAK_OF_A_LOAD = """
import resource, sys
import densemtl_core.models
from densemtl_core.checkpoint import CheckpointError, load_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_checkpoint(sys.argv[1])
except CheckpointError as error:
    print(error)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_metadata_claiming_a_wider_network_is_refused_before_building_it(tmp_path, trained):
    """Metadata claiming 16 times the channels of the file's tensors made the loader build that
    network (+420 MiB here; 8.5 GB for a file claiming width 64) before comparing shapes. The
    peak is measured in a fresh interpreter, which earlier tests cannot have raised."""
    model, metadata = trained
    wider = dataclasses.replace(metadata, config=load_config(None, TINY + ["model.width=2.0"]))
    path = save_checkpoint(tmp_path / "wide.safetensors", model, wider)
    result = subprocess.run([sys.executable, "-c", PEAK_OF_A_LOAD, str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    message, growth_mib = result.stdout.splitlines()
    assert message.startswith(f"{path} does not fit the model described by its metadata "
                              f"(shape mismatch: encoder.bn1.bias [128] in the metadata, [8] in "
                              f"the file, ")
    assert int(growth_mib) < 32


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.image_size=[4096, 4096]"], "a 4096x4096 network input, over the limit of 4194304"),
    (["data.image_size=[1024, 1024]", "model.attention_downsample=1"],
     "attention over 262144 tokens at the 1024x1024 input, over the limit of 32768"),
])
def test_metadata_declaring_an_input_too_large_to_run_is_refused(tmp_path, trained, overrides,
                                                                 message):
    """The input size is the one size the tensors cannot confirm: it only shows as activation
    memory when the network first runs (a 4096x4096 input, or 262144 attention tokens, whose
    attention matrix alone would be 256 GiB)."""
    model, metadata = trained
    claimed = dataclasses.replace(metadata, config=load_config(None, TINY + overrides))
    path = save_checkpoint(tmp_path / "large.safetensors", model, claimed)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path, trained):
    model, metadata = trained
    values = metadata.to_dict()
    values["format_version"] = 99
    with pytest.raises(CheckpointError, match="newer"):
        ModelMetadata.from_dict(values)
