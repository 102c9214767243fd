"""The 3D world's renderer: analytic ray casting of a scene dict (see :mod:`tflocal.world3d.scene`)
through :data:`~tflocal.world3d.camera.CAMERA`, vectorized with numpy over all rays.

Geometry: a sphere of radius ``r`` centred ``r`` above its ``position``; a cube of half side
``r`` on its ``position``, turned ``yaw`` degrees about the vertical; an upright cylinder of
radius ``r`` and height ``2 r`` standing on its ``position``; an infinite grey floor ``z = 0``.

Shading, in linear RGB: one directional key light (:data:`LIGHT_DIR`) with hard shadows (one
shadow ray per lit point, against every other object), a hemispherical fill, Lambert diffuse;
``rubber`` adds a faint broad highlight, ``metal`` darkens the diffuse and adds a sharp tinted
highlight and one mirror bounce (against the other objects, the floor with its shadows, and a
sky gradient with a glow about the light) weighted by a Schlick Fresnel term. Output: clipped
to [0, 1], then a 2.2 gamma.

Antialiasing: ``supersample = s`` traces ``s x s`` rays in each pixel where the pixel-centre
rays of neighbouring pixels see different objects or a shadow boundary, one ray elsewhere.
Deterministic: no random numbers; the same scene gives the same bytes.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from tflocal.world3d.camera import CAMERA, Camera
from tflocal.world3d.vocab import COLORS, MATERIALS, SHAPES

DEFAULT_SUPERSAMPLE = 2
"""Rays per pixel side on object and shadow edges (1: one ray per pixel everywhere)."""
LIGHT_DIR = tuple(float(c) for c in np.array([-0.6, -0.3, 0.75]) / np.linalg.norm([-0.6, -0.3, 0.75]))
"""Unit vector towards the key light (front left, high): shadows fall back and to the right."""
KEY = 0.95
"""Key light intensity (linear)."""
FILL_SKY, FILL_GROUND = 0.30, 0.12
"""Hemispherical fill: intensity from straight above and from straight below."""
FLOOR_ALBEDO = 0.42
"""Floor reflectance (linear grey)."""
FLOOR_FALLOFF = 0.035
"""Floor brightness drops by this share per world unit from the scene centre (a soft vignette)."""
SKY_HORIZON, SKY_ZENITH = (0.08, 0.08, 0.09), (0.95, 0.95, 0.97)
"""Colour seen by metal reflections near the horizon and straight up (linear)."""
SKY_LOBES = ((LIGHT_DIR, 1.4, 6.0),)
"""Glows of the reflected environment, (direction, strength, exponent): about the key light."""
METAL = {"diffuse": 0.15, "f0": 0.85, "spec": 2.5, "shine": 180.0}
RUBBER = {"spec": 0.06, "shine": 12.0}
"""Material constants: diffuse scale, Fresnel reflectance at normal incidence (times the
albedo), highlight strength and Blinn-Phong exponent."""
EPS = 1e-4
"""Least ray distance counted as a hit; secondary rays start ``10 EPS`` off the surface."""
_LUT = np.round(255 * np.linspace(0.0, 1.0, 4096) ** (1 / 2.2)).astype(np.uint8)
"""Linear [0, 1] quantized to 4096 levels -> sRGB byte."""


@dataclass(frozen=True)
class _Obj:
    shape: str
    c: tuple[float, float, float]  # centre
    r: float
    cos: float
    sin: float
    albedo: np.ndarray  # [3] linear
    metal: bool
    box: tuple[float, float, float, float]  # pixel box u0, v0, u1, v1 (at the scene's size)
    bound: float  # radius of the bounding sphere about c


def _fail(msg: str) -> None:
    raise ValueError(f"render: {msg}")


def _objects(scene: dict) -> list[_Obj]:
    objs = []
    boxes = region_boxes(scene)
    for o, box in zip(scene["objects"], boxes):
        x, y, z = (float(v) for v in o["position"])
        r = float(o["radius"])
        yaw = math.radians(float(o.get("yaw", 0.0)))
        albedo = (np.asarray(COLORS[o["color"]], np.float32) / 255) ** 2.2
        bound = r * (
            math.sqrt(3) if o["shape"] == "cube" else math.sqrt(2) if o["shape"] == "cylinder" else 1
        )
        objs.append(
            _Obj(
                o["shape"],
                (x, y, z + r),
                r,
                math.cos(yaw),
                math.sin(yaw),
                albedo,
                o["material"] == "metal",
                tuple(box),
                bound,
            )
        )
    return objs


def _check(scene: dict) -> int:
    if not isinstance(scene, dict) or "objects" not in scene:
        _fail("a scene is a dict with 'objects' (and 'image_size')")
    size = scene.get("image_size", 224)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        _fail(f"image_size must be a positive integer, got {size!r}")
    for k, o in enumerate(scene["objects"]):
        missing = [key for key in ("shape", "color", "material", "radius", "position") if key not in o]
        if missing:
            _fail(f"object {k} lacks {', '.join(missing)}")
        if o["shape"] not in SHAPES:
            _fail(f"object {k}: shape {o['shape']!r} is not one of {SHAPES}")
        if o["color"] not in COLORS:
            _fail(f"object {k}: color {o['color']!r} is not one of {list(COLORS)}")
        if o["material"] not in MATERIALS:
            _fail(f"object {k}: material {o['material']!r} is not one of {MATERIALS}")
        if len(o["position"]) != 3 or not float(o["radius"]) > 0:
            _fail(f"object {k}: position must be [x, y, z] and radius > 0")
    return size


def _corners(o: dict) -> np.ndarray:
    """[8, 3] corners of a box holding the object: the turned cube itself, else the upright box
    of the sphere / cylinder."""
    x, y, z = (float(v) for v in o["position"])
    r = float(o["radius"])
    s = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float) * r
    if o["shape"] == "cube":
        a = math.radians(float(o.get("yaw", 0.0)))
        c, n = math.cos(a), math.sin(a)
        s = np.stack([c * s[:, 0] - n * s[:, 1], n * s[:, 0] + c * s[:, 1], s[:, 2]], axis=1)
    return s + [x, y, z + r]


def region_boxes(scene: dict, camera: Camera = CAMERA) -> list[list[float]]:
    """Per object, ``[u0, v0, u1, v1]``: the pixel box (at ``scene["image_size"]``) of the
    projection of its bounding box's 8 corners (not clipped to the image); every pixel the
    object covers lies inside."""
    size = int(scene.get("image_size", 224))
    out = []
    for o in scene["objects"]:
        uv, _ = camera.project(_corners(o), size)
        lo, hi = uv.min(0), uv.max(0)
        out.append([float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])])
    return out


@lru_cache(maxsize=8)
def _grid(camera: Camera, size: int, s: int) -> tuple[np.ndarray, ...]:
    """The camera's rays at ``s`` per pixel side: (eye [3], dx, dy, dz [n, n] float32)."""
    eye, d = camera.rays(size, s)
    d = d.astype(np.float32)
    return eye.astype(np.float32), d[..., 0].copy(), d[..., 1].copy(), d[..., 2].copy()


