"""Procedural indoor scenes whose labels for every task are exact and mutually consistent.

The public datasets cannot be shipped with the project, yet training, tests, the demo and the
sample bag all need data. Each scene is a closed room (floor, ceiling, four walls) furnished with
cabinets, tables, balls, pillars, door and window panels and small clutter (world z up), ray cast
in vectorised numpy: one ray per pixel, each primitive intersected in one step with all the rays of
its screen rectangle.

The scenes are built so that the tasks inform one another: class boundaries coincide with depth
and normal discontinuities, classes follow from geometry (the floor faces up, walls are vertical,
balls are curved, clutter is small), while colour alone decides little (each scene draws its
textures from one small random palette shared by all classes). Doors and windows are coplanar with
their wall, so only appearance and outline, never depth or normals, separate them from it.

Ground-truth rules:

* depth: the z coordinate in the camera optical frame (x right, y down, z forward), not the ray
  length; 0 (invalid) beyond ``max_depth`` if one is given, otherwise every pixel is valid;
* normals: the analytic surface normal rotated into the optical frame and turned to face the
  camera (n . ray < 0); zero where depth is invalid;
* edges: two 4-neighbouring pixels form a discontinuity when their classes differ, or they lie on
  different primitives and their depths differ by more than ``EDGE_DEPTH_JUMP`` relative to the
  nearer one, or their normals differ by more than ``EDGE_NORMAL_ANGLE_DEG``; of each such pair
  the nearer pixel (the occluding side; the first of the pair on a tie) is marked, which keeps
  edges one pixel wide and on the foreground object.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..recordings.encodings import compress_rgb

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "floor", "wall", "ceiling", "furniture", "ball", "pillar", "door_window", "clutter")
SYNTHETIC_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (190, 153, 153), (70, 130, 180), (220, 160, 30),
    (220, 20, 60), (107, 142, 35), (0, 200, 255), (250, 240, 60))
FLOOR, WALL, CEILING, FURNITURE, BALL, PILLAR, DOOR_WINDOW, CLUTTER = range(len(SYNTHETIC_CLASSES))

SPLITS: tuple[str, ...] = ("train", "val", "test")
Sample = dict[str, torch.Tensor]
EDGE_DEPTH_JUMP = 0.05
EDGE_NORMAL_ANGLE_DEG = 30.0

_CAMERA_CLEARANCE = 0.45
"""Minimum horizontal gap (m) between the camera path and any object standing on the floor."""
_INDEX_RANGE = 2 ** 32


# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------

def _rotate_xy(x, y, cos, sin):
    """Rotate (x, y) about the vertical axis by the angle with this cosine and sine (pass -sin
    for the inverse); works on floats and arrays alike."""
    return cos * x - sin * y, sin * x + cos * y


@dataclass(frozen=True)
class _Textures:
    """Per-surface procedural texture parameters, indexed by surface id."""

    kind: np.ndarray       # (S,) int index into the domain's patterns
    color_a: np.ndarray    # (S, 3) float in [0, 1]
    color_b: np.ndarray    # (S, 3)
    scale: np.ndarray      # (S,) metres per pattern period
    direction: np.ndarray  # (S, 3, 3) unit vectors: stripe / gradient axis and the three waves
    phase: np.ndarray      # (S, 3)


@dataclass(frozen=True)
class _Scene:
    """Geometry, materials and lights of one room; the camera is separate so it can move."""

    box_centre: np.ndarray     # (B, 3) box 0 is the room [0, Lx] x [0, Ly] x [0, Lz] (from inside)
    box_half: np.ndarray       # (B, 3)
    box_yaw: np.ndarray        # (B,)
    box_faces: np.ndarray      # (B, 6) surface of face -x, +x, -y, +y, -z, +z
    sphere_centre: np.ndarray  # (P, 3)
    sphere_radius: np.ndarray  # (P,)
    sphere_surface: np.ndarray  # (P,)
    cyl_base: np.ndarray       # (C, 3) centre of the bottom cap; cylinders are vertical
    cyl_radius: np.ndarray     # (C,)
    cyl_height: np.ndarray     # (C,)
    cyl_surface: np.ndarray    # (C,)
    panel_face: np.ndarray     # (D,) room face (0..3) the door / window panel lies on
    panel_rect: np.ndarray     # (D, 4) u0, u1, z0, z1; u: the world x or y running along the wall
    panel_surface: np.ndarray  # (D,)
    surface_class: np.ndarray  # (S,) class id of each surface
    textures: _Textures
    light_pos: np.ndarray      # (L, 3) point lights
    light_power: np.ndarray    # (L,)
    ambient: float
    noise_sigma: float


@dataclass(frozen=True)
class _Camera:
    intrinsics: np.ndarray  # (3, 3)
    pose: np.ndarray        # (4, 4) camera-to-world, optical frame


class _SceneBuilder:
    """Accumulates surfaces and primitives while a scene is sampled."""

    def __init__(self, rng: np.random.Generator, room: np.ndarray, palette: np.ndarray,
                 domain: RenderDomain):
        self.rng, self.room, self.palette, self.domain = rng, room, palette, domain
        self.surface_class: list[int] = []
        self.texture_rows: list[tuple] = []
        self.boxes: list[tuple] = []
        self.spheres: list[tuple] = []
        self.cylinders: list[tuple] = []
        self.panels: list[tuple] = []
        self.footprints: list[tuple[float, float, float]] = []
        self.tops: list[tuple[np.ndarray, np.ndarray, float, float]] = []

    def surface(self, class_id: int) -> int:
        """A new surface of ``class_id`` with a random texture from the scene palette."""
        rng = self.rng
        first, second = rng.integers(len(self.palette), size=2)
        directions = rng.normal(size=(3, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        low, high = self.domain.texture_scale
        self.texture_rows.append((
            int(rng.integers(len(self.domain.patterns))), self.palette[first], self.palette[second],
            float(np.exp(rng.uniform(np.log(low), np.log(high)))), directions,
            rng.uniform(0.0, 2 * np.pi, size=3)))
        self.surface_class.append(class_id)
        return len(self.surface_class) - 1

    def box(self, centre: Sequence[float], half: Sequence[float], yaw: float,
            surface: int | list[int]) -> None:
        """An oriented box with one surface, or one per face (-x, +x, -y, +y, -z, +z)."""
        faces = [surface] * 6 if isinstance(surface, int) else surface
        self.boxes.append((np.asarray(centre, float), np.asarray(half, float), yaw, faces))

    def build(self, lights: np.ndarray, power: np.ndarray, ambient: float, noise: float) -> _Scene:
        def stack(rows: list[tuple], index: int, shape: tuple[int, ...],
                  dtype: type = np.float32) -> np.ndarray:
            return np.array([r[index] for r in rows], dtype=dtype).reshape((len(rows),) + shape)

        kinds, col_a, col_b, scales, dirs, phases = zip(*self.texture_rows)
        return _Scene(
            box_centre=stack(self.boxes, 0, (3,)), box_half=stack(self.boxes, 1, (3,)),
            box_yaw=stack(self.boxes, 2, ()), box_faces=stack(self.boxes, 3, (6,), np.int64),
            sphere_centre=stack(self.spheres, 0, (3,)), sphere_radius=stack(self.spheres, 1, ()),
            sphere_surface=stack(self.spheres, 2, (), np.int64),
            cyl_base=stack(self.cylinders, 0, (3,)), cyl_radius=stack(self.cylinders, 1, ()),
            cyl_height=stack(self.cylinders, 2, ()),
            cyl_surface=stack(self.cylinders, 3, (), np.int64),
            panel_face=stack(self.panels, 0, (), np.int64), panel_rect=stack(self.panels, 1, (4,)),
            panel_surface=stack(self.panels, 2, (), np.int64),
            surface_class=np.array(self.surface_class, dtype=np.uint8),
            textures=_Textures(np.array(kinds), *(np.array(values, dtype=np.float32) for values in
                                                  (col_a, col_b, scales, dirs, phases))),
            light_pos=lights.astype(np.float32), light_power=power.astype(np.float32),
            ambient=ambient, noise_sigma=noise)


def _sample_scene(rng: np.random.Generator, room: np.ndarray, keep_clear: np.ndarray,
                  domain: RenderDomain) -> _Scene:
    """Furnish ``room`` at random, keeping every floor object away from the ``keep_clear`` (K, 2)
    camera positions so that no camera ever starts inside an object. Every domain makes the
    same draws, so one seed gives the same layout in all of them."""
    palette = rng.uniform(*domain.palette_range, size=(int(rng.integers(3, 7)), 3))
    # Saturation 1 leaves the colours bit for bit (x * 1 + m * 0 == x).
    saturation = domain.palette_saturation
    palette = palette * saturation + palette.mean(axis=1, keepdims=True) * (1.0 - saturation)
    scene = _SceneBuilder(rng, room, palette, domain)
    room_faces = [scene.surface(c) for c in (WALL, WALL, WALL, WALL, FLOOR, CEILING)]
    scene.box(room / 2, room / 2, 0.0, room_faces)
    _add_panels(scene)
    for _ in range(int(rng.integers(2, 6))):
        _add_furniture(scene, keep_clear)
    for _ in range(int(rng.integers(0, 3))):
        _add_pillar(scene, keep_clear)
    for _ in range(int(rng.integers(0, 4))):
        radius = rng.uniform(0.12, 0.4)
        _add_on_support(scene, keep_clear, BALL, "sphere", radius, 2 * radius)
    for _ in range(int(rng.integers(3, 9))):
        shape = ("box", "sphere", "cylinder")[int(rng.integers(3))]
        _add_on_support(scene, keep_clear, CLUTTER, shape, rng.uniform(0.04, 0.13),
                        rng.uniform(0.08, 0.3))
    count = int(rng.integers(1, 3))
    lights = np.column_stack([rng.uniform(0.3, room[0] - 0.3, count),
                              rng.uniform(0.3, room[1] - 0.3, count),
                              np.full(count, room[2] - 0.25)])
    power = rng.uniform(*domain.light_power, count) / math.sqrt(count)
    return scene.build(lights, power, float(rng.uniform(*domain.ambient)),
                       float(rng.uniform(*domain.noise_sigma)))


def _add_panels(scene: _SceneBuilder) -> None:
    """One to three doors or windows, each a rectangle lying in its wall's plane."""
    rng, room = scene.rng, scene.room
    for _ in range(int(rng.integers(1, 4))):
        face = int(rng.integers(4))
        wall_length = room[1] if face < 2 else room[0]
        if rng.random() < 0.5:
            width, z0, z1 = rng.uniform(0.75, 1.0), 0.0, rng.uniform(1.9, 2.15)
        else:
            width, z0 = rng.uniform(0.6, 1.4), rng.uniform(0.8, 1.1)
            z1 = z0 + rng.uniform(0.6, 1.2)
        u0 = rng.uniform(0.15, wall_length - width - 0.15)
        overlaps = any(f == face and u0 < r[1] + 0.1 and r[0] < u0 + width + 0.1
                       for f, r, _ in scene.panels)
        if not overlaps:
            rect = (u0, u0 + width, z0, min(z1, room[2] - 0.1))
            scene.panels.append((face, rect, scene.surface(DOOR_WINDOW)))


