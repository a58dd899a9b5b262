"""Shared test settings: small thread counts, opt-in real-data tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("MEDATTN_TEST_THREADS", "2")))

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the repository, or `$MEDATTN_SHARED_DATA`."""
    return Path(os.environ.get("MEDATTN_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--realdata", action="store_true", help="run the tests that read ../shared/data")


def pytest_collection_modifyitems(config, items):
    enabled = config.getoption("--realdata") or os.environ.get("MEDATTN_REAL_DATA") == "1"
    have = shared_data_dir().is_dir()
    for item in items:
        if "realdata" not in item.keywords:
            continue
        if not enabled:
            item.add_marker(pytest.mark.skip(reason="real-data test: pass --realdata or set MEDATTN_REAL_DATA=1"))
        elif not have:
            item.add_marker(pytest.mark.skip(reason=f"real data not found at {shared_data_dir()}"))


@pytest.fixture
def shared_data() -> Path:
    return shared_data_dir()
