"""Makes harness/framecert_guest importable for the tests (run by /usr/bin/python3 -m pytest), and gives the VM
tests their guest."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "harness"))


@pytest.fixture(scope="module")
def guest_dir():
    """The guest for the current sources: from the cache, or built now (the first time, ~4 min)."""
    r = subprocess.run([REPO / "scripts" / "framecert-guest", "build"], capture_output=True, text=True, timeout=2400)
    assert r.returncode == 0, r.stderr[-2000:]
    return Path(r.stdout.strip().splitlines()[-1])
