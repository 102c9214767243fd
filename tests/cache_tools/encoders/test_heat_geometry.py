"""Where cached patches sit in the original image: the towers' resize 256 + center crop 224
geometry, and on ShapesWorld scenes a word's heat maximum landing inside its object's box."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cache_tools.encoders.geometry import cell_centers, covered_box, geometry_of, patch_point
from cache_tools.encoders.towers import lite_transform
from tflocal.shapesworld.draw import draw_scene
from tflocal.shapesworld.scene import sample_scene

TOWERS = {"encoder": "towers:effnet-lite0+minilm", "image_size": [224, 224], "grid": [7, 7]}


def test_covered_box_and_cell_centers():
    geo = geometry_of(TOWERS)
    assert geo == {"mode": "center_crop", "resize": 256, "crop": 224}
    assert covered_box(geo, 224, 224) == pytest.approx((14, 14, 210, 210))
    # a wide image: the shorter side (100) is resized to 256, the crop keeps 87.5 px of it, centred
    assert covered_box(geo, 300, 100) == pytest.approx((106.25, 6.25, 193.75, 93.75))
    xs, ys = cell_centers(geo, (7, 7), 224, 224)
    assert xs == pytest.approx(14 + (np.arange(7) + 0.5) * 28) and ys == pytest.approx(xs)
    assert patch_point(geo, (7, 7), 224, 224, 7 * 2 + 5) == pytest.approx((14 + 5.5 * 28, 14 + 2.5 * 28))
    assert covered_box({"mode": "stretch", "crop": 224}, 300, 100) == (0, 0, 300, 100)
    assert covered_box(None, 30, 20) == (0, 0, 30, 20)
    # CLIP-style caches without the attribute: resize to the crop size, then the central square
    assert covered_box(geometry_of({"encoder": "openclip:x", "image_size": [224, 224]}), 448, 224) == (
        pytest.approx((112, 0, 336, 224))
    )
    # recorded geometry wins (also as the JSON string an HDF5 attribute may hold)
    assert geometry_of({**TOWERS, "patch_geometry": '{"mode": "stretch", "crop": 224}'})["mode"] == "stretch"
    with pytest.raises(ValueError, match="mode"):
        covered_box({"mode": "nope"}, 10, 10)


def _object_heat(scene: dict, obj: dict, transform) -> np.ndarray:
    """A perfect word->region head for one object: the share of each 7x7 cell of the encoder's
    view (its real resize + crop of the drawn image) that the object covers, [7, 7]."""
    alone = draw_scene({**scene, "objects": [obj]})
    blank = draw_scene({**scene, "objects": []})
    diff = np.abs(np.asarray(alone, np.int16) - np.asarray(blank, np.int16)).sum(-1) > 30
    from PIL import Image

    view = np.asarray(transform(Image.fromarray((diff * 255).astype(np.uint8))), np.float32) / 255
    s = view.shape[0] // 7
    return view[: 7 * s, : 7 * s].reshape(7, s, 7, s).mean((1, 3))


def test_word_heat_maximum_lands_inside_its_object():
    """On 40 ShapesWorld scenes, each object's heat maximum mapped back through the towers'
    geometry falls inside the object's box for >= 90% of the objects; drawn over the whole
    image (the old plotting) it does clearly less often."""
    rng = random.Random(0)
    transform = lite_transform(224, normalize=False)
    geo = geometry_of(TOWERS)
    hits = naive = total = 0
    for _ in range(40):
        scene = sample_scene(rng, 224, [], [])
        for obj in scene["objects"]:
            heat = _object_heat(scene, obj, transform)
            if heat.max() <= 0:  # wholly outside the crop: the encoder never saw it
                continue
            cell = int(heat.argmax())
            x, y = patch_point(geo, (7, 7), 224, 224, cell)
            r, c = divmod(cell, 7)
            nx, ny = (c + 0.5) * 32, (r + 0.5) * 32
            total += 1
            hits += abs(x - obj["x"]) <= obj["r"] and abs(y - obj["y"]) <= obj["r"]
            naive += abs(nx - obj["x"]) <= obj["r"] and abs(ny - obj["y"]) <= obj["r"]
    print(f"inside box: {hits}/{total} with the geometry, {naive}/{total} over the whole image")
    assert total >= 60
    assert hits / total >= 0.9, (hits, naive, total)
    assert hits / total >= naive / total + 0.1, (hits, naive, total)
