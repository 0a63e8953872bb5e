"""Pictures: mosaics, curves and PNG files, coloured by :mod:`densemtl_core.colormaps`.

All functions take numpy arrays at any resolution and HxWx3 uint8 RGB images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

def mosaic(rows: Sequence[Sequence[tuple[str, np.ndarray]]], tile_height: int | None = None
           ) -> np.ndarray:
    """Grid of captioned tiles: ``rows[r][c] = (caption, HxWx3 uint8)``.

    Tiles are resized to one height so inputs at different resolutions line up.
    """
    first = rows[0][0][1]
    height = tile_height or first.shape[0]
    caption_height = 14
    tiles: list[list[np.ndarray]] = []
    for row in rows:
        rendered = []
        for caption, image in row:
            scale = height / image.shape[0]
            width = max(1, round(image.shape[1] * scale))
            tile = Image.fromarray(image).resize((width, height), Image.NEAREST)
            canvas = Image.new("RGB", (width, height + caption_height), (255, 255, 255))
            canvas.paste(tile, (0, caption_height))
            ImageDraw.Draw(canvas).text((2, 1), caption, fill=(0, 0, 0))
            rendered.append(np.asarray(canvas))
        tiles.append(rendered)
    width = max(sum(t.shape[1] for t in row) + 2 * (len(row) - 1) for row in tiles)
    out = np.full((len(tiles) * (height + caption_height + 2), width, 3), 255, dtype=np.uint8)
    y = 0
    for row in tiles:
        x = 0
        for tile in row:
            out[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
            x += tile.shape[1] + 2
        y += height + caption_height + 2
    return out


def plot_curves(series: dict[str, Sequence[tuple[float, float]]], panel_size: tuple[int, int] =
                (240, 150)) -> np.ndarray:
    """Small multiples: one line plot per named series of (x, y) points, each with its own y range.

    Enough to see at a glance whether every task's loss goes down, without a plotting library.
    """
    width, height = panel_size
    margin = 28
    panels = []
    for name, points in series.items():
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        xs = np.array([p[0] for p in points], dtype=np.float64)
        ys = np.array([p[1] for p in points], dtype=np.float64)
        finite = np.isfinite(ys)
        xs, ys = xs[finite], ys[finite]
        draw.rectangle((margin, 14, width - 6, height - 16), outline=(160, 160, 160))
        if len(xs):
            x_lo, x_hi = xs.min(), max(xs.max(), xs.min() + 1e-9)
            y_lo, y_hi = ys.min(), max(ys.max(), ys.min() + 1e-9)
            px = margin + (xs - x_lo) / (x_hi - x_lo) * (width - 6 - margin)
            py = height - 16 - (ys - y_lo) / (y_hi - y_lo) * (height - 30)
            draw.line(list(zip(px.tolist(), py.tolist())), fill=(31, 119, 180), width=2)
            draw.text((2, 14), f"{y_hi:.3g}", fill=(0, 0, 0))
            draw.text((2, height - 26), f"{y_lo:.3g}", fill=(0, 0, 0))
            draw.text((margin, height - 13), f"{x_lo:g}", fill=(0, 0, 0))
            draw.text((width - 40, height - 13), f"{x_hi:g}", fill=(0, 0, 0))
        draw.text((margin, 1), name, fill=(0, 0, 0))
        panels.append(np.asarray(canvas))
    return np.concatenate(panels, axis=1) if panels else np.full((height, width, 3), 255, np.uint8)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
