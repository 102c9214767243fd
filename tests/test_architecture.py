"""The tree is the architecture: stages import only downward, no loose modules, and
docs/architecture.md states the same order."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "cache_tools": ["errors", "infra", "sources", "store", "encoders", "config", "write"],
    "tflocal": [
        "errors", "config", "concepts", "shapesworld", "world3d", "pairs", "models",
        "scoring", "retrieval", "evaluate", "training", "app",
    ],
}
"""Each package's stages, bottom first: a stage imports only the stages before it (and, for
tflocal, anything of cache_tools; cache_tools never imports tflocal)."""

TOP = {"__init__", "__main__"}


def stage_of(module: str) -> tuple[str, str] | None:
    """``tflocal.models.segment_head`` -> ("tflocal", "models"); None outside the two packages."""
    parts = module.split(".")
    if parts[0] not in LAYERS:
        return None
    return parts[0], parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in a file, module-level or inside a function: (line, module)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module.count(".") else [f"{node.module}.{a.name}" for a in node.names]
            out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, stage_of(".".join(path.relative_to(ROOT).with_suffix("").parts))


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_loose_module_outside_the_stages(package):
    top = {p.stem for p in (ROOT / package).glob("*.py")} | {
        p.name for p in (ROOT / package).iterdir() if (p / "__init__.py").exists()
    }
    assert top - TOP == set(LAYERS[package]), "a module or sub-package is not in LAYERS"


def violations(package: str, files) -> list[str]:
    """Imports that go up the stage order (or from cache_tools into tflocal), for ``files``:
    (path, its (package, stage)) pairs."""
    order = LAYERS[package]
    bad = []
    for path, (_, stage) in files:
        if stage in TOP:
            continue
        for line, name in imports_of(path):
            target = stage_of(name)
            if target is None:
                continue
            pkg, tstage = target
            if pkg == package and tstage not in order:
                tstage = "__init__"  # `from tflocal import __version__`: the package root
            if package == "cache_tools" and pkg == "tflocal":
                bad.append(f"{path.name}:{line} imports {name} (cache_tools stands alone)")
            elif pkg == package and tstage not in TOP and order.index(tstage) > order.index(stage):
                bad.append(f"{path}:{line} imports {name} (upward: {stage} -> {tstage})")
    return bad


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_stage_imports_only_downward(package):
    bad = violations(package, modules(package))
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    up = tmp_path / "x.py"
    up.write_text("import torch\nfrom tflocal.models import build_head\n\n\ndef f():\n    from tflocal.app.cli import main\n")
    assert violations("tflocal", [(up, ("tflocal", "models"))]) == [f"{up}:6 imports tflocal.app.cli (upward: models -> app)"]
    assert violations("tflocal", [(up, ("tflocal", "app"))]) == []
    assert len(violations("cache_tools", [(up, ("cache_tools", "write"))])) == 2


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_architecture_doc_states_the_same_order(package):
    doc = (ROOT / "docs" / "architecture.md").read_text()
    line = f"`{package}`: " + " → ".join(LAYERS[package])
    assert line in doc, f"docs/architecture.md should hold the line: {line}"
