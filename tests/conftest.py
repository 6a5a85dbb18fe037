"""Shared fixtures: a tiny seeded generator saved as a model directory."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import random_weights  # noqa: E402

import ganserve  # noqa: E402


def has_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    cuda = None
    for item in items:
        if "gpu" in item.keywords:
            cuda = has_cuda() if cuda is None else cuda
            if not cuda:
                item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_config():
    """dcgan28 at width 8: every op of the DCGAN family, fast enough for any test."""
    return ganserve.create_config("dcgan28", width=8, latent_dim=16)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_config) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    ganserve.save_model(path, tiny_config, random_weights(tiny_config, seed=1), {"purpose": "tests"})
    return path


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir) -> Path:
    """A writable copy of the tiny model directory."""
    import shutil

    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))
