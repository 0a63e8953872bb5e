import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densemtl_core.runtime.processing import (InvalidImageError, as_rgb, finish_outputs,
                                              prepare_batch, single_threaded)
from densemtl_core.tasks.upsampling import upsampled_argmax


def _image(height=6, width=8, channels=3, seed=0):
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_rgb_passes_through_unchanged():
    image = _image()
    np.testing.assert_array_equal(as_rgb(image), image)


@pytest.mark.parametrize("channels", [None, 1])
def test_grayscale_is_replicated_to_three_channels(channels):
    grey = _image(channels=channels)
    rgb = as_rgb(grey)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], grey.reshape(6, 8))


def test_rgba_drops_alpha_and_views_are_made_contiguous():
    rgba = _image(channels=4)
    np.testing.assert_array_equal(as_rgb(rgba), rgba[:, :, :3])
    bgr_view = _image()[:, :, ::-1]  # negative strides, as from an OpenCV BGR -> RGB flip
    converted = as_rgb(bgr_view)
    assert converted.flags.c_contiguous
    np.testing.assert_array_equal(converted, bgr_view)


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((6, 8, 3), np.float32), r"dtype uint8, got float32.*\* 255"),
    (np.zeros((6, 8, 3), np.uint16), "dtype uint8, got uint16"),
    (np.zeros((2, 6, 8, 3), np.uint8), r"shape HxW.*got \(2, 6, 8, 3\)"),
    (np.zeros((6, 8, 2), np.uint8), r"got \(6, 8, 2\)"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
    (np.zeros((6, 0), np.uint8), "empty"),
    ([[0, 1], [2, 3]], "numpy array, got list"),
])
def test_bad_images_are_rejected_with_the_reason(image, message):
    with pytest.raises(InvalidImageError, match=message):
        as_rgb(image)


def test_prepare_batch_scales_to_unit_range_without_resizing_at_network_size():
    image = _image(64, 80)
    batch = prepare_batch([image, image], (64, 80))
    assert batch.shape == (2, 3, 64, 80) and batch.dtype == torch.float32
    expected = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(batch[1], expected)


@pytest.mark.parametrize("size", [(37, 53), (480, 640)])
def test_prepare_batch_resizes_like_the_training_pipeline(size):
    image = _image(*size, seed=1)
    batch = prepare_batch([image], (64, 80))
    reference = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255,
                              size=(64, 80), mode="bilinear", align_corners=False, antialias=True)
    assert batch.shape == (1, 3, 64, 80)
    assert (batch - reference).abs().max() <= 1.0 / 255 + 1e-6  # uint8 rounding only


def _smooth_scores(classes=6, size=(32, 40), seed=0):
    coarse = torch.randn(1, classes, 4, 5, generator=torch.Generator().manual_seed(seed)) * 4
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0].softmax(0)


@pytest.mark.parametrize("size", [(32, 40), (96, 120), (100, 131), (17, 23), (32, 97)])
def test_upsampled_argmax_equals_argmax_of_interpolated_scores(size):
    scores = _smooth_scores()
    interpolated = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    top2 = interpolated.topk(2, dim=0).values
    decided = (top2[0] - top2[1]) > 1e-6  # rounding may only matter at exact ties
    labels = upsampled_argmax(scores, size)
    assert labels.shape == size
    assert torch.equal(labels[decided], interpolated.argmax(0)[decided])
    assert decided.float().mean() > 0.99


def test_upsampled_argmax_is_not_nearest_upsampling_of_low_resolution_labels():
    scores = _smooth_scores()
    nearest = F.interpolate(scores.argmax(0)[None, None].float(), size=(96, 120),
                            mode="nearest")[0, 0].long()
    assert not torch.equal(upsampled_argmax(scores, (96, 120)), nearest)


def _decoded(classes=5, size=(16, 20), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"semseg": torch.randn(classes, *size, generator=generator).softmax(0),
            "depth": torch.rand(1, *size, generator=generator) * 9 + 1,
            "normals": F.normalize(torch.randn(3, *size, generator=generator), dim=0),
            "edges": torch.rand(1, *size, generator=generator)}


@pytest.mark.parametrize("size", [(16, 20), (37, 53), (48, 64)])
def test_finished_outputs_have_the_input_size_and_valid_values(size):
    decoded = _decoded()
    fields = finish_outputs(decoded, size, with_probabilities=True)
    assert set(fields) == {"segmentation", "probabilities", "depth", "normals", "edges"}
    assert fields["segmentation"].shape == size and fields["segmentation"].dtype == np.uint8
    assert fields["probabilities"].shape == (5, *size)
    np.testing.assert_allclose(fields["probabilities"].sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(fields["segmentation"], fields["probabilities"].argmax(0))
    assert fields["depth"].shape == size and fields["depth"].dtype == np.float32
    assert fields["normals"].shape == (*size, 3)
    np.testing.assert_allclose(np.linalg.norm(fields["normals"], axis=-1), 1.0, atol=1e-5)
    assert fields["edges"].shape == size and 0 <= fields["edges"].min() <= fields["edges"].max() <= 1


def test_depth_is_interpolated_as_inverse_depth():
    depth = torch.tensor([[[1.0, 3.0]]])
    finished = finish_outputs({"depth": depth}, (1, 4))["depth"]
    expected = 1.0 / F.interpolate((1.0 / depth)[None], size=(1, 4), mode="bilinear",
                                   align_corners=False)[0, 0]
    np.testing.assert_allclose(finished, expected.numpy(), rtol=1e-6)
    assert finished[0, 1] == pytest.approx(1.0 / (0.75 + 0.25 / 3.0))  # not 1.5 m


def test_probabilities_only_on_request_and_many_classes_use_uint16():
    scores = _decoded(classes=300, size=(8, 10))["semseg"]
    fields = finish_outputs({"semseg": scores}, (8, 10))
    assert set(fields) == {"segmentation"}
    assert fields["segmentation"].dtype == np.uint16
    assert fields["segmentation"].max() > 255
    np.testing.assert_array_equal(fields["segmentation"], scores.argmax(0).numpy())


def test_finished_outputs_never_share_memory_with_the_network_outputs():
    decoded = _decoded()
    fields = finish_outputs(decoded, (16, 20), with_probabilities=True)
    copies = {name: value.copy() for name, value in fields.items()}
    for value in decoded.values():
        value.fill_(0.5)  # what a backend reusing its output buffers does on the next run
    for name, value in fields.items():
        np.testing.assert_array_equal(value, copies[name])


def test_single_threaded_restores_the_thread_count_even_after_an_error():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), single_threaded():
            raise RuntimeError("failed inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_single_threaded_in_one_thread_leaves_other_threads_alone():
    """The node's pipeline runs finishing in one thread while the network runs in another."""
    seen = []

    def finishing():
        with single_threaded():
            seen.append(torch.get_num_threads())
    before = torch.get_num_threads()
    thread = threading.Thread(target=finishing)
    thread.start()
    thread.join(5)
    assert seen == [1] and torch.get_num_threads() == before
