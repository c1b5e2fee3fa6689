"""Makes harness/framecert_guest importable for the tests (run by /usr/bin/python3 -m pytest)."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "harness"))
