"""Fixtures with tiny random-weight encoders on disk (see ``helpers.tiny_models``), one model
directory per pytest run (``scope="session"``).

Each fixture returns the registry name that ``cache_tools.encoders.load_encoder`` loads.
tests/conftest.py imports them, so every test can ask for them by name.
"""

from __future__ import annotations

import pytest

from helpers.tiny_models import make_tiny_hf_clip, make_tiny_hf_siglip, make_tiny_openclip


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_openclip(tiny_models_dir) -> str:
    """``openclip:<dir>``: open_clip ViT CLIP, 32 px, grid 4x4, joint dim 16, context 16."""
    return make_tiny_openclip(tiny_models_dir)


@pytest.fixture(scope="session")
def tiny_hf_clip(tiny_models_dir) -> str:
    """``hf:<dir>``: transformers CLIPModel, 32 px, grid 4x4, joint dim 16, context 16."""
    return make_tiny_hf_clip(tiny_models_dir)


@pytest.fixture(scope="session")
def tiny_hf_siglip(tiny_models_dir) -> str:
    """``hf:<dir>``: transformers SiglipModel, 32 px, grid 4x4, widths 24, context 16."""
    return make_tiny_hf_siglip(tiny_models_dir)