# ---- intersections: origins o = (ox, oy, oz) scalars or [N], unit directions d = (dx, dy, dz) [N]
# -> distance t [N] (inf where the ray misses)


def _hit_sphere(b: _Obj, o, d) -> np.ndarray:
    ox, oy, oz = o[0] - b.c[0], o[1] - b.c[1], o[2] - b.c[2]
    p = ox * d[0] + oy * d[1] + oz * d[2]
    disc = p * p - (ox * ox + oy * oy + oz * oz - b.r * b.r)
    t = -p - np.sqrt(np.maximum(disc, 0))
    return np.where((disc > 0) & (t > EPS), t, np.inf)


def _hit_cube(b: _Obj, o, d) -> np.ndarray:
    ox, oy, oz = o[0] - b.c[0], o[1] - b.c[1], o[2] - b.c[2]
    lo = (b.cos * ox + b.sin * oy, -b.sin * ox + b.cos * oy, oz)
    ld = (b.cos * d[0] + b.sin * d[1], -b.sin * d[0] + b.cos * d[1], d[2])
    near, far = None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            inv = 1 / ld[a]
            t1, t2 = (-b.r - lo[a]) * inv, (b.r - lo[a]) * inv
            tn, tf = np.minimum(t1, t2), np.maximum(t1, t2)
            near = tn if near is None else np.maximum(near, tn)
            far = tf if far is None else np.minimum(far, tf)
    return np.where((near <= far) & (near > EPS), near, np.inf)