def _place_on_floor(scene: _SceneBuilder, keep_clear: np.ndarray, radius: float,
                    attempts: int = 60) -> tuple[float, float] | None:
    """A free floor position for an object whose footprint fits in a circle of ``radius``."""
    rng, room = scene.rng, scene.room
    for _ in range(attempts):
        x = rng.uniform(radius + 0.05, room[0] - radius - 0.05)
        y = rng.uniform(radius + 0.05, room[1] - radius - 0.05)
        camera_gap = np.min(np.hypot(keep_clear[:, 0] - x, keep_clear[:, 1] - y)) - radius
        if camera_gap < _CAMERA_CLEARANCE:
            continue
        if all(math.hypot(x - fx, y - fy) > radius + fr + 0.05 for fx, fy, fr in scene.footprints):
            scene.footprints.append((x, y, radius))
            return x, y
    return None


def _add_furniture(scene: _SceneBuilder, keep_clear: np.ndarray) -> None:
    """A cabinet (one box) or a table (a top on four legs); both offer their top as a support."""
    rng = scene.rng
    is_table = rng.random() < 0.5
    half = np.array([rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.5),
                     rng.uniform(0.35, 0.4) if is_table else rng.uniform(0.2, 0.9)])
    yaw = float(rng.integers(4) * np.pi / 2 if rng.random() < 0.5 else rng.uniform(0, np.pi))
    place = _place_on_floor(scene, keep_clear, float(np.hypot(half[0], half[1])))
    if place is None:
        return
    surface = scene.surface(FURNITURE)
    height = 2 * half[2]
    if is_table:
        thickness = 0.04
        scene.box((*place, height - thickness / 2), (half[0], half[1], thickness / 2), yaw, surface)
        leg = (height - thickness) / 2
        for sx in (-1, 1):
            for sy in (-1, 1):
                dx, dy = _rotate_xy(sx * (half[0] - 0.06), sy * (half[1] - 0.06),
                                    math.cos(yaw), math.sin(yaw))
                scene.box((place[0] + dx, place[1] + dy, leg), (0.025, 0.025, leg), yaw, surface)
    else:
        scene.box((*place, half[2]), half, yaw, surface)
    scene.tops.append((np.array(place), half[:2], yaw, height))


