from __future__ import annotations

import importlib.util
import io
import itertools
import math
import warnings

import pytest
import torch
from torch import nn

from densemtl_core.config import TASK_NAMES, ConfigError, ModelConfig
from densemtl_core.depth_coding import encode_inverse_depth
from densemtl_core.models import build_model

SIZE = 64
CHANNELS = {"semseg": 5, "depth": 1, "normals": 3, "edges": 2}
SUBSETS = [s for n in range(1, 5) for s in itertools.combinations(TASK_NAMES, n)]


def _config(**overrides) -> ModelConfig:
    values = dict(arch="densemtl", tasks=("semseg", "depth"), num_classes=5, backbone="resnet18",
                  width=0.125)
    values.update(overrides)
    return ModelConfig(**values)


def _image(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _assert_shapes(outputs, tasks, scales, batch=2):
    assert list(outputs) == list(tasks)
    for task in tasks:
        assert list(outputs[task]) == list(scales)
        for scale in scales:
            side = SIZE // 2 ** scale
            assert outputs[task][scale].shape == (batch, CHANNELS[task], side, side)


@pytest.mark.parametrize("arch", ["stl", "mtl", "densemtl"])
def test_output_shapes_for_every_task_subset(arch):
    subsets = [s for s in SUBSETS if (len(s) == 1) == (arch == "stl") or arch == "mtl"]
    for tasks in subsets:
        with torch.no_grad():
            outputs = build_model(_config(arch=arch, tasks=tasks))(_image())
        _assert_shapes(outputs, tasks, (0, 1))


@pytest.mark.parametrize(("fusion", "branches"),
                         list(itertools.product(("add", "prod", "concat"),
                                           (("sa",), ("sxtam",), ("sa", "sxtam")))))
def test_output_shapes_for_every_fusion_and_branch_subset(fusion, branches):
    tasks = ("edges", "semseg", "normals")
    model = build_model(_config(tasks=tasks, fusion=fusion, exchange_branches=branches))
    with torch.no_grad():
        _assert_shapes(model(_image()), tasks, (0, 1))


def test_other_exchange_scale_and_output_scales():
    model = build_model(_config(exchange_scale=3, output_scales=(2, 4, 3), width=0.25))
    assert model.exchange.xtams["semseg_to_depth"].cross_attention.downsample == 1
    with torch.no_grad():
        _assert_shapes(model(_image()), ("semseg", "depth"), (2, 4, 3))


def test_deeplab_heads_predict_at_scale_zero_only():
    model = build_model(_config(arch="mtl", head="deeplab", tasks=("depth", "normals")))
    with torch.no_grad():
        _assert_shapes(model(_image()), ("depth", "normals"), (0,))


def test_outputs_at_and_above_the_exchange_scale_ignore_the_exchange():
    model = build_model(_config()).eval()
    image = _image()
    with torch.no_grad():
        before = model(image)
        for fuse in model.exchange.fusions.values():
            fuse[1].bias.add_(1.0)
        after = model(image)
    for task in ("semseg", "depth"):
        assert torch.equal(before[task][1], after[task][1])
        assert not torch.allclose(before[task][0], after[task][0])


def test_exchange_uses_the_method_defaults_at_scale_one():
    model = build_model(_config(width=1.0, tasks=("semseg", "depth", "normals")))
    xtam = model.exchange.xtams["semseg_to_depth"]
    assert xtam.cross_attention.downsample == 4
    assert xtam.extractor[0].in_channels == 128
    assert model.exchange.fusions["depth"][0].in_channels == 256
    assert build_model(_config(attention_downsample=2)).exchange.xtams[
        "semseg_to_depth"].cross_attention.downsample == 2


def _gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    model.zero_grad()
    outputs = model(_image())
    weights = torch.Generator().manual_seed(1)
    loss = sum((out * torch.randn(out.shape, generator=weights)).sum()
               for by_scale in outputs.values() for out in by_scale.values())
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_gradients_reach_every_parameter_except_sxtam_before_alpha_moves():
    torch.manual_seed(0)
    model = build_model(_config(tasks=("semseg", "depth", "normals")))
    grads = _gradients(model)
    assert all(g is not None for g in grads.values())
    blocked = {n for n, g in grads.items() if not g.any()}
    # alpha = 0 multiplies the SxTAM output: its Q/K/V projections receive nothing yet.
    assert blocked == {n for n in grads if ".cross_attention." in n and not n.endswith("alpha")}
    # The projection's input channels fed by SxTAM (after the C/2 SA channels) carry zeros.
    for name, grad in grads.items():
        if name.startswith("exchange.") and name.endswith(".project.0.weight"):
            half = grad.shape[1] // 3
            assert grad[:, :half].any() and not grad[:, half:].any(), name
    for xtam in model.exchange.xtams.values():
        xtam.cross_attention.alpha.data.fill_(0.1)
    assert all(g.any() for g in _gradients(model).values())


def test_sxtam_only_exchange_is_inert_at_initialisation():
    """Zero input to the projection and ReLU'(0) = 0: no exchange parameter gets a gradient."""
    torch.manual_seed(0)
    model = build_model(_config(exchange_branches=("sxtam",)))
    grads = _gradients(model)
    exchange = {n for n in grads if n.startswith("exchange.")}
    assert exchange and all(not grads[n].any() for n in exchange)
    assert all(grads[n].any() for n in grads if n not in exchange)


def test_decode_hand_values():
    model = build_model(_config(tasks=TASK_NAMES, max_depth=80.0, min_depth=0.5))
    depth_m = torch.tensor([0.1, 2.0, 10.0, 1000.0]).view(1, 1, 2, 2)
    raw = {"semseg": {0: torch.arange(5.0).view(1, 5, 1, 1).expand(1, 5, 2, 2)},
           "depth": {0: encode_inverse_depth(depth_m)},
           "normals": {0: torch.tensor([3.0, 4.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)},
           "edges": {0: torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).expand(1, 2, 2, 2)}}
    decoded = model.decode(raw)
    torch.testing.assert_close(decoded["semseg"][0, :, 0, 0], torch.softmax(torch.arange(5.0), 0))
    torch.testing.assert_close(decoded["depth"].flatten(), torch.tensor([0.5, 2.0, 10.0, 80.0]))
    torch.testing.assert_close(decoded["normals"][0, :, 1, 1], torch.tensor([0.6, 0.8, 0.0]))
    torch.testing.assert_close(decoded["edges"], torch.full((1, 1, 2, 2), 0.75))
    compat = build_model(_config(tasks=("semseg", "depth"), paper_compat=True))
    torch.testing.assert_close(compat.decode({"depth": raw["depth"]})["depth"][0, 0, 0, 1],
                               torch.tensor(2.0))  # paper_compat changes scores, not outputs


def test_decode_of_network_outputs_is_in_range_and_resized():
    model = build_model(_config(tasks=TASK_NAMES, min_depth=0.1, max_depth=80.0)).eval()
    with torch.no_grad():
        decoded = model.decode(model(_image()), size=(48, 80))
    assert {k: tuple(v.shape) for k, v in decoded.items()} == {
        "semseg": (2, 5, 48, 80), "depth": (2, 1, 48, 80), "normals": (2, 3, 48, 80),
        "edges": (2, 1, 48, 80)}
    torch.testing.assert_close(decoded["normals"].norm(dim=1), torch.ones(2, 48, 80))
    torch.testing.assert_close(decoded["semseg"].sum(dim=1), torch.ones(2, 48, 80))
    assert 0.0 <= decoded["edges"].min() and decoded["edges"].max() <= 1.0
    assert 0.1 <= decoded["depth"].min() and decoded["depth"].max() <= 80.0


def test_input_normalisation_is_part_of_the_network():
    model = build_model(_config(input_mean=(0.5, 0.4, 0.3), input_std=(0.25, 0.2, 0.1)))
    normalised = model.normalize_input(torch.full((1, 3, 1, 1), 0.9))
    torch.testing.assert_close(normalised.flatten(), torch.tensor([1.6, 2.5, 6.0]))
    assert not any(k.startswith("input_") for k in model.state_dict())


def test_param_groups_split_backbone_from_the_rest():
    model = build_model(_config())
    groups = model.param_groups()
    backbone, heads = {id(p) for p in groups["backbone"]}, {id(p) for p in groups["heads"]}
    assert backbone == {id(p) for p in model.encoder.parameters()}
    assert not backbone & heads
    assert backbone | heads == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.exchange.parameters()} <= heads


