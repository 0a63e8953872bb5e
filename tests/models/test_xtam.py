from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from densemtl_core.models.xtam import (ExchangeBlock, Extractor, SelfAttentionGate, SxTAM, XTAM)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _set_batch_norm(bn: nn.BatchNorm2d, bias: float = 0.0) -> None:
    """In eval mode, make ``bn`` add ``bias`` and nothing else."""
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.fill_(bias)


def _make_identity(conv_bn_relu: nn.Sequential) -> None:
    """Turn a 1x1 conv + BN + ReLU into the identity on non-negative inputs (eval mode)."""
    conv = conv_bn_relu[0]
    with torch.no_grad():
        conv.weight.copy_(torch.eye(conv.out_channels).view_as(conv.weight))
    _set_batch_norm(conv_bn_relu[1])


def test_pair_parameter_count_matches_the_method():
    xtam = XTAM(128, downsample=4)
    assert _count(xtam.extractor) == 147_584
    assert _count(xtam.self_attention) == 147_456
    assert _count(xtam.cross_attention) == 50_048
    assert _count(xtam.project) == 24_832
    assert _count(xtam) == 369_920


@pytest.mark.parametrize(("branches", "projected"), [(("sa",), 64), (("sxtam",), 128),
                                                     (("sa", "sxtam"), 192)])
def test_projection_takes_the_configured_branches(branches, projected):
    xtam = XTAM(128, branches)
    assert xtam.project[0].in_channels == projected
    assert (xtam.self_attention is not None) == ("sa" in branches)
    assert (xtam.cross_attention is not None) == ("sxtam" in branches)


@pytest.mark.parametrize(("tasks", "fusion", "expected"), [
    (("semseg", "depth"), "add", 2 * 369_920 + 2 * (16_384 + 256)),
    (("semseg", "depth", "normals"), "add", 6 * 369_920 + 3 * (2 * 16_384 + 256)),
    (("semseg", "depth", "normals", "edges"), "prod", 12 * 369_920 + 4 * (3 * 16_384 + 256)),
    (("semseg", "depth", "normals"), "concat", 6 * 369_920 + 3 * (3 * 16_384 + 256)),
])
def test_exchange_block_size(tasks, fusion, expected):
    assert _count(ExchangeBlock(tasks, 128, fusion=fusion, downsample=4)) == expected


def test_self_attention_gate_hand_values():
    gate = SelfAttentionGate(2)
    nn.init.ones_(gate.features.weight)
    nn.init.zeros_(gate.gate.weight)
    out = gate(torch.ones(1, 2, 3, 3))
    # 3x3 sum over 2 channels with zero padding, gated by sigmoid(0) = 0.5.
    expected = 0.5 * 2 * torch.tensor([[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])
    assert out.shape == (1, 1, 3, 3)
    torch.testing.assert_close(out[0, 0], expected)


def test_sxtam_subsamples_queries_and_max_pools_keys_by_hand():
    sxtam = SxTAM(channels=1, downsample=2).eval()
    for projection in (sxtam.query, sxtam.key, sxtam.value):
        _make_identity(projection)
    with torch.no_grad():
        sxtam.alpha.fill_(2.0)
    ln3 = math.log(3.0)
    # Queries are the top-left pixel of each 2x2 cell (0, 1, 0, 1); the 9s must be ignored.
    target = torch.tensor([[0.0, 9, 1, 9], [9, 9, 9, 9], [0, 9, 1, 9], [9, 9, 9, 9]])
    # Keys/values are the cell maxima (0, 0, 0, ln 3); ln 3 is not at a cell's top-left corner.
    source = torch.zeros(4, 4)
    source[3, 3] = ln3
    with torch.no_grad():
        out, attention = sxtam.attend(target.view(1, 1, 4, 4), source.view(1, 1, 4, 4))
    uniform, peaked = [0.25] * 4, [1 / 6, 1 / 6, 1 / 6, 1 / 2]
    torch.testing.assert_close(attention[0], torch.tensor([uniform, peaked, uniform, peaked]))
    # O = sum_q a_pq V_q: ln3/4 under a uniform row, ln3/2 under the peaked one; times alpha = 2.
    cell = torch.tensor([[ln3 / 2, ln3], [ln3 / 2, ln3]])
    expected = cell.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(out[0, 0], expected)


def test_fresh_sxtam_outputs_zero_and_attention_rows_sum_to_one():
    torch.manual_seed(0)
    sxtam = SxTAM(channels=8, downsample=4)
    target, source = torch.randn(2, 8, 16, 24), torch.randn(2, 8, 16, 24)
    out, attention = sxtam.attend(target, source)
    assert torch.equal(out, torch.zeros_like(out))
    assert attention.shape == (2, 4 * 6, 4 * 6)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 24))
    assert torch.equal(sxtam(target, source), out)


