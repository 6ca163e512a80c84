"""Shared test set-up: everything offline, small thread counts, a fresh workspace per test."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from rhizome.workspace import Workspace  # noqa: E402


@pytest.fixture
def ws(tmp_path):
    """An empty workspace in a temp folder."""
    return Workspace(tmp_path / "ws").ensure()
