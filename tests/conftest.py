"""Shared fixtures. ``shared_data``: the real keypoint data (see /work/shared/data/README.md)."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real data: ``$HEATMAPNET_DATA``, else ``<repo>/../shared/data``; skips if absent."""
    env = os.environ.get("HEATMAPNET_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("real data not found: set HEATMAPNET_DATA or place it at ../shared/data")
    return path
