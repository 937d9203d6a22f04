from __future__ import annotations

from pathlib import Path

import pytest

REALCLIPS = Path(__file__).resolve().parents[2] / "shared" / "realclips"


@pytest.fixture(scope="session")
def realclips() -> Path:
    """../shared/realclips beside the checkout (read-only test data, never copied into the repo)."""
    if not REALCLIPS.is_dir():
        pytest.skip(f"{REALCLIPS} is absent: the real-clip checks need the project's shared/ folder beside the checkout")
    return REALCLIPS


@pytest.fixture(scope="session")
def i3d_kinetics():
    """The real pretrained I3D, fetched and converted on first use (CI fetches it before the tests)."""
    from actionrec import load_model

    return load_model("i3d-kinetics400")