def _add_pillar(scene: _SceneBuilder, keep_clear: np.ndarray) -> None:
    """A vertical cylinder, floor to ceiling or a shorter column."""
    rng = scene.rng
    radius = rng.uniform(0.1, 0.35)
    place = _place_on_floor(scene, keep_clear, radius)
    if place is not None:
        height = scene.room[2] if rng.random() < 0.5 else rng.uniform(0.6, 2.0)
        scene.cylinders.append((np.array([*place, 0.0]), radius, height, scene.surface(PILLAR)))


def _add_on_support(scene: _SceneBuilder, keep_clear: np.ndarray, class_id: int, shape: str,
                    radius: float, height: float) -> None:
    """Put a sphere, box or cylinder on a furniture top (half of the time, when one leaves room
    below the ceiling) or on the floor; ``radius`` bounds its footprint and ``height`` is its
    vertical extent."""
    rng = scene.rng
    tops = [top for top in scene.tops if top[3] + height < scene.room[2] - 0.1]
    if tops and rng.random() < 0.5:
        centre, half, yaw, base = tops[int(rng.integers(len(tops)))]
        lx, ly = rng.uniform(-1, 1, 2) * np.maximum(half - radius, 0.0)
        dx, dy = _rotate_xy(lx, ly, math.cos(yaw), math.sin(yaw))
        x, y = centre[0] + dx, centre[1] + dy
    else:
        place = _place_on_floor(scene, keep_clear, radius)
        if place is None:
            return
        (x, y), base = place, 0.0
    surface = scene.surface(class_id)
    if shape == "sphere":
        scene.spheres.append((np.array([x, y, base + radius]), radius, surface))
    elif shape == "cylinder":
        scene.cylinders.append((np.array([x, y, base]), radius, height, surface))
    else:
        half = radius / math.sqrt(2)
        scene.box((x, y, base + height / 2), (half, half, height / 2), float(rng.uniform(0, np.pi)),
                  surface)


# ----------------------------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------------------------

_BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
"""Optical axes (x right, y down, z forward) expressed in a body frame (x forward, y left, z up)."""


def _world_from_optical(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation of an optical frame whose viewing direction has heading ``yaw`` about world z,
    elevation ``pitch`` (positive looks up) and ``roll`` about the viewing axis."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, -sp], [0.0, 1.0, 0.0], [sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx @ _BODY_FROM_OPTICAL


def _pose(position: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _world_from_optical(yaw, pitch, roll)
    pose[:3, 3] = position
    return pose


def _intrinsics(rng: np.random.Generator, size: tuple[int, int],
                fov_range: tuple[float, float]) -> np.ndarray:
    """Square pixels, horizontal field of view in ``fov_range`` degrees, principal point near the
    centre. The draws do not depend on ``size``, so one seed gives the same view at any
    resolution."""
    height, width = size
    fov = math.radians(rng.uniform(*fov_range))
    offset = rng.uniform(-0.03, 0.03, size=2)
    focal = (width / 2) / math.tan(fov / 2)
    return np.array([[focal, 0.0, (width - 1) / 2 + offset[0] * width],
                     [0.0, focal, (height - 1) / 2 + offset[1] * height],
                     [0.0, 0.0, 1.0]])


def _sample_room(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(4.0, 8.0), rng.uniform(4.0, 8.0), rng.uniform(2.5, 3.2)])


def _sample_view(rng: np.random.Generator, room: np.ndarray, height: tuple[float, float]
                 ) -> tuple[np.ndarray, float, float, float]:
    """A camera at a height in ``height`` metres looking roughly towards the middle of the room,
    slightly downwards."""
    position = np.array([rng.uniform(0.7, room[0] - 0.7), rng.uniform(0.7, room[1] - 0.7),
                         rng.uniform(*height)])
    to_centre = room[:2] / 2 - position[:2]
    yaw = math.atan2(to_centre[1], to_centre[0]) + math.radians(rng.uniform(-60.0, 60.0))
    pitch, roll = math.radians(rng.uniform(-20.0, 5.0)), math.radians(rng.uniform(-4.0, 4.0))
    return position, yaw, pitch, roll


# ----------------------------------------------------------------------------------------------
# Ray casting
# ----------------------------------------------------------------------------------------------

def _hit_box(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray, half: np.ndarray,
             yaw: float, from_inside: bool = False) -> np.ndarray:
    """Ray parameter of the visible hit on a yaw-rotated box (slab test), inf on a miss. Seen
    from inside (the room) the visible hit is where the ray leaves the box."""
    cos, sin = math.cos(yaw), math.sin(yaw)
    rx, ry, rz = (origin - centre).tolist()  # Python floats keep the per-ray maths in float32
    local_origin = (*_rotate_xy(rx, ry, cos, -sin), rz)
    local_dirs = (*_rotate_xy(dirs[:, 0], dirs[:, 1], cos, -sin), dirs[:, 2])
    t_near, t_far = -np.inf, np.inf
    for start, extent, direction in zip(local_origin, half.tolist(), local_dirs):
        low = (-extent - start) / direction
        high = (extent - start) / direction
        t_near = np.maximum(t_near, np.minimum(low, high))
        t_far = np.minimum(t_far, np.maximum(low, high))
    if from_inside:
        return t_far
    return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)


def _hit_sphere(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray,
                radius: float) -> np.ndarray:
    """Nearest hit on a sphere the camera is outside of, inf on a miss."""
    rx, ry, rz = (origin - centre).tolist()
    half_b = rx * dirs[:, 0] + ry * dirs[:, 1] + rz * dirs[:, 2]
    a = np.einsum("nk,nk->n", dirs, dirs)
    disc = half_b ** 2 - a * (rx ** 2 + ry ** 2 + rz ** 2 - radius ** 2)
    t = (-half_b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc > 0) & (t > 0), t, np.inf)


def _hit_cylinder(origin: np.ndarray, dirs: np.ndarray, base: np.ndarray, radius: float,
                  height: float) -> np.ndarray:
    """Nearest hit on a closed vertical cylinder (side or caps) the camera is outside of."""
    rx, ry, rz = (origin - base).tolist()
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    a = dx ** 2 + dy ** 2
    half_b = rx * dx + ry * dy
    disc = half_b ** 2 - a * (rx ** 2 + ry ** 2 - radius ** 2)
    t_side = (-half_b - np.sqrt(np.maximum(disc, 0.0))) / a
    z_side = rz + t_side * dz
    t = np.where((disc > 0) & (t_side > 0) & (z_side >= 0) & (z_side <= height), t_side, np.inf)
    for cap in (0.0, height):
        t_cap = (cap - rz) / dz
        on_cap = (rx + t_cap * dx) ** 2 + (ry + t_cap * dy) ** 2 <= radius ** 2
        t = np.where(on_cap & (t_cap > 0) & (t_cap < t), t_cap, t)
    return t


