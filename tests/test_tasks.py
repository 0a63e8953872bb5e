import pytest
import torch

from densemtl_core.config import TASK_NAMES, ModelConfig
from densemtl_core.depth_coding import decode_inverse_depth, encode_inverse_depth
from densemtl_core.tasks import TASKS

CFG = ModelConfig(num_classes=5, min_depth=0.1, max_depth=20.0)


def test_every_task_is_described_once():
    assert tuple(TASKS) == TASK_NAMES
    assert {t: TASKS[t].channels(CFG) for t in TASKS} == {
        "semseg": 5, "depth": 1, "normals": 3, "edges": 2}


def test_depth_decodes_the_regression_target_back_to_metres():
    depth = torch.tensor([0.5, 1.0, 3.25, 19.0]).reshape(1, 1, 2, 2)
    decoded = TASKS["depth"].decode(encode_inverse_depth(depth), CFG)
    torch.testing.assert_close(decoded, depth, rtol=1e-5, atol=1e-5)
    far = TASKS["depth"].decode(torch.tensor([[[[-3.0]]]]), CFG)
    assert far.item() == 20.0  # a non-positive code is clamped to the far limit


def test_paper_compat_decoding_is_099_m_short():
    code = encode_inverse_depth(torch.tensor([2.0, 10.0]))
    torch.testing.assert_close(decode_inverse_depth(code, paper_compat=True),
                               torch.tensor([1.01, 9.01]), rtol=1e-5, atol=1e-5)


def test_decoded_outputs_are_distributions_and_unit_vectors():
    torch.manual_seed(0)
    probs = TASKS["semseg"].decode(torch.randn(2, 5, 3, 4), CFG)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 3, 4))
    assert TASKS["semseg"].to_display(probs[0]).tolist() == probs[0].argmax(0).tolist()
    normals = TASKS["normals"].decode(torch.randn(2, 3, 3, 4), CFG)
    torch.testing.assert_close(normals.norm(dim=1), torch.ones(2, 3, 4))
    assert TASKS["normals"].to_display(normals[0]).shape == (3, 4, 3)
    edges = TASKS["edges"].decode(torch.tensor([[[[0.0]], [[0.0]]]]), CFG)
    assert edges.shape == (1, 1, 1, 1) and edges.item() == pytest.approx(0.5)
