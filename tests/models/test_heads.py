from __future__ import annotations

import math

import pytest
import torch

from densemtl_core.models.heads import ASPP, ConvBlock, DeepLabHead, UNetDecoder

DECODER_CHANNELS = (16, 32, 32, 64, 64)
ENCODER_CHANNELS = (16, 16, 32, 64, 128)


def _features(strides, height=64, width=96, batch=2):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, height // s, width // s, generator=generator)
            for c, s in zip(ENCODER_CHANNELS, strides)]


def _decoder(strides=(2, 4, 8, 16, 16), output_scales=(0, 1), out_channels=3):
    return UNetDecoder(ENCODER_CHANNELS, strides, out_channels, DECODER_CHANNELS, aspp_channels=64,
                       aspp_rates=(6, 12, 18), aspp_dropout=0.5, output_scales=output_scales)


def test_conv_block_reflects_borders_and_applies_elu():
    block = ConvBlock(2, 1)
    torch.nn.init.ones_(block[1].weight)
    torch.nn.init.zeros_(block[1].bias)
    out = block(torch.full((1, 2, 4, 5), -0.1))
    # Reflection keeps a constant map constant, corners included (zero padding would not).
    assert out.shape == (1, 1, 4, 5)
    torch.testing.assert_close(out, torch.full_like(out, math.expm1(-1.8)))


def test_aspp_layout_and_parameter_count_at_method_size():
    aspp = ASPP(2048, 256, rates=(6, 12, 18))
    assert [branch[0].dilation for branch in aspp.convs] == [(1, 1), (6, 6), (12, 12), (18, 18)]
    assert [branch[0].padding for branch in aspp.convs[1:]] == [(6, 6), (12, 12), (18, 18)]
    assert aspp.project[0].in_channels == 5 * 256
    bn = 2 * 256
    expected = (2048 * 256 + bn) + 3 * (2048 * 256 * 9 + bn) + (2048 * 256 + bn) + (1280 * 256 + bn)
    assert sum(p.numel() for p in aspp.parameters()) == expected


def test_aspp_pooling_branch_is_spatially_constant():
    aspp = ASPP(4, 8, rates=(1,)).eval()
    captured = {}
    aspp.project.register_forward_hook(lambda module, args, out: captured.update(x=args[0]))
    aspp(torch.randn(2, 4, 6, 7))
    pooled = captured["x"][:, -8:]
    assert pooled.shape == (2, 8, 6, 7)
    assert torch.equal(pooled, pooled[:, :, :1, :1].expand_as(pooled))


def test_decoder_upsamples_when_coarser_than_skip_and_always_at_layer_zero():
    dilated = _decoder()
    assert {i: layer.upsample for i, layer in dilated.layers.items()} == {
        "4": False, "3": True, "2": True, "1": True, "0": True}
    assert dilated.feature_strides == {4: 16, 3: 8, 2: 4, 1: 2, 0: 1}
    plain = _decoder(strides=(2, 4, 8, 16, 32))
    assert plain.layers["4"].upsample and plain.feature_strides[4] == 16


@pytest.mark.parametrize("strides", [(2, 4, 8, 16, 16), (2, 4, 8, 16, 32)])
def test_decoder_feature_and_output_shapes(strides):
    decoder = _decoder(strides, output_scales=(0, 1, 2, 3, 4))
    features = _features(strides)
    x = features[4]
    for i in range(4, -1, -1):
        x, outputs = decoder.run(features, (i,), x)
        assert x.shape == (2, DECODER_CHANNELS[i], 64 // 2 ** i, 96 // 2 ** i)
        assert outputs[i].shape == (2, 3, 64 // 2 ** i, 96 // 2 ** i)
    # The merge convolution sees the reduced feature and the skip concatenated.
    assert [decoder.layers[str(i)].merge[1].in_channels for i in range(4, -1, -1)] == [
        64 + 64, 64 + 32, 32 + 16, 32 + 16, 16]


def test_sections_reproduce_the_full_pass():
    decoder = _decoder().eval()
    features = _features((2, 4, 8, 16, 16))
    with torch.no_grad():
        full = decoder(features)
        x, first = decoder.run(features, (4, 3, 2, 1))
        _, second = decoder.run(features, (0,), x)
    assert set(first) == {1} and set(second) == {0}
    assert torch.equal(full[1], first[1]) and torch.equal(full[0], second[0])


def test_decoder_stops_at_the_finest_output_scale():
    decoder = _decoder(output_scales=(3, 2))
    assert decoder.layer_ids == (4, 3, 2)
    outputs = decoder(_features((2, 4, 8, 16, 16)))
    assert list(outputs) == [3, 2]


def test_output_scale_off_the_pyramid_is_rejected():
    with pytest.raises(ValueError, match="output scale"):
        _decoder(strides=(2, 4, 4, 4, 4), output_scales=(0, 3))


def test_deeplab_head_predicts_at_input_resolution_only():
    head = DeepLabHead(128, 5, aspp_channels=32, aspp_dropout=0.5, output_stride=16)
    assert [branch[0].dilation for branch in head.aspp.convs[1:]] == [(12, 12), (24, 24), (36, 36)]
    outputs = head(_features((2, 4, 8, 16, 16)))
    assert list(outputs) == [0] and outputs[0].shape == (2, 5, 64, 96)