@dataclass(frozen=True)
class _Primitive:
    """One solid to ray cast: its hit function and the corners of a box enclosing it."""

    hit: Callable[[np.ndarray, np.ndarray], np.ndarray]
    corners: np.ndarray  # (8, 3) world frame


def _primitives(scene: _Scene) -> list[_Primitive]:
    """The scene's solids in primitive-row order: boxes (the room first), spheres, cylinders."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    solids = []
    for centre, half, yaw in zip(scene.box_centre, scene.box_half, scene.box_yaw):
        local = signs * half
        corners = centre + np.column_stack(
            [*_rotate_xy(local[:, 0], local[:, 1], math.cos(yaw), math.sin(yaw)), local[:, 2]])
        solids.append(_Primitive(partial(_hit_box, centre=centre, half=half, yaw=float(yaw),
                                         from_inside=not solids), corners))
    for centre, radius in zip(scene.sphere_centre, scene.sphere_radius):
        solids.append(_Primitive(partial(_hit_sphere, centre=centre, radius=float(radius)),
                                 centre + signs * radius))
    for base, radius, height in zip(scene.cyl_base, scene.cyl_radius, scene.cyl_height):
        corners = base + (signs + [0, 0, 1]) * [radius, radius, height / 2]
        solids.append(_Primitive(partial(_hit_cylinder, base=base, radius=float(radius),
                                         height=float(height)), corners))
    return solids


def _screen_rects(corners: np.ndarray, camera: _Camera, size: tuple[int, int]) -> np.ndarray:
    """(M, 4) pixel rows [r0, r1) and columns [c0, c1) that can see each enclosing box (one pixel
    of margin covers sub-pixel ray offsets); the whole image when a box reaches behind the
    camera, nothing when it lies entirely behind."""
    height, width = size
    optical = (corners - camera.pose[:3, 3]) @ camera.pose[:3, :3]
    depth = np.maximum(optical[..., 2], 1e-6)
    k = camera.intrinsics
    u = k[0, 0] * optical[..., 0] / depth + k[0, 2]
    v = k[1, 1] * optical[..., 1] / depth + k[1, 2]
    rects = np.column_stack([np.floor(v.min(1)) - 1, np.ceil(v.max(1)) + 2,
                             np.floor(u.min(1)) - 1, np.ceil(u.max(1)) + 2])
    rects = np.clip(rects, 0, [height, height, width, width]).astype(np.int64)
    straddles = (optical[..., 2] <= 1e-3).any(axis=1)
    rects[straddles] = [0, height, 0, width]
    rects[(optical[..., 2] <= 0).all(axis=1)] = 0
    return rects


@dataclass(frozen=True)
class _Hits:
    depth: np.ndarray        # (N,) ray parameter = optical z, as rays have unit optical z
    primitive: np.ndarray    # (N,) row of the hit primitive (boxes, then spheres, then cylinders)
    surface: np.ndarray      # (N,) surface id (panels already applied)
    normal: np.ndarray       # (N, 3) world-frame unit normal facing the camera
    point: np.ndarray        # (N, 3) world-frame hit point
    local: np.ndarray        # (N, 3) texture coordinates in the primitive's own frame


def _nearest_hits(primitives: list[_Primitive], camera: _Camera, size: tuple[int, int],
                  dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter and primitive row of the nearest hit of every ray.

    Like a z-buffer, each solid tests only the rays inside its screen rectangle and keeps the
    pixels where it is nearer than what was found so far (the earlier solid wins a tie).
    """
    height, width = size
    origin = camera.pose[:3, 3]
    grid = dirs.reshape(height, width, 3)
    t_map = np.full((height, width), np.inf, dtype=np.float32)
    primitive_map = np.zeros((height, width), dtype=np.int64)
    rects = _screen_rects(np.array([solid.corners for solid in primitives]), camera, size)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for row, (solid, (r0, r1, c0, c1)) in enumerate(zip(primitives, rects)):
            if r0 >= r1 or c0 >= c1:
                continue
            t = solid.hit(origin, grid[r0:r1, c0:c1].reshape(-1, 3)).reshape(r1 - r0, c1 - c0)
            nearer = t < t_map[r0:r1, c0:c1]
            t_map[r0:r1, c0:c1][nearer] = t[nearer]
            primitive_map[r0:r1, c0:c1][nearer] = row
    return t_map.reshape(-1), primitive_map.reshape(-1)


def _box_surfaces(scene: _Scene, box: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, ...]:
    """Normal, box-frame coordinates and surface of hits on boxes: the face is the axis along
    which the hit lies furthest out relative to the half extent."""
    cos, sin = np.cos(scene.box_yaw[box]), np.sin(scene.box_yaw[box])
    local = point - scene.box_centre[box]
    local[:, 0], local[:, 1] = _rotate_xy(local[:, 0], local[:, 1], cos, -sin)
    axis = np.argmax(np.abs(local) / scene.box_half[box], axis=1)
    positive = np.take_along_axis(local, axis[:, None], axis=1)[:, 0] > 0
    sign = np.where(positive, 1.0, -1.0).astype(np.float32)
    normal = np.zeros_like(local)
    normal[:, 0] = np.where(axis == 0, cos * sign, np.where(axis == 1, -sin * sign, 0.0))
    normal[:, 1] = np.where(axis == 0, sin * sign, np.where(axis == 1, cos * sign, 0.0))
    normal[:, 2] = np.where(axis == 2, sign, 0.0)
    return normal, local, scene.box_faces[box, 2 * axis + positive]


def _sphere_surfaces(scene: _Scene, sphere: np.ndarray,
                     point: np.ndarray) -> tuple[np.ndarray, ...]:
    local = point - scene.sphere_centre[sphere]
    return _unit(local), local, scene.sphere_surface[sphere]


