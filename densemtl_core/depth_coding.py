"""The method's depth parametrisation: the network regresses normalised inverse depth.

d = 65536 / (100 z + 1) with z in metres (METHOD.md section 6.0). Everything the library returns
is metric depth; this module is the one place that converts.
"""
from __future__ import annotations

import torch

INVERSE_DEPTH_SCALE = 65536.0


def encode_inverse_depth(depth_m: torch.Tensor) -> torch.Tensor:
    """Metres -> normalised inverse depth (the regression target)."""
    return INVERSE_DEPTH_SCALE / (100.0 * depth_m + 1.0)


def decode_inverse_depth(code: torch.Tensor, paper_compat: bool = False) -> torch.Tensor:
    """Normalised inverse depth -> metres.

    The exact inverse is (65536 / d - 1) / 100. The released code decodes with 655.36 / d - 1,
    i.e. 0.99 m short of the truth (METHOD.md section 9.1); ``paper_compat`` reproduces that.
    Non-positive codes (possible from a linear head early in training) map to huge depths,
    which callers clamp to their depth range.
    """
    safe = code.clamp_min(1e-6)
    if paper_compat:
        return INVERSE_DEPTH_SCALE / 100.0 / safe - 1.0
    return (INVERSE_DEPTH_SCALE / safe - 1.0) / 100.0


def released_code_depth(depth_m: torch.Tensor) -> torch.Tensor:
    """Metres -> the depth the released code scores: its 655.36 / d - 1 decoding of the code d
    of ``depth_m``, which is the depth 0.99 m short (METHOD.md sections 4.2 and 9.1)."""
    return decode_inverse_depth(encode_inverse_depth(depth_m), paper_compat=True)
