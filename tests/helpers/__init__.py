"""Shared test helpers, importable as ``helpers`` (pytest puts ``tests/`` on ``sys.path``).

``ROOT`` is the repository root and ``TESTS`` the ``tests/`` folder, for tests that reach files
on disk (recipes, docs, bench scripts) or start subprocesses that import ``helpers``.
"""

from __future__ import annotations

import importlib.util
import os
import types
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def _run_python(script: str, *args: str):
    """``python -c script args`` with the project importable -> its CompletedProcess (text)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath()}
    return subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300
    )


def run_until_killed(script: str, *args: str) -> None:
    """Run ``python -c script args``; it must end itself with exit code 9 (``os._exit(9)``, a
    kill mid-write); otherwise fail with its stderr."""
    out = _run_python(script, *args)
    assert out.returncode == 9, out.stderr[-2000:]


def run_to_a_clean_exit(script: str, *args: str) -> str:
    """Run ``python -c script args`` -> its stdout; it must exit 0 with nothing reported on
    stderr (no traceback, no "Exception ignored", no crash)."""
    out = _run_python(script, *args)
    assert out.returncode == 0 and not out.stderr.strip(), (out.returncode, out.stdout, out.stderr[-2000:])
    return out.stdout


def subprocess_pythonpath() -> str:
    """A ``PYTHONPATH`` for a child Python that imports the project and ``helpers``: the repository
    root, ``tests/``, then whatever ``PYTHONPATH`` this process was given."""
    extra = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(ROOT), str(TESTS), *([extra] if extra else [])])


def load_script(relative: str, name: str | None = None) -> types.ModuleType:
    """A script of the repository that is not a package module (``bench/x.py``, ``tools/x.py``),
    imported from its file: ``relative`` to the repository root."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
