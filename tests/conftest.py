"""Test-suite guards shared by every tier."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _never_initialise_distributed_in_the_test_process():
    """Multi-rank tests fork workers from this process; a process group created here would be
    inherited by every later worker and silently break it. Tests must use tests/dist.py instead."""
    yield
    import torch.distributed as dist

    assert not dist.is_initialized(), "a test initialised torch.distributed in the pytest process"


# The tier folders mark their tests, so `-m` selects a tier whatever a file remembers to declare.
_TIER_FOLDERS = {"multirank": "dist", "e2e": "e2e", "slurm": "slurm", "gpu": "gpu"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for folder, marker in _TIER_FOLDERS.items():
            if folder in item.path.parts and marker not in item.keywords:
                item.add_marker(getattr(pytest.mark, marker))
