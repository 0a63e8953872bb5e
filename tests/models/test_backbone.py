from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from densemtl_core.models.backbone import ResNetEncoder, load_torchvision_weights, scaled_width

TORCHVISION_PARAMETERS_WITHOUT_FC = {"resnet18": 11_176_512, "resnet34": 21_284_672,
                                     "resnet50": 23_508_032, "resnet101": 42_500_160}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETERS_WITHOUT_FC))
def test_width_one_has_torchvision_parameter_count(name):
    encoder = ResNetEncoder(name)
    assert sum(p.numel() for p in encoder.parameters()) == TORCHVISION_PARAMETERS_WITHOUT_FC[name]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_state_dict_names_and_shapes_follow_torchvision(name, torchvision_state_dict):
    expected = {k: tuple(v.shape) for k, v in torchvision_state_dict(name).items()
                if not k.startswith("fc.")}
    actual = {k: tuple(v.shape) for k, v in ResNetEncoder(name).state_dict().items()}
    assert actual == expected


@pytest.mark.parametrize(("width", "expected"), [(1.0, 64), (0.25, 16), (0.3, 16), (0.1, 8),
                                                 (0.01, 8), (1.5, 96)])
def test_scaled_width_rounds_to_multiples_of_eight(width, expected):
    assert scaled_width(64, width) == expected


def test_width_scales_every_stage():
    assert ResNetEncoder("resnet18", width=0.25).channels == (16, 16, 32, 64, 128)
    assert ResNetEncoder("resnet50", width=0.125).channels == (8, 32, 64, 128, 256)


@pytest.mark.parametrize(("dilation", "strides"), [((False, False, True), (2, 4, 8, 16, 16)),
                                                   ((False, False, False), (2, 4, 8, 16, 32)),
                                                   ((False, True, True), (2, 4, 8, 8, 8))])
def test_feature_strides_and_channels(dilation, strides):
    encoder = ResNetEncoder("resnet18", width=0.125, dilation=dilation).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 96))
    assert encoder.strides == strides
    assert [f.shape[1] for f in features] == list(encoder.channels)
    assert [(f.shape[2], f.shape[3]) for f in features] == [(64 // s, 96 // s) for s in strides]


def test_dilation_placement_matches_torchvision():
    """First block of a dilated stage keeps the previous dilation, later blocks use the new one."""
    encoder = ResNetEncoder("resnet50", dilation=(False, True, True))
    conv = {name: module for name, module in encoder.named_modules()}
    assert (conv["layer2.0.conv2"].stride, conv["layer2.0.conv2"].dilation) == ((2, 2), (1, 1))
    assert (conv["layer3.0.conv2"].stride, conv["layer3.0.conv2"].dilation) == ((1, 1), (1, 1))
    assert conv["layer3.1.conv2"].dilation == (2, 2)
    assert (conv["layer4.0.conv2"].stride, conv["layer4.0.conv2"].dilation) == ((1, 1), (2, 2))
    assert conv["layer4.2.conv2"].dilation == conv["layer4.2.conv2"].padding == (4, 4)
    assert conv["layer4.0.downsample.0"].stride == (1, 1)


def _save(state: dict[str, torch.Tensor], path):
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_weights_land_in_place(tmp_path, suffix, torchvision_state_dict):
    state = torchvision_state_dict("resnet18")
    path = tmp_path / f"resnet18{suffix}"
    _save(state, path)
    encoder = ResNetEncoder("resnet18")
    load_torchvision_weights(encoder, path)
    loaded = encoder.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, tensor in loaded.items():
        assert torch.equal(tensor, state[key]), key


def test_files_without_num_batches_tracked_load(tmp_path, torchvision_state_dict):
    state = {k: v for k, v in torchvision_state_dict("resnet18").items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    encoder = ResNetEncoder("resnet18")
    load_torchvision_weights(encoder, tmp_path / "old.pth")
    assert torch.equal(encoder.layer4[1].conv2.weight,
                       state["layer4.1.conv2.weight"])


@pytest.mark.parametrize(("file_layout", "encoder_args", "message"), [
    ("resnet18", ("resnet18", 0.5),
     "shape-mismatched key(s): conv1.weight (file (64, 3, 7, 7), model (32, 3, 7, 7))"),
    ("resnet18", ("resnet34", 1.0), "missing key(s): layer1.2.conv1.weight"),
    ("resnet50", ("resnet18", 1.0), "unexpected key(s): layer1.0.conv3.weight"),
])
def test_wrong_file_names_the_offending_keys(tmp_path, torchvision_state_dict, file_layout,
                                             encoder_args, message):
    torch.save(torchvision_state_dict(file_layout), tmp_path / "weights.pth")
    encoder = ResNetEncoder(*encoder_args)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit") as error:
        load_torchvision_weights(encoder, tmp_path / "weights.pth")
    assert message in str(error.value)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_missing_file_and_unknown_format(tmp_path):
    encoder = ResNetEncoder("resnet18", width=0.125)
    with pytest.raises(FileNotFoundError):
        load_torchvision_weights(encoder, tmp_path / "absent.pth")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="safetensors"):
        load_torchvision_weights(encoder, tmp_path / "weights.bin")