def _cylinder_surfaces(scene: _Scene, cylinder: np.ndarray,
                       point: np.ndarray) -> tuple[np.ndarray, ...]:
    """Hits within a millimetre of a cap plane are on the cap, the others on the side."""
    local = point - scene.cyl_base[cylinder]
    on_cap = (local[:, 2] < 1e-3) | (local[:, 2] > scene.cyl_height[cylinder] - 1e-3)
    normal = local.copy()
    normal[:, 2] = 0.0
    normal[on_cap] = (0.0, 0.0, 1.0)
    return _unit(normal), local, scene.cyl_surface[cylinder]


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (curved normals are computed from float32 hit points a hair
    off the surface, so dividing by the radius is not exact enough)."""
    return vectors / np.sqrt(np.einsum("nk,nk->n", vectors, vectors))[:, None]


def _cast(primitives: list[_Primitive], scene: _Scene, camera: _Camera, size: tuple[int, int],
          dirs: np.ndarray) -> _Hits:
    """Intersect the rays ``origin + t * dirs`` (one per pixel, row-major) with the scene."""
    t, primitive = _nearest_hits(primitives, camera, size, dirs)
    point = camera.pose[:3, 3].astype(np.float32) + t[:, None] * dirs
    first_sphere = len(scene.box_yaw)
    first_cylinder = first_sphere + len(scene.sphere_radius)
    # Most pixels see boxes (the room is one): treat every pixel as a box hit first, which
    # avoids scattering the largest group, then overwrite the sphere and cylinder pixels.
    normal, local, surface = _box_surfaces(scene, np.minimum(primitive, first_sphere - 1), point)
    for surfaces, start, stop in ((_sphere_surfaces, first_sphere, first_cylinder),
                                  (_cylinder_surfaces, first_cylinder, len(primitives))):
        rows = np.flatnonzero((primitive >= start) & (primitive < stop))
        found = surfaces(scene, primitive[rows] - start, point[rows])
        normal[rows], local[rows], surface[rows] = found
    _apply_panels(scene, point, surface)
    normal[np.einsum("nk,nk->n", normal, dirs) > 0] *= -1.0
    return _Hits(t, primitive, surface, normal, point, local)


def _apply_panels(scene: _Scene, point: np.ndarray, surface: np.ndarray) -> None:
    """Re-label wall hits that fall inside a door or window rectangle (same plane, same depth)."""
    wall_surfaces = scene.box_faces[0, :4]
    panels = zip(scene.panel_face, scene.panel_rect, scene.panel_surface)
    for face, (u0, u1, z0, z1), panel in panels:
        u = point[:, 1] if face < 2 else point[:, 0]
        inside = (surface == wall_surfaces[face]) & (u >= u0) & (u <= u1)
        surface[inside & (point[:, 2] >= z0) & (point[:, 2] <= z1)] = panel


# ----------------------------------------------------------------------------------------------
# Appearance
# ----------------------------------------------------------------------------------------------

def _albedo(textures: _Textures, patterns: tuple[Callable | None, ...], surface: np.ndarray,
            local: np.ndarray) -> np.ndarray:
    """(N, 3) colour of each hit: a blend of the surface's two palette colours by its pattern
    (``textures.kind`` indexes ``patterns``)."""
    mix = np.zeros(len(surface), dtype=np.float32)
    kind = textures.kind[surface]
    for pattern, mixer in enumerate(patterns):
        rows = np.flatnonzero(kind == pattern)
        if len(rows) and mixer is not None:
            ids = surface[rows]
            mix[rows] = mixer(local[rows] / textures.scale[ids, None], textures.direction[ids],
                              textures.phase[ids])
    first, second = textures.color_a[surface], textures.color_b[surface]
    return first + mix[:, None] * (second - first)


def _checker(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return np.mod(np.floor(q).sum(axis=1), 2.0)


def _stripes(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    along = np.einsum("nk,nk->n", q, directions[:, 0])
    return (np.sin(2 * np.pi * along + phase[:, 0]) > 0).astype(np.float32)


def _waves(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Smooth noise: three plane waves at one, two and four times the base frequency."""
    total = np.zeros(len(q), dtype=np.float32)
    for octave in range(3):
        along = np.einsum("nk,nk->n", q, directions[:, octave]) * (2.0 ** octave)
        total += np.sin(2 * np.pi * along + phase[:, octave]) / (2.0 ** octave)
    return 0.5 + total / 3.5


def _gradient(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.3 * np.einsum("nk,nk->n", q, directions[:, 0]))


