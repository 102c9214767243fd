"""Shared test set-up: CPU only, few threads, deterministic seeds, the tiny model fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")
if "TFLOCAL_CACHE_DIR" not in os.environ:  # exported ONNX towers go to a folder of this run's
    import atexit
    import shutil
    import tempfile

    os.environ["TFLOCAL_CACHE_DIR"] = tempfile.mkdtemp(prefix="tflocal-tests-")
    atexit.register(shutil.rmtree, os.environ["TFLOCAL_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

from helpers.model_fixtures import (  # noqa: E402,F401  (fixtures: found here by name)
    tiny_hf_clip,
    tiny_hf_siglip,
    tiny_models_dir,
    tiny_openclip,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny models run fastest so; the CPU may be shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