def _hit_cylinder(b: _Obj, o, d) -> np.ndarray:
    ox, oy, oz = o[0] - b.c[0], o[1] - b.c[1], o[2] - b.c[2]
    a = d[0] * d[0] + d[1] * d[1]
    p = ox * d[0] + oy * d[1]
    disc = p * p - a * (ox * ox + oy * oy - b.r * b.r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = (-p - np.sqrt(np.maximum(disc, 0))) / a
        zs = oz + ts * d[2]
        best = np.where((disc > 0) & (ts > EPS) & (np.abs(zs) <= b.r), ts, np.inf)
        for zc in (b.r, -b.r):
            tc = (zc - oz) / d[2]
            xc, yc = ox + tc * d[0], oy + tc * d[1]
            ok = (tc > EPS) & (xc * xc + yc * yc <= b.r * b.r)
            best = np.where(ok & (tc < best), tc, best)
    return best


_HIT = {"sphere": _hit_sphere, "cube": _hit_cube, "cylinder": _hit_cylinder}


def _normals(b: _Obj, px, py, pz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward unit normals [N] x3 at points [N] x3 on the object's surface."""
    x, y, z = px - b.c[0], py - b.c[1], pz - b.c[2]
    if b.shape == "sphere":
        return x / b.r, y / b.r, z / b.r
    if b.shape == "cylinder":
        cap = np.abs(z) > b.r * (1 - 1e-3)
        rho = np.sqrt(x * x + y * y) + 1e-12
        return np.where(cap, 0, x / rho), np.where(cap, 0, y / rho), np.where(cap, np.sign(z), 0)
    lx, ly = b.cos * x + b.sin * y, -b.sin * x + b.cos * y
    ax, ay, az = np.abs(lx), np.abs(ly), np.abs(z)
    on_x = (ax >= ay) & (ax >= az)
    on_y = ~on_x & (ay >= az)
    on_z = ~on_x & ~on_y
    nlx, nly, nz = on_x * np.sign(lx), on_y * np.sign(ly), on_z * np.sign(z)
    return b.cos * nlx - b.sin * nly, b.sin * nlx + b.cos * nly, nz.astype(np.float32)


def _nearest(objs: list[_Obj], o, d, cand, skip=None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest object hit of rays (o, d) [N]: (t [N], index [N], -1 for none). ``cand(k)`` gives
    the indices of the rays that may hit object k; ``skip`` [N] an object index each ray ignores."""
    n = d[0].shape[0]
    t = np.full(n, np.inf, np.float32)
    ids = np.full(n, -1, np.int32)
    for k, b in enumerate(objs):
        idx = cand(k)
        if skip is not None:
            idx = idx[skip[idx] != k]
        if idx.size == 0:
            continue
        oo = tuple(c[idx] if np.ndim(c) else c for c in o)
        tk = _HIT[b.shape](b, oo, tuple(c[idx] for c in d))
        better = tk < t[idx]
        t[idx[better]] = tk[better]
        ids[idx[better]] = k
    return t, ids


def _bound_cand(objs: list[_Obj], o, d):
    """Candidate rays for each object: those passing within its bounding sphere, ahead."""

    def cand(k: int) -> np.ndarray:
        b = objs[k]
        cx, cy, cz = b.c[0] - o[0], b.c[1] - o[1], b.c[2] - o[2]
        along = cx * d[0] + cy * d[1] + cz * d[2]
        off = cx * cx + cy * cy + cz * cz - along * along
        return np.flatnonzero((along > -b.bound) & (off < b.bound * b.bound))

    return cand


def _shadowed(objs: list[_Obj], px, py, pz, own) -> np.ndarray:
    """[N] bool: does the ray from each point towards the key light hit an object other than
    ``own`` [N]? Culled in the light's frame: each object's bounding disc across the light."""
    lx, ly, lz = LIGHT_DIR
    e1 = np.array([-ly, lx, 0.0]) / math.hypot(lx, ly)
    e2 = np.cross(LIGHT_DIR, e1)
    a = px * e1[0] + py * e1[1]
    c = px * e2[0] + py * e2[1] + pz * e2[2]
    s = px * lx + py * ly + pz * lz
    n = px.shape[0]
    dirs = (np.full(n, lx, np.float32), np.full(n, ly, np.float32), np.full(n, lz, np.float32))

    def cand(k: int) -> np.ndarray:
        b = objs[k]
        ba = b.c[0] * e1[0] + b.c[1] * e1[1]
        bc = b.c[0] * e2[0] + b.c[1] * e2[1] + b.c[2] * e2[2]
        bs = b.c[0] * lx + b.c[1] * ly + b.c[2] * lz
        return np.flatnonzero((np.abs(a - ba) < b.bound) & (np.abs(c - bc) < b.bound) & (s < bs + b.bound))

    t, _ = _nearest(objs, (px, py, pz), dirs, cand, skip=own)
    return np.isfinite(t)


def _sky(rx, ry, rz) -> np.ndarray:
    """[N, 3] linear colour of the environment seen in unit directions [N] x3."""
    w = np.clip(rz, 0, 1)[:, None] ** 1.5
    env = (1 - w) * np.asarray(SKY_HORIZON, np.float32) + w * np.asarray(SKY_ZENITH, np.float32)
    for (ax, ay, az), strength, power in SKY_LOBES:
        norm = math.sqrt(ax * ax + ay * ay + az * az)
        env += (strength * np.maximum((rx * ax + ry * ay + rz * az) / norm, 0) ** power)[:, None]
    return env


def _floor_light(px, py) -> np.ndarray:
    """[N] floor irradiance times albedo, unshadowed key included, with the vignette."""
    fall = np.maximum(0.0, 1 - FLOOR_FALLOFF * np.sqrt(px * px + (py - 0.4) ** 2))
    return FLOOR_ALBEDO * fall


def _shade(objs: list[_Obj], o, d, t, ids) -> tuple[np.ndarray, np.ndarray]:
    """Linear RGB [N, 3] of rays (o, d) [N] whose nearest object hit is (t, ids) [N], and an
    edge key [N]: ``2 k`` on object k, ``2 k + 1`` where a cast shadow falls on it; -1 / -2 lit /
    shadowed floor; -3 sky."""
    n = t.shape[0]
    lx, ly, lz = LIGHT_DIR
    floor = (ids < 0) & (d[2] < 0)
    with np.errstate(divide="ignore"):
        t = np.where(floor, -o[2] / d[2], t).astype(np.float32)
    hit = (ids >= 0) | floor
    px, py, pz = (o[i] + np.where(hit, t, 0) * d[i] for i in range(3))
    pz = np.where(floor, 0, pz)
    nx, ny, nz = np.zeros(n, np.float32), np.zeros(n, np.float32), np.ones(n, np.float32)
    by = [np.flatnonzero(ids == k) for k in range(len(objs))]
    for k, idx in enumerate(by):
        if idx.size:
            nx[idx], ny[idx], nz[idx] = _normals(objs[k], px[idx], py[idx], pz[idx])
    ndl = np.maximum(nx * lx + ny * ly + nz * lz, 0)
    test = np.flatnonzero(hit & (ndl > 0))
    q = [c[test] + EPS * 10 * m[test] for c, m in ((px, nx), (py, ny), (pz, nz))]
    lit = np.zeros(n, np.float32)
    lit[test] = ~_shadowed(objs, *q, ids[test])
    irr = KEY * ndl * lit + FILL_GROUND + (FILL_SKY - FILL_GROUND) * (0.5 + 0.5 * nz)

    rgb = np.empty((n, 3), np.float32)
    rgb[:] = _sky(*d)
    fi = np.flatnonzero(floor)
    rgb[fi] = (_floor_light(px[fi], py[fi]) * irr[fi])[:, None]
    hx, hy, hz = lx - d[0], ly - d[1], lz - d[2]
    hn = np.sqrt(hx * hx + hy * hy + hz * hz)
    ndh = np.maximum((nx * hx + ny * hy + nz * hz) / hn, 0)
    for k, idx in enumerate(by):
        if not idx.size:
            continue
        b = objs[k]
        if not b.metal:
            spec = RUBBER["spec"] * ndh[idx] ** RUBBER["shine"] * lit[idx]
            rgb[idx] = b.albedo * irr[idx, None] + spec[:, None]
    metal = np.flatnonzero(np.isin(ids, [k for k, b in enumerate(objs) if b.metal]))
    if metal.size:
        rgb[metal] = _metal(objs, metal, d, (px, py, pz), (nx, ny, nz), ids, irr, ndh, lit)
    dark = ((ndl > 0.05) & (lit == 0)).astype(np.int32)  # in a cast shadow, off the terminator
    key = np.where(ids >= 0, 2 * ids + dark, np.where(floor, -1 - dark, -3))
    return rgb, key


def _metal(objs, m, d, p, nrm, ids, irr, ndh, lit) -> np.ndarray:
    """Linear RGB [M, 3] of the metal hits at ray indices ``m`` [M]: darkened diffuse, a sharp
    highlight, one mirror bounce."""
    lx, ly, lz = LIGHT_DIR
    dx, dy, dz = (c[m] for c in d)
    nx, ny, nz = (c[m] for c in nrm)
    cos = np.clip(-(dx * nx + dy * ny + dz * nz), 0, 1)
    rx, ry, rz = dx + 2 * cos * nx, dy + 2 * cos * ny, dz + 2 * cos * nz
    px, py, pz = (c[m] + EPS * 10 * k for c, k in zip(p, (nx, ny, nz)))
    own = ids[m]
    r = (rx, ry, rz)
    tr, hid = _nearest(objs, (px, py, pz), r, _bound_cand(objs, (px, py, pz), r), skip=own)
    env = _sky(rx, ry, rz)
    down = (hid < 0) & (rz < 0)
    with np.errstate(divide="ignore"):
        tf = np.where(down, -pz / rz, 0)
    fx, fy = px + tf * rx, py + tf * ry
    fi = np.flatnonzero(down)
    zero = np.zeros(fi.size, np.float32)
    floor_lit = ~_shadowed(objs, fx[fi], fy[fi], zero + EPS * 10, np.full(fi.size, -1, np.int32))
    env[fi] = (_floor_light(fx[fi], fy[fi]) * (KEY * lz * floor_lit + FILL_SKY))[:, None]
    for k in np.unique(hid[hid >= 0]):
        sel = np.flatnonzero(hid == k)
        b = objs[k]
        qx, qy, qz = (c[sel] + tr[sel] * v[sel] for c, v in zip((px, py, pz), r))
        mx, my, mz = _normals(b, qx, qy, qz)
        e = (
            KEY * np.maximum(mx * lx + my * ly + mz * lz, 0)
            + FILL_GROUND
            + (FILL_SKY - FILL_GROUND) * (0.5 + 0.5 * mz)
        )
        env[sel] = b.albedo * e[:, None] * (METAL["diffuse"] if b.metal else 1.0)
    albedo = np.stack([objs[k].albedo for k in range(len(objs))])[own]
    f0 = METAL["f0"] * albedo
    fres = f0 + (1 - f0) * ((1 - cos) ** 5)[:, None]
    spec = METAL["spec"] * (ndh[m] ** METAL["shine"] * lit[m])[:, None] * (0.35 + 0.65 * albedo)
    return METAL["diffuse"] * albedo * irr[m, None] * (1 - fres) + fres * env + spec


def _to_bytes(rgb: np.ndarray) -> np.ndarray:
    return _LUT[(np.clip(rgb, 0, 1) * 4095 + 0.5).astype(np.int32)]


def _render_array(scene: dict, supersample: int, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    size = _check(scene)
    if not isinstance(supersample, int) or supersample < 1:
        _fail(f"supersample must be a positive integer, got {supersample!r}")
    objs = _objects(scene)
    eye, gx, gy, gz = _grid(camera, size, 1)
    d = (gx.ravel(), gy.ravel(), gz.ravel())
    o = tuple(float(c) for c in eye)

    def crop(k: int) -> np.ndarray:
        u0, v0, u1, v1 = objs[k].box
        c0, c1 = max(0, math.floor(u0 - 0.5)), min(size, math.ceil(u1 + 0.5))
        r0, r1 = max(0, math.floor(v0 - 0.5)), min(size, math.ceil(v1 + 0.5))
        if c0 >= c1 or r0 >= r1:
            return np.empty(0, np.int64)
        return (np.arange(r0, r1)[:, None] * size + np.arange(c0, c1)[None, :]).ravel()

    t, ids = _nearest(objs, o, d, crop)
    rgb, key = _shade(objs, o, d, t, ids)
    rgb = rgb.reshape(size, size, 3)
    key = key.reshape(size, size)
    ids = ids.reshape(size, size)
    s = supersample
    if s > 1:
        edge = np.zeros((size, size), bool)
        dh = key[:, 1:] != key[:, :-1]
        dv = key[1:, :] != key[:-1, :]
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        edge[1:, :] |= dv
        edge[:-1, :] |= dv
        rows, cols = np.nonzero(edge)
        if rows.size:
            _, sx, sy, sz = _grid(camera, size, s)
            sub = np.arange(s)
            rr = (rows[:, None, None] * s + sub[None, :, None]).repeat(s, 2).reshape(-1)
            cc = (cols[:, None, None] * s + sub[None, None, :]).repeat(s, 1).reshape(-1)
            sd = (sx[rr, cc], sy[rr, cc], sz[rr, cc])
            u, v = (cc + 0.5) / s, (rr + 0.5) / s

            def inbox(k: int) -> np.ndarray:
                u0, v0, u1, v1 = objs[k].box
                return np.flatnonzero((u >= u0 - 0.5) & (u <= u1 + 0.5) & (v >= v0 - 0.5) & (v <= v1 + 0.5))

            st, sids = _nearest(objs, o, sd, inbox)
            srgb, _ = _shade(objs, o, sd, st, sids)
            rgb[rows, cols] = srgb.reshape(-1, s * s, 3).mean(1)
    return _to_bytes(rgb), ids


def render(scene: dict, supersample: int = DEFAULT_SUPERSAMPLE, camera: Camera = CAMERA) -> Image.Image:
    """The scene's picture: an RGB image of ``scene["image_size"]`` pixels square."""
    return Image.fromarray(_render_array(scene, supersample, camera)[0], "RGB")


def object_map(scene: dict, camera: Camera = CAMERA) -> np.ndarray:
    """[H, W] int: index of the object seen by each pixel-centre ray, -1 where the floor is."""
    return _render_array(scene, 1, camera)[1]
