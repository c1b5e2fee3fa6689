"""Where the guest's inputs live in the repository, where builds are cached, and the framecert binary."""
import os
from pathlib import Path

from .errors import GuestError

REPO = Path(__file__).resolve().parents[2]
GUEST_SRC = REPO / "guest"
CONFIG_FRAGMENT = GUEST_SRC / "framecert.config"
MODULE_SRC = GUEST_SRC / "module"
INITRAMFS_SRC = GUEST_SRC / "initramfs"
REGRESS_SRC = GUEST_SRC / "regress"      # templates of the regression module (fcregress.ko)
LIVEPATCH_SRC = GUEST_SRC / "livepatch"  # the livepatch module (fcpatch.ko) checked against the kernel
# What the guest layer (modules + initramfs) is built from; the kernel layer needs only CONFIG_FRAGMENT.
GUEST_LAYER_SRC = (MODULE_SRC, INITRAMFS_SRC, REGRESS_SRC, LIVEPATCH_SRC)
REGRESS_GENERATOR = REPO / "harness" / "framecert_guest" / "regress.py"

BUSYBOX = Path("/bin/busybox")


def cache_root() -> Path:
    """${XDG_CACHE_HOME:-$HOME/.cache}/framecert, as the XDG spec says (an empty variable counts as unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "framecert"


# The framecert binary the harness runs (validator, guest walker, CFI oracle, metadata cache).
FRAMECERT_BIN = Path(os.environ.get("FRAMECERT_BIN", REPO / "build" / "harness" / "cli" / "framecert"))


def framecert_bin() -> Path:
    """FRAMECERT_BIN, or a GuestError saying how to build it."""
    if not FRAMECERT_BIN.is_file():
        raise GuestError(f"{FRAMECERT_BIN} not built (cmake -S . -B build -G Ninja && ninja -C build)")
    return FRAMECERT_BIN


def version() -> str:
    """The project version (CMakeLists.txt's `project(... VERSION ...)`, the one source of it) and the commit
    of this checkout, as `framecert --version` prints them."""
    import re
    import subprocess
    try:
        m = re.search(r"project\(framecert VERSION (\S+)", (REPO / "CMakeLists.txt").read_text())
    except OSError:
        m = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{m.group(1) if m else 'unknown'} (commit {commit or 'unknown'})"
