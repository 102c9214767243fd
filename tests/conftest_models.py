"""Session-scoped fixtures with tiny random-weight encoders on disk (see tests/tiny_models.py).

Each fixture returns the registry name that ``cache_tools.encoders.load_encoder`` loads; the
model directory is written once per test session. Import the fixtures into a test module
(``from conftest_models import tiny_openclip``) or into tests/conftest.py.
"""

from __future__ import annotations

import pytest
from tiny_models import make_tiny_hf_clip, make_tiny_hf_siglip, make_tiny_openclip


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