def _grid(q: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two pattern coordinates along the first two random axes of each surface."""
    return (np.einsum("nk,nk->n", q, directions[:, 0]),
            np.einsum("nk,nk->n", q, directions[:, 1]))


def _tiles(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Square tiles of the first colour separated by thin grout lines of the second."""
    a, b = _grid(q, directions)
    gap = np.minimum(np.abs(a - np.round(a)), np.abs(b - np.round(b)))
    return (gap < 0.06).astype(np.float32)


def _spots(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """A lattice of round dots of the second colour."""
    a, b = _grid(q, directions)
    return (np.hypot(a - np.round(a), b - np.round(b)) < 0.28).astype(np.float32)


def _grain(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Wood-like grain: fine, smoothly warped stripes."""
    a, b = _grid(q, directions)
    warp = 0.6 * np.sin(2 * np.pi * b + phase[:, 1])
    return 0.5 + 0.5 * np.sin(2 * np.pi * (6.0 * a + warp) + phase[:, 0])


def _speckle(q: np.ndarray, directions: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Granite-like speckle: a hashed random value per small cell."""
    cells = np.floor(8.0 * q) @ np.array([12.9898, 78.233, 37.719], dtype=np.float32)
    return np.mod(np.sin(cells + phase[:, 2]) * 43758.547, 1.0)


_PATTERNS: tuple[Callable | None, ...] = (None, _checker, _stripes, _waves, _gradient)
"""Texture kinds of the source domain by index; plain (None) keeps the first colour."""
_SHIFTED_PATTERNS: tuple[Callable | None, ...] = (None, _tiles, _spots, _grain, _speckle)
"""Texture families of the shifted domain, none shared with the source apart from plain."""

_KELVIN = np.array([2500.0, 4000.0, 5500.0, 6500.0, 8000.0])
_KELVIN_RGB = np.array([[1.0, 0.62, 0.27], [1.0, 0.81, 0.64], [1.0, 0.93, 0.87],
                        [1.0, 1.0, 1.0], [0.89, 0.92, 1.0]])
"""Relative RGB of a light of each colour temperature (6500 K is white, warmer is redder)."""


@dataclass(frozen=True)
class RenderDomain:
    """Appearance and camera parameters of the renderer: a domain is what a camera and the
    rooms it films look like, while the scene layouts and label conventions stay shared.

    Every range is (low, high) of a uniform draw. Draws that set the layout take the same
    random numbers in every domain, so one seed furnishes the same rooms (not seen from the
    same place when the camera heights differ). The sensor effects after shading (blur,
    vignetting, exposure, JPEG) are skipped at their neutral values.
    """

    name: str
    patterns: tuple[Callable | None, ...] = _PATTERNS
    """Texture families (mixers of a surface's two colours; ``None`` is plain)."""
    texture_scale: tuple[float, float] = (0.08, 0.6)
    """Metres per pattern period (log-uniform)."""
    palette_range: tuple[float, float] = (0.08, 0.95)
    """Range of each RGB channel of a scene's palette colours."""
    palette_saturation: float = 1.0
    """Palette colours are pulled towards their grey by 1 - saturation."""
    ambient: tuple[float, float] = (0.25, 0.45)
    light_power: tuple[float, float] = (0.6, 1.0)
    colour_temperature: tuple[float, float] = (6500.0, 6500.0)
    """Kelvin of the scene's lights (6500: white)."""
    fov: tuple[float, float] = (55.0, 80.0)
    """Horizontal field of view, degrees."""
    view_height: tuple[float, float] = (1.0, 1.7)
    """Camera height of single views, metres."""
    walk_height: tuple[float, float] = (1.1, 1.6)
    """Camera height of trajectories, metres."""
    noise_sigma: tuple[float, float] = (0.0, 0.02)
    """Per-scene standard deviation of the Gaussian sensor noise (image in [0, 1])."""
    blur: float = 0.0
    """Gaussian lens blur, its sigma a fraction of the image width."""
    vignetting: float = 0.0
    """Brightness lost in the image corners."""
    exposure_stops: tuple[float, float] = (0.0, 0.0)
    """Per-scene exposure error, in stops."""
    jpeg_quality: tuple[int, int] | None = None
    """Per-scene JPEG quality range [low, high); ``None``: no compression."""


SOURCE_DOMAIN = RenderDomain("source")
"""The scenes every shipped model and test was made with."""
SHIFTED_DOMAIN = RenderDomain(
    "shifted", patterns=_SHIFTED_PATTERNS, texture_scale=(0.05, 0.35), palette_range=(0.2, 0.85),
    palette_saturation=0.4, ambient=(0.12, 0.25), light_power=(0.9, 1.6),
    colour_temperature=(2700.0, 4500.0), fov=(85.0, 100.0), view_height=(0.35, 0.8),
    walk_height=(0.4, 0.7), noise_sigma=(0.01, 0.04), blur=0.01, vignetting=0.4,
    exposure_stops=(-0.5, 0.8), jpeg_quality=(30, 70))
"""A robot's camera: low and wide-angle, under warm, harsher light, in rooms of other
materials and muted colours, with a cheap sensor's blur, vignetting, exposure error, noise and
JPEG artefacts."""
RENDER_DOMAINS: dict[str, RenderDomain] = {d.name: d for d in (SOURCE_DOMAIN, SHIFTED_DOMAIN)}


@dataclass(frozen=True)
class _Look:
    """One scene's draws of its domain's appearance."""

    light_colour: np.ndarray  # (3,) float32 RGB factor of every light
    gain: float               # exposure
    jpeg_quality: int | None


def _sample_look(rng: np.random.Generator, domain: RenderDomain) -> _Look:
    kelvin = rng.uniform(*domain.colour_temperature)
    colour = np.array([np.interp(kelvin, _KELVIN, channel) for channel in _KELVIN_RGB.T],
                      dtype=np.float32)
    quality = None if domain.jpeg_quality is None else int(rng.integers(*domain.jpeg_quality))
    return _Look(colour, float(2.0 ** rng.uniform(*domain.exposure_stops)), quality)


def _shade(scene: _Scene, hits: _Hits, patterns: tuple[Callable | None, ...],
           light_colour: np.ndarray) -> np.ndarray:
    """(N, 3) linear colour: Lambertian point lights of ``light_colour`` with soft distance
    fall-off plus ambient, without shadows."""
    light = np.full(len(hits.surface), scene.ambient, dtype=np.float32)
    for position, power in zip(scene.light_pos, scene.light_power):
        to_light = position - hits.point
        distance = np.sqrt(np.einsum("nk,nk->n", to_light, to_light))
        cosine = np.einsum("nk,nk->n", hits.normal, to_light) / distance
        light += power * np.maximum(cosine, 0.0) / (1.0 + (distance / 5.0) ** 2)
    albedo = _albedo(scene.textures, patterns, hits.surface, hits.local)
    return albedo * light[:, None] * light_colour


def _optics(image: np.ndarray, intrinsics: np.ndarray, domain: RenderDomain,
            look: _Look) -> np.ndarray:
    """Lens blur, vignetting (radial fall-off about the principal point) and exposure gain of
    an (H, W, 3) linear image."""
    height, width = image.shape[:2]
    if domain.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), domain.blur * width)
    if domain.vignetting > 0 or look.gain != 1.0:
        rows = (np.arange(height, dtype=np.float32) - intrinsics[1, 2]) / (height / 2)
        cols = (np.arange(width, dtype=np.float32) - intrinsics[0, 2]) / (width / 2)
        radius2 = (rows[:, None] ** 2 + cols[None, :] ** 2) / 2
        image = image * (look.gain * (1.0 - domain.vignetting * radius2))[..., None]
    return image


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image after a JPEG round trip at ``quality``."""
    _, data = compress_rgb(image, "jpeg", jpeg_quality=quality)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------

def edges_from_maps(semseg: np.ndarray, depth: np.ndarray, normals: np.ndarray,
                    primitive: np.ndarray | None = None) -> np.ndarray:
    """Edge map (H, W uint8) by the module's rule: discontinuities between 4-neighbours, each
    marked on its nearer pixel. ``primitive`` (H, W) restricts depth jumps to pixel pairs on
    different primitives, so that a single surface seen at a grazing angle is never an edge."""
    edges = np.zeros(semseg.shape, dtype=bool)
    valid = depth > 0
    nearness = np.where(valid, depth, np.inf)
    cos_limit = math.cos(math.radians(EDGE_NORMAL_ANGLE_DEG))
    for axis in (0, 1):
        first, second = _neighbour_slices(axis)
        both_valid = valid[first] & valid[second]
        near = np.minimum(depth[first], depth[second])
        jump = both_valid & (np.abs(depth[first] - depth[second]) > EDGE_DEPTH_JUMP * near)
        if primitive is not None:
            jump &= primitive[first] != primitive[second]
        crease = both_valid & (np.sum(normals[first] * normals[second], axis=-1) < cos_limit)
        broken = (semseg[first] != semseg[second]) | jump | crease
        first_nearer = nearness[first] <= nearness[second]
        edges[first] |= broken & first_nearer
        edges[second] |= broken & ~first_nearer
    return edges.astype(np.uint8)


def _neighbour_slices(axis: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index pairs (pixel, its next neighbour along ``axis``) of a 2-D map."""
    if axis == 0:
        return (slice(None, -1), slice(None)), (slice(1, None), slice(None))
    return (slice(None), slice(None, -1)), (slice(None), slice(1, None))


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

def _pixel_rays(intrinsics: np.ndarray, size: tuple[int, int], world_from_optical: np.ndarray,
                offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(H * W, 3) world-frame ray directions whose optical z is 1, so that the hit parameter is
    the depth; pixel centres sit at integer coordinates, shifted by ``offset`` (rows, columns)."""
    height, width = size
    x = ((np.arange(width) + offset[1] - intrinsics[0, 2]) / intrinsics[0, 0]).astype(np.float32)
    y = ((np.arange(height) + offset[0] - intrinsics[1, 2]) / intrinsics[1, 1]).astype(np.float32)
    axes = world_from_optical.T.astype(np.float32)  # rows: the optical x, y, z axes in the world
    rays = x[None, :, None] * axes[0] + y[:, None, None] * axes[1] + axes[2]
    return rays.reshape(-1, 3)


def _render(scene: _Scene, camera: _Camera, size: tuple[int, int], supersample: int,
            max_depth: float | None, noise_rng: np.random.Generator | None,
            domain: RenderDomain, look: _Look) -> dict[str, np.ndarray]:
    if supersample < 1:
        raise ValueError(f"supersample must be at least 1, got {supersample}")
    height, width = size
    rotation = camera.pose[:3, :3]
    primitives = _primitives(scene)
    dirs = _pixel_rays(camera.intrinsics, size, rotation)
    hits = _cast(primitives, scene, camera, size, dirs)
    if supersample == 1:
        colour = _shade(scene, hits, domain.patterns, look.light_colour)
    else:
        colour = np.zeros((height * width, 3), dtype=np.float32)
        steps = (np.arange(supersample) + 0.5) / supersample - 0.5
        for dv in steps:
            for du in steps:
                sub_dirs = _pixel_rays(camera.intrinsics, size, rotation, (dv, du))
                colour += _shade(scene, _cast(primitives, scene, camera, size, sub_dirs),
                                 domain.patterns, look.light_colour)
        colour /= supersample ** 2
    image = _optics(colour.reshape(height, width, 3), camera.intrinsics, domain, look)
    if noise_rng is not None:
        image = image + scene.noise_sigma * noise_rng.standard_normal(image.shape, dtype=np.float32)
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if look.jpeg_quality is not None:
        image = _jpeg(image, look.jpeg_quality)

    semseg = scene.surface_class[hits.surface].reshape(height, width)
    depth = hits.depth.reshape(height, width).copy()
    # Row-wise R^T n, spelt out: numpy's matmul is slow for many 3-vectors.
    axes = rotation.astype(np.float32)
    normals = sum(hits.normal[:, i:i + 1] * axes[i] for i in range(3)).reshape(height, width, 3)
    edges = edges_from_maps(semseg, depth, normals, hits.primitive.reshape(height, width))
    if max_depth is not None:
        far = depth > max_depth
        depth[far] = 0.0
        normals[far] = 0.0
    return {
        "image": image,
        "semseg": semseg,
        "depth": depth,
        "normals": normals,
        "edges": edges,
        "intrinsics": camera.intrinsics.astype(np.float32),
        "pose": camera.pose.astype(np.float32),
    }


def _streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the room, the camera, the furniture, the sensor noise and the
    domain's look, so that switching noise off (or changing the resolution) leaves the scene
    unchanged (the first four are those of a four-way spawn: adding the fifth changed nothing)."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))


def render_scene(seed: int, size: tuple[int, int] = (128, 160), *, supersample: int = 1,
                 max_depth: float | None = None, noise: bool = True,
                 domain: RenderDomain = SOURCE_DOMAIN) -> dict[str, np.ndarray]:
    """Render the scene of ``seed`` seen from one random camera.

    Returns numpy arrays: ``image`` (H, W, 3) uint8 RGB; ``semseg`` (H, W) uint8 class ids into
    ``SYNTHETIC_CLASSES`` (uint8 keeps caches and mono8 messages small); ``depth`` (H, W) float32
    metres, 0 beyond ``max_depth``; ``normals`` (H, W, 3) float32 optical-frame unit normals, 0
    beyond ``max_depth``; ``edges`` (H, W) uint8 {0, 1}, independent of ``max_depth``;
    ``intrinsics`` (3, 3) float32; ``pose`` (4, 4) float32 camera-to-world. ``supersample`` > 1
    anti-aliases the image only (labels stay per pixel centre); ``noise`` adds the scene's
    Gaussian sensor noise to the image. ``domain`` sets appearance and camera (see
    :class:`RenderDomain`). The same seed gives identical arrays, and the same view at every
    ``size``.
    """
    room_rng, camera_rng, furniture_rng, noise_rng, look_rng = _streams(seed)
    room = _sample_room(room_rng)
    position, yaw, pitch, roll = _sample_view(camera_rng, room, domain.view_height)
    camera = _Camera(_intrinsics(camera_rng, size, domain.fov), _pose(position, yaw, pitch, roll))
    scene = _sample_scene(furniture_rng, room, position[None, :2], domain)
    return _render(scene, camera, size, supersample, max_depth, noise_rng if noise else None,
                   domain, _sample_look(look_rng, domain))


def render_trajectory(seed: int, num_frames: int, size: tuple[int, int] = (128, 160), *,
                      speed: float = 0.05, stride: int = 1, supersample: int = 1,
                      max_depth: float | None = None, noise: bool = True,
                      domain: RenderDomain = SOURCE_DOMAIN) -> Iterator[dict[str, np.ndarray]]:
    """Frames of one scene seen from a camera walking ``speed`` metres per frame along an
    ellipse around the room centre, looking partly inwards with a slow pan and bob.

    The furniture keeps clear of the whole ellipse; intrinsics are fixed; frames have the keys of
    :func:`render_scene`. ``stride`` > 1 renders only every stride-th frame of the same walk
    (frames 0, stride, 2 stride, ...), ``num_frames`` of them.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    room_rng, camera_rng, furniture_rng, noise_rng, look_rng = _streams(seed)
    room = _sample_room(room_rng)
    intrinsics = _intrinsics(camera_rng, size, domain.fov)
    semi_axes = 0.28 * room[:2]
    angle = camera_rng.uniform(0, 2 * np.pi)
    turn = 1.0 if camera_rng.random() < 0.5 else -1.0
    inward = turn * math.radians(camera_rng.uniform(30.0, 70.0))
    eye_height = camera_rng.uniform(*domain.walk_height)
    loop = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    path = room[:2] / 2 + semi_axes * np.column_stack([np.cos(loop), np.sin(loop)])
    scene = _sample_scene(furniture_rng, room, path, domain)
    look = _sample_look(look_rng, domain)
    for frame in range(stride * (num_frames - 1) + 1):
        tangent = turn * semi_axes * np.array([-math.sin(angle), math.cos(angle)])
        ground = room[:2] / 2 + semi_axes * np.array([math.cos(angle), math.sin(angle)])
        position = np.array([*ground, eye_height + 0.03 * math.sin(0.3 * frame)])
        yaw = math.atan2(tangent[1], tangent[0]) + inward + 0.25 * math.sin(0.05 * frame)
        pitch = math.radians(-8.0 + 4.0 * math.sin(0.07 * frame))
        roll = math.radians(2.0 * math.sin(0.11 * frame))
        if frame % stride == 0:
            camera = _Camera(intrinsics, _pose(position, yaw, pitch, roll))
            yield _render(scene, camera, size, supersample, max_depth,
                          noise_rng if noise else None, domain, look)
        angle += turn * speed / float(np.linalg.norm(tangent))


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------

def scene_seed(dataset_seed: int, split: str, index: int) -> int:
    """Seed of scene ``index`` of ``split``: every (dataset seed, split) pair owns its own range
    of 2**32 integers, so splits can never share a scene."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if dataset_seed < 0 or not 0 <= index < _INDEX_RANGE:
        raise ValueError(f"need dataset_seed >= 0 and 0 <= index < 2**32, "
                         f"got {dataset_seed} and {index}")
    return (dataset_seed * len(SPLITS) + SPLITS.index(split)) * _INDEX_RANGE + index


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """An HxWx3 uint8 RGB image as a new 3xHxW float32 tensor in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)


def sample_to_tensors(frame: dict[str, np.ndarray]) -> Sample:
    """A rendered frame in the library's sample conventions (image 3xHxW in [0, 1], semseg and
    edges int64 HxW, depth 1xHxW, normals 3xHxW, intrinsics 3x3).

    The tensors never share memory with ``frame``, so transforms may work in place.
    """
    return {
        "image": image_to_tensor(frame["image"]),
        "semseg": torch.from_numpy(frame["semseg"].astype(np.int64)),
        "depth": torch.from_numpy(frame["depth"].copy()).unsqueeze(0),
        "normals": torch.from_numpy(np.ascontiguousarray(frame["normals"].transpose(2, 0, 1))),
        "edges": torch.from_numpy(frame["edges"].astype(np.int64)),
        "intrinsics": torch.from_numpy(frame["intrinsics"].copy()),
    }


class SyntheticScenes(Dataset):
    """``length`` procedural scenes of one split, rendered on demand.

    With ``cache`` every rendered frame is kept (as compact numpy arrays) so later epochs skip
    rendering; with DataLoader workers each worker keeps its own cache, which lasts across epochs
    only with ``persistent_workers=True``. ``transform`` maps a sample dict to a sample dict and
    runs on every access, after the cache. ``domain`` sets the look (:class:`RenderDomain`).
    """

    num_classes = len(SYNTHETIC_CLASSES)
    class_names = SYNTHETIC_CLASSES
    class_colors = SYNTHETIC_COLORS

    def __init__(self, split: str, length: int, size: tuple[int, int] = (128, 160), seed: int = 0,
                 transform: Callable[[Sample], Sample] | None = None,
                 cache: bool = True, domain: RenderDomain = SOURCE_DOMAIN):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.split, self.length, self.size, self.seed = split, length, tuple(size), seed
        self.domain = domain
        self.transform = transform
        self._cache: dict[int, dict[str, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def scene_seed(self, index: int) -> int:
        return scene_seed(self.seed, self.split, index)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        frame = self._cache.get(index) if self._cache is not None else None
        if frame is None:
            frame = render_scene(self.scene_seed(index), self.size, domain=self.domain)
            if self._cache is not None:
                self._cache[index] = frame
        sample = sample_to_tensors(frame)
        return self.transform(sample) if self.transform is not None else sample


SEQUENCE_SPEED = 0.1
"""Metres per frame of :class:`SyntheticSequences`: at 128x160 the translation alone moves the
median pixel by about three pixels between neighbouring frames (stride 1), parallax enough to
learn depth from, while the view turns by a few degrees at most."""


def relative_pose(target_pose: np.ndarray, source_pose: np.ndarray) -> np.ndarray:
    """The 4x4 transform taking points of the target camera's optical frame into the source
    camera's, from both camera-to-world poses."""
    return np.linalg.inv(source_pose.astype(np.float64)) @ target_pose.astype(np.float64)


class SyntheticSequences(Dataset):
    """``length`` procedural scenes of one split, each seen as a frame triplet of a camera walk.

    Sample ``i`` walks through scene ``scene_seed(seed, split, i)`` (the rooms of
    :class:`SyntheticScenes`, furnished around the walk) with :func:`render_trajectory` and
    returns frames ``t - stride``, ``t``, ``t + stride`` as ``image_prev``, ``image`` and
    ``image_next``, every label of frame ``t``, and the exact motion: ``travel`` (metres from
    ``t`` to each neighbour) and ``pose_prev`` / ``pose_next`` (:func:`relative_pose`, centre
    camera to neighbour), so that learnt depth and pose can be measured against the truth.

    Validation and evaluation take single frames from :class:`SyntheticScenes` (``build_dataset``
    with ``sequence=False``): its random standing views cover the walk's heights and pitches and
    more, so supervised and self-supervised models are measured on the same, slightly harder set.
    Caching and ``domain`` work as in :class:`SyntheticScenes`.
    """

    num_classes = len(SYNTHETIC_CLASSES)
    class_names = SYNTHETIC_CLASSES
    class_colors = SYNTHETIC_COLORS
    has_odometry = True

    def __init__(self, split: str, length: int, size: tuple[int, int] = (128, 160), seed: int = 0,
                 transform: Callable[[Sample], Sample] | None = None, cache: bool = True,
                 stride: int = 1, speed: float = SEQUENCE_SPEED, noise: bool = True,
                 domain: RenderDomain = SOURCE_DOMAIN):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if stride < 1 or not speed > 0:
            raise ValueError(f"need stride >= 1 and speed > 0, got {stride} and {speed}")
        self.split, self.length, self.size, self.seed = split, length, tuple(size), seed
        self.stride, self.speed, self.noise, self.domain = stride, speed, noise, domain
        self.transform = transform
        self._cache: dict[int, list[dict[str, np.ndarray]]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def scene_seed(self, index: int) -> int:
        return scene_seed(self.seed, self.split, index)

    def frames(self, index: int) -> list[dict[str, np.ndarray]]:
        """The rendered frames ``t - stride``, ``t``, ``t + stride`` of sample ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        frames = self._cache.get(index) if self._cache is not None else None
        if frames is None:
            frames = list(render_trajectory(self.scene_seed(index), 3, self.size,
                                            speed=self.speed, stride=self.stride,
                                            noise=self.noise, domain=self.domain))
            if self._cache is not None:
                self._cache[index] = frames
        return frames

    def __getitem__(self, index: int) -> Sample:
        previous, centre, following = self.frames(index)
        sample = sample_to_tensors(centre)
        for name, source in (("prev", previous), ("next", following)):
            sample[f"image_{name}"] = image_to_tensor(source["image"])
            sample[f"pose_{name}"] = torch.from_numpy(
                relative_pose(centre["pose"], source["pose"]).astype(np.float32))
        sample["travel"] = torch.tensor([_distance(centre, previous), _distance(centre, following)],
                                        dtype=torch.float32)
        return self.transform(sample) if self.transform is not None else sample


def _distance(one: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    """Metres between the camera centres of two rendered frames."""
    return float(np.linalg.norm(one["pose"][:3, 3].astype(np.float64) - other["pose"][:3, 3]))