def test_fresh_xtam_depends_on_the_source_through_self_attention_only():
    torch.manual_seed(0)
    xtam = XTAM(16, downsample=2).eval()
    target, source = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    reference = xtam(target, source)
    assert torch.equal(xtam(torch.randn(1, 16, 8, 8), source), reference)
    with torch.no_grad():
        xtam.cross_attention.alpha.fill_(1.0)
    assert not torch.equal(xtam(torch.randn(1, 16, 8, 8), source), reference)


def test_extractor_is_conv_then_relu():
    extractor = Extractor(4)
    assert bool((extractor(torch.randn(1, 4, 5, 5)) >= 0).all())
    assert extractor[0].bias is not None and extractor[0].padding == (1, 1)


def test_sources_follow_the_canonical_task_order():
    block = ExchangeBlock(("normals", "depth", "semseg"), 8, downsample=2)
    assert block.tasks == ("semseg", "depth", "normals")
    assert block.sources("normals") == ("semseg", "depth")
    assert set(block.xtams) == {"depth_to_semseg", "normals_to_semseg", "semseg_to_depth",
                                "normals_to_depth", "semseg_to_normals", "depth_to_normals"}


@pytest.mark.parametrize(("fusion", "expected"), [
    ("add", lambda base: base + 0.5), ("prod", lambda base: base * 0.5),
    ("concat", lambda base: torch.full_like(base, 0.5))])
def test_fusion_formulas(fusion, expected):
    """With P_t's convolution zeroed and its BN bias 0.5, P_t outputs exactly 0.5 everywhere."""
    torch.manual_seed(0)
    block = ExchangeBlock(("semseg", "depth"), 8, fusion=fusion, downsample=2).eval()
    for fuse in block.fusions.values():
        with torch.no_grad():
            fuse[0].weight.zero_()
        _set_batch_norm(fuse[1], bias=0.5)
    features = {"semseg": torch.randn(2, 8, 8, 8), "depth": torch.randn(2, 8, 8, 8)}
    refined = block(features)
    for task in ("semseg", "depth"):
        torch.testing.assert_close(refined[task], expected(features[task]))


def test_unknown_fusion_and_branches_are_rejected():
    with pytest.raises(ValueError, match="fusion"):
        ExchangeBlock(("semseg", "depth"), 8, fusion="max")
    with pytest.raises(ValueError, match="branches"):
        XTAM(8, ("cxtam",))
    with pytest.raises(ValueError, match="branches"):
        XTAM(8, ())


@pytest.mark.parametrize("alpha_init, trains", [(0.0, False), (0.1, True)])
def test_sxtam_alone_trains_only_from_a_non_zero_alpha(alpha_init, trains):
    torch.manual_seed(0)
    xtam = XTAM(8, branches=("sxtam",), downsample=2, alpha_init=alpha_init).train()
    target, source = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    xtam(target, source).square().sum().backward()
    gradient = xtam.cross_attention.alpha.grad.abs().sum().item()
    assert (gradient > 0) is trains
