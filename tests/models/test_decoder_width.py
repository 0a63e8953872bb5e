"""``model.decoder_width`` widens the task heads only, and the compute-matched naive MTL set-up
costs what DenseMTL SDNE costs, counted as the study report counts."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from densemtl_core.config import ConfigError, ModelConfig, load_config
from densemtl_core.models import build_model
from densemtl_core.models.flops import forward_flops

REPO = Path(__file__).resolve().parents[2]


def _shapes(module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def test_decoder_width_widens_heads_and_exchange_but_not_the_encoder():
    base = ModelConfig(tasks=("semseg", "depth"), width=0.25)
    narrow, wide = build_model(base), build_model(dataclasses.replace(base, decoder_width=2.0))
    assert _shapes(wide.encoder) == _shapes(narrow.encoder)
    for model, factor in ((narrow, 1), (wide, 2)):
        decoder = model.heads["depth"]
        assert [decoder.layers[str(i)].merge[1].out_channels for i in decoder.layer_ids] == \
            [factor * c for c in (64, 64, 32, 32, 16)]
        assert model.exchange.fusions["depth"][0].out_channels == factor * 32
    with pytest.raises(ConfigError, match="model.decoder_width must be positive"):
        build_model(ModelConfig(decoder_width=0.0))


def test_wide_naive_mtl_matches_densemtl_flops_within_five_percent():
    flops = {}
    for name in ("densemtl_sdne", "mtl_sdne", "mtl_wide_sdne"):
        config = load_config(REPO / f"config/train/synthetic_{name}.yaml")
        flops[name] = forward_flops(build_model(config.model).eval(), config.data.image_size)
    assert flops["mtl_wide_sdne"] / flops["densemtl_sdne"] == pytest.approx(1.0, abs=0.05)
    assert flops["densemtl_sdne"] / flops["mtl_sdne"] > 2  # the gap the wide heads close
