"""framecert's Python API: boot the guest, walk every task, decide live-patch switches, run seeded stress —
with typed results. The implementation is the guest harness (framecert_guest.api); see its docstring for an
example, and README.md ("Scripting it from Python")."""
from framecert_guest.api import Decision, Guest, PatchCheck, Stress, Truth, patch_check, stress, walk
from framecert_guest.errors import GuestError, UsageError
from framecert_guest.model import Frame, Task, WalkReport
from framecert_guest.paths import version as _version

__version__ = _version().split(" ")[0]
__all__ = ["Decision", "Frame", "Guest", "GuestError", "PatchCheck", "Stress", "Task", "Truth", "UsageError",
           "WalkReport", "patch_check", "stress", "walk"]
