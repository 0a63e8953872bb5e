import numpy as np

from densemtl_core import colormaps, viz


def test_segmentation_palette_and_ignore_label():
    labels = np.array([[0, 1], [2, 250]])
    rgb = colormaps.colorize_segmentation(labels, [(10, 20, 30), (40, 50, 60), (70, 80, 90)])
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == [40, 50, 60]
    assert rgb[1, 1].tolist() == [0, 0, 0]


def test_depth_near_is_warmer_and_invalid_is_black():
    depth = np.array([[0.5, 5.0], [0.0, np.nan]], dtype=np.float32)
    rgb = colormaps.colorize_depth(depth, 0.1, 10.0)
    assert rgb[1, 0].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]
    assert rgb[0, 0].tolist() != rgb[0, 1].tolist()
    assert rgb[0, 0, 0] > rgb[0, 1, 0]  # nearer pixel further along the ramp (redder)


def test_normals_mapping():
    normals = np.array([[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], dtype=np.float32)
    rgb = colormaps.colorize_normals(normals)
    assert rgb[0, 0].tolist() == [128, 128, 0]
    assert rgb[0, 1].tolist() == [255, 128, 128]
    assert rgb[0, 2].tolist() == [0, 0, 0]


def test_edges_and_blend():
    edges = colormaps.colorize_edges(np.array([[0.0, 1.0]]))
    assert edges[0, 0].tolist() == [0, 0, 0] and edges[0, 1].tolist() == [255, 255, 255]
    mixed = colormaps.blend(np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 200, np.uint8), 0.25)
    assert mixed[0, 0].tolist() == [50, 50, 50]


def test_mosaic_lines_up_tiles_of_different_sizes():
    small = np.zeros((10, 20, 3), np.uint8)
    large = np.full((20, 20, 3), 255, np.uint8)
    grid = viz.mosaic([[("a", small), ("b", large)], [("c", small)]], tile_height=20)
    assert grid.dtype == np.uint8
    assert grid.shape[1] == 40 + 20 + 2  # 40 px (resized small) + 20 px + gap
    assert grid.shape[0] == 2 * (20 + 14 + 2)


def test_curves_draw_one_panel_per_series_and_skip_non_finite_points():
    image = viz.plot_curves({"loss": [(0, 3.0), (1, 2.0), (2, float("nan")), (3, 1.0)],
                             "metric": [(5, 0.5)]}, panel_size=(100, 60))
    assert image.shape == (60, 200, 3)
    left = image[:, :100]
    assert ((left[..., 2] > 150) & (left[..., 0] < 60)).any()  # the blue line was drawn
