"""Shared test helpers, importable as ``helpers`` (pytest puts ``tests/`` on ``sys.path``).

``ROOT`` is the repository root and ``TESTS`` the ``tests/`` folder, for tests that reach files
on disk (recipes, docs, bench scripts) or start subprocesses that import ``helpers``.
"""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def subprocess_pythonpath() -> str:
    """A ``PYTHONPATH`` for a child Python that imports the project and ``helpers``: the repository
    root, ``tests/``, then whatever ``PYTHONPATH`` this process was given."""
    extra = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(ROOT), str(TESTS), *([extra] if extra else [])])
