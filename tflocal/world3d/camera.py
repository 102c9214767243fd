"""The 3D world's one camera: a pinhole looking down at the floor, and the projection every
stage shares (scene relations, the renderer's rays, region boxes for heatmaps).

World coordinates: the floor is ``z = 0``; ``x`` points right and ``y`` away from the camera;
``z`` up. Image coordinates: ``u`` right, ``v`` down, in pixels of a square image of
``size`` pixels, (0, 0) the top-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EYE = (0.0, -10.0, 7.0)
TARGET = (0.0, 0.4, 0.0)
FOV_DEG = 36.0
"""Vertical (= horizontal: the image is square) field of view."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: ``eye`` and ``target`` in world units, square field of view ``fov_deg``."""

    eye: tuple[float, float, float] = EYE
    target: tuple[float, float, float] = TARGET
    fov_deg: float = FOV_DEG

    @lru_cache(maxsize=4)  # noqa: B019 (a frozen, hashable camera: one entry per camera)
    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) unit vectors [3] each."""
        eye, target = np.asarray(self.eye, float), np.asarray(self.target, float)
        forward = target - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        return right, up, forward

    def project(self, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """points [N, 3] world -> (uv [N, 2] pixels, depth [N] distance along the view axis)."""
        right, up, forward = self.basis()
        rel = np.atleast_2d(np.asarray(points, float)) - np.asarray(self.eye, float)
        depth = rel @ forward
        f = 0.5 * size / np.tan(np.radians(self.fov_deg) / 2)
        u = size / 2 + f * (rel @ right) / depth
        v = size / 2 - f * (rel @ up) / depth
        return np.stack([u, v], axis=-1), depth

    def rays(self, size: int, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """One ray per (sub)pixel centre: (origin [3], unit directions [H*s, W*s, 3]) with
        H = W = ``size`` and s = ``supersample``, rows top to bottom."""
        right, up, forward = self.basis()
        n = size * supersample
        f = 0.5 * n / np.tan(np.radians(self.fov_deg) / 2)
        c = (np.arange(n) + 0.5 - n / 2) / f
        x, y = np.meshgrid(c, -c)
        d = forward[None, None, :] + x[..., None] * right + y[..., None] * up
        return np.asarray(self.eye, float), d / np.linalg.norm(d, axis=-1, keepdims=True)


CAMERA = Camera()
"""The camera every scene of the world is seen through."""
