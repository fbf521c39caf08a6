import os

# Hubs are unreachable here: fail fast instead of retrying for ~46 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["COLUMNS"] = "200"  # rich tables: no truncated names in captured output
if not os.environ.get("MODELRANK_CACHE"):  # what a test writes without a cache of its own stays out of ~/.cache
    import atexit
    import shutil
    import tempfile

    os.environ["MODELRANK_CACHE"] = tempfile.mkdtemp(prefix="modelrank-tests-")
    atexit.register(shutil.rmtree, os.environ["MODELRANK_CACHE"], ignore_errors=True)

from pathlib import Path

import numpy as np
import pytest

#: ../shared/anchors next to the checkout; MODELRANK_ANCHORS points elsewhere (e.g. from a git worktree).
ANCHORS = Path(os.environ.get("MODELRANK_ANCHORS") or Path(__file__).resolve().parents[1].parent / "shared" / "anchors")


@pytest.fixture
def anchors() -> Path:
    if not ANCHORS.is_dir():
        pytest.skip(f"public anchor data not found at {ANCHORS}")
    return ANCHORS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MODELRANK_CACHE", str(path))
    return path


from cli_helpers import cli  # noqa: E402,F401  (fixture: run the real entry point in-process)
