"""The 3D world's renderer at tiny sizes: deterministic bytes, object colour where the object
is and grey floor elsewhere, a shadow away from the key light, metal shinier than rubber, the
region boxes holding every pixel an object covers, edge-only supersampling, clear bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tflocal.world3d.camera import CAMERA
from tflocal.world3d.render import LIGHT_DIR, object_map, region_boxes, render
from tflocal.world3d.scene import sample_scene
from tflocal.world3d.vocab import COLORS, SIZES

SIZE = 64


def obj(shape="sphere", color="red", material="rubber", size="large", pos=(0.0, 0.5, 0.0), yaw=30.0) -> dict:
    return {
        "shape": shape,
        "color": color,
        "material": material,
        "size": size,
        "radius": SIZES[size],
        "position": list(pos),
        "yaw": yaw,
    }


def scene(*objects: dict, size: int = SIZE) -> dict:
    return {"image_size": size, "objects": list(objects), "relations": []}


def pixels(sc: dict, supersample: int = 1) -> np.ndarray:
    """[H, W, 3] int RGB."""
    return np.asarray(render(sc, supersample)).astype(int)


def floor_points(size: int) -> np.ndarray:
    """[H, W, 3] where each pixel-centre ray meets the floor."""
    eye, d = CAMERA.rays(size)
    t = -eye[2] / d[..., 2]
    return eye + t[..., None] * d


def test_render_is_an_rgb_square_and_the_same_bytes_twice():
    sc = sample_scene(random.Random(3), SIZE)
    a, b = render(sc), render(sc)
    assert a.mode == "RGB" and a.size == (SIZE, SIZE)
    assert a.tobytes() == b.tobytes()
    moved = scene(*[{**o, "position": [o["position"][0] + 0.3, *o["position"][1:]]} for o in sc["objects"]])
    assert render(moved).tobytes() != a.tobytes()


def test_sphere_centre_has_its_colour_and_the_floor_is_grey_elsewhere():
    sc = scene(obj(color="red"))
    img = pixels(sc)
    uv, _ = CAMERA.project(np.array([[0.0, 0.5, SIZES["large"]]]), SIZE)
    u, v = (int(c) for c in uv[0])
    r, g, b = img[v, u]
    assert r > 2 * g and r > 2 * b and r > 80
    ids = object_map(sc)
    assert ids[v, u] == 0
    for y, x in [(2, 2), (60, 4), (60, 60), (8, 56)]:
        assert ids[y, x] == -1
        r, g, b = img[y, x]
        assert max(r, g, b) - min(r, g, b) <= 4 and 60 < r < 230


def test_every_colour_shows_as_itself_on_a_rubber_cube():
    for name, rgb in COLORS.items():
        sc = scene(obj("cube", name, size="large"))
        img, ids = pixels(sc), object_map(sc)
        seen = img[ids == 0].mean(0)
        target = np.asarray(rgb, float)
        # the shaded colour points the way of the base colour (RGB directions compared)
        cos = seen @ target / (np.linalg.norm(seen) * np.linalg.norm(target))
        others = [np.asarray(c, float) for n, c in COLORS.items() if n != name]
        rival = max(seen @ c / (np.linalg.norm(seen) * np.linalg.norm(c)) for c in others)
        assert cos > 0.97 and cos >= rival, name


def test_a_shadow_falls_away_from_the_key_light():
    r = SIZES["large"]
    centre = np.array([0.0, 0.5, r])
    sc = scene(obj(pos=(0.0, 0.5, 0.0)))
    size = 96
    sc["image_size"] = size
    img, ids = pixels(sc), object_map(sc)
    q = floor_points(size)
    to_c = centre - q
    along = to_c @ np.asarray(LIGHT_DIR)
    off = np.sqrt(np.maximum((to_c**2).sum(-1) - along**2, 0))
    floor = ids == -1
    near = np.hypot(q[..., 0] - centre[0], q[..., 1] - centre[1]) < 3.0
    shadow = floor & (along > 0) & (off < 0.8 * r)
    lit = floor & near & (off > 1.5 * r)
    assert shadow.sum() >= 10 and lit.sum() >= 100
    dark, bright = img[shadow].mean(), img[lit].mean()
    assert dark < 0.75 * bright
    # the same floor with the sphere gone is lit there
    empty = pixels(scene(size=size))
    assert empty[shadow].mean() > 0.9 * bright


def test_metal_is_shinier_than_rubber_of_the_same_colour():
    rubber, metal = scene(obj(material="rubber")), scene(obj(material="metal"))
    ids = object_map(rubber)
    assert (ids == object_map(metal)).all()
    r_px, m_px = pixels(rubber)[ids == 0], pixels(metal)[ids == 0]
    # the highlight: how white the whitest object pixel is (its smallest channel)
    assert m_px.min(1).max() > r_px.min(1).max() + 50
    assert np.abs(m_px - r_px).mean() > 10


@pytest.mark.parametrize("shape", ["sphere", "cube", "cylinder"])
def test_region_box_holds_the_objects_pixels(shape):
    sc = scene(obj(shape, "red", pos=(0.8, 0.0, 0.0), yaw=35.0))
    (u0, v0, u1, v1) = region_boxes(sc)[0]
    ids = object_map(sc)
    rows, cols = np.nonzero(ids == 0)
    assert rows.size > 20
    assert ((cols + 0.5 >= u0) & (cols + 0.5 <= u1) & (rows + 0.5 >= v0) & (rows + 0.5 <= v1)).all()
    # and it is not loose: the object spans most of it
    assert cols.max() - cols.min() + 1 >= 0.6 * (u1 - u0)
    assert rows.max() - rows.min() + 1 >= 0.6 * (v1 - v0)
    # the rendered image (edges antialiased): the red pixels lie in the box grown by a pixel
    img = pixels(sc, supersample=2)
    red_rows, red_cols = np.nonzero(img[..., 0] > img[..., 1] + 30)
    assert red_rows.size >= 0.8 * rows.size
    assert (red_cols + 1 > u0).all() and (red_cols < u1).all()
    assert (red_rows + 1 > v0).all() and (red_rows < v1).all()


def test_region_boxes_hold_every_object_of_sampled_scenes():
    rng = random.Random(7)
    for _ in range(4):
        sc = sample_scene(rng, SIZE)
        ids = object_map(sc)
        boxes = region_boxes(sc)
        assert len(boxes) == len(sc["objects"])
        assert {int(k) for k in np.unique(ids)} <= set(range(-1, len(boxes)))
        for k, (u0, v0, u1, v1) in enumerate(boxes):
            rows, cols = np.nonzero(ids == k)
            assert ((cols + 0.5 >= u0) & (cols + 0.5 <= u1) & (rows + 0.5 >= v0) & (rows + 0.5 <= v1)).all()


def near_a_jump(a: np.ndarray, tol: float = 0) -> np.ndarray:
    """[H, W] bool: pixels with a 4-neighbour whose value differs by more than ``tol`` (``a`` [H, W])."""
    a = a.astype(float)
    d_h, d_v = np.abs(a[:, 1:] - a[:, :-1]) > tol, np.abs(a[1:] - a[:-1]) > tol
    out = np.zeros(a.shape, bool)
    out[:, 1:] |= d_h
    out[:, :-1] |= d_h
    out[1:] |= d_v
    out[:-1] |= d_v
    return out


def test_supersampling_changes_edge_pixels_only():
    sc = sample_scene(random.Random(5), SIZE)
    one, two = pixels(sc, 1), pixels(sc, 2)
    changed = (one != two).any(-1)
    object_edge = near_a_jump(object_map(sc))
    shadow_edge = near_a_jump(one.sum(-1), tol=45)  # the floor's lit / shadowed step
    ids = object_map(sc)
    metal = [k for k, o in enumerate(sc["objects"]) if o["material"] == "metal"]
    mirror = np.isin(ids, metal)  # a metal surface mirrors other objects' edges: edges too
    assert changed.sum() > 10 and (changed & object_edge).sum() > 0.5 * changed.sum()
    assert not (changed & ~object_edge & ~shadow_edge & ~mirror).any()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (scene(obj(color="pink")), "color 'pink'"),
        (scene(obj(shape="cone")), "shape 'cone'"),
        (scene(obj(material="glass")), "material 'glass'"),
        ({"image_size": 0, "objects": []}, "image_size"),
        ({"objects": [{"shape": "cube"}]}, "lacks"),
    ],
)
def test_bad_scene_is_one_clear_line(bad, message):
    with pytest.raises(ValueError, match="^render: ") as err:
        render(bad)
    assert message in str(err.value) and "\n" not in str(err.value)