def test_pretrained_weights_are_loaded_into_the_encoder(tmp_path, torchvision_state_dict):
    state = torchvision_state_dict("resnet18")
    path = str(tmp_path / "resnet18.pth")
    torch.save(state, path)
    model = build_model(_config(arch="stl", tasks=("depth",), width=1.0, pretrained=path))
    assert torch.equal(model.encoder.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])
    with pytest.raises(ValueError, match="shape-mismatched"):
        build_model(_config(arch="stl", tasks=("depth",), width=0.5, pretrained=path))


def test_invalid_configurations_are_rejected():
    with pytest.raises(ConfigError):
        build_model(_config(arch="densemtl", tasks=("depth",)))
    with pytest.raises(ValueError, match="exchange_scale"):
        build_model(_config(exchange_scale=0))
    with pytest.raises(ValueError, match="exchange_scale 4 has stride 8"):
        build_model(_config(dilation=(False, True, True), exchange_scale=4, output_scales=(0,)))


class _Flat(nn.Module):
    """Tracers flatten dict keys into the graph, so int scale keys must not reach them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        decoded = self.model.decode(outputs)
        return (*(t for by_scale in outputs.values() for t in by_scale.values()), *decoded.values())


def test_traces_without_data_dependent_control_flow():
    flat = _Flat(build_model(_config(tasks=("semseg", "depth", "normals"))).eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, not broken
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(flat, _image(batch=1), check_trace=False)
    other = _image(batch=1, seed=1)
    with torch.no_grad():
        for traced_out, eager_out in zip(traced(other), flat(other), strict=True):
            torch.testing.assert_close(traced_out, eager_out)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None,
                    reason="the onnx package is not installed")
def test_onnx_export_opset_17():
    import onnx

    flat = _Flat(build_model(_config(tasks=("semseg", "depth"))).eval())
    buffer = io.BytesIO()
    torch.onnx.export(flat, _image(batch=1), buffer, opset_version=17, dynamo=False)
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))


@pytest.mark.parametrize("head", ["unet_aspp", "deeplab"])
def test_a_disparity_head_can_start_at_a_given_depth(head):
    """``model.initial_depth``: a fresh disparity head predicts that depth everywhere (up to
    the small random weights), where the method's initialisation starts at a disparity of 0.5."""
    base = dict(arch="stl", tasks=("depth",), width=0.125, head=head, max_depth=20.0,
                depth_output="disparity", depth_units="relative")
    torch.manual_seed(0)
    started = build_model(ModelConfig(**base, initial_depth=1.5)).eval()
    torch.manual_seed(0)
    default = build_model(ModelConfig(**base)).eval()
    image = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        depth = started.decode(started(image))["depth"]
        depth_default = default.decode(default(image))["depth"]
    assert depth.median().item() == pytest.approx(1.5, rel=0.15)
    assert depth_default.median().item() == pytest.approx(1 / (0.05 + 0.5 * 9.95), rel=0.15)
