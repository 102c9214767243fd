"""Rendering the 3D world: the same bytes for any number of workers, a killed run resumes to the
same output, ``tflocal shapes --world 3d`` writes what the cache source reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tflocal.errors import UserError
from tflocal.world3d import generate


def _digest(root: Path) -> dict[str, str]:
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and "parts" not in p.parts and p.name != "meta.json"
    )
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_output_for_any_workers_and_after_resume(tmp_path: Path) -> None:
    kw = dict(n_train=6, n_test=3, n_novel=2, seed=1, image_size=64, progress=False)
    one = generate(tmp_path / "one", workers=1, **kw)
    generate(tmp_path / "two", workers=2, **kw)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    assert one["counts"]["test_ood"]["pairs"] == 3 and one["counts"]["test_novel"]["pairs"] == 2
    # a killed run: some items never finished, a manifest never written
    root = tmp_path / "two"
    for part in sorted((root / "parts" / "train").glob("*.json"))[2:]:
        part.unlink()
    (root / "test_id.jsonl").unlink()
    generate(root, workers=2, **kw)
    assert _digest(root) == _digest(tmp_path / "one")


def test_manifest_lines_and_images(tmp_path: Path) -> None:
    generate(tmp_path, n_train=4, n_test=2, n_novel=0, image_size=64, workers=1, progress=False)
    lines = [json.loads(s) for s in (tmp_path / "test_ood.jsonl").read_text().splitlines()]
    assert [ln["role"] for ln in lines] == ["original", "negative"] * 2
    for ln in lines:
        assert (tmp_path / ln["image"]).is_file()
    assert not (tmp_path / "test_novel.jsonl").exists()


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path) -> None:
    generate(tmp_path, n_train=2, n_test=1, n_novel=0, image_size=64, workers=1, progress=False)
    with pytest.raises(UserError, match="other settings"):
        generate(tmp_path, n_train=2, n_test=1, n_novel=0, seed=9, image_size=64, workers=1, progress=False)


def test_shapes_command_renders_the_3d_world(tmp_path: Path, capsys) -> None:
    from tflocal.app.cli import main

    out = tmp_path / "w"
    args = ["shapes", "--world", "3d", "--out", str(out), "--n-train", "3", "--n-test", "2", "--image-size", "64"]
    assert main([*args, "--quiet", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "test_ood: 4 images (2 minimal pairs)" in printed
    assert json.loads((out / "meta.json").read_text())["generator"] == "tflocal.world3d"
    assert main(["shapes", "--world", "3d", "--out", str(out), "--counterfactual"]) == 2
    assert "ShapesWorld (--world 2d) options" in capsys.readouterr().err
