"""The cache keys over every build input, and atomic publication of a finished build.

Two layers, so that editing a test module costs seconds, not a kernel build:
  ${cache}/kernel-<kkey>  the kernel tree, keyed by the config fragment and the toolchain/package versions;
  ${cache}/guest-<gkey>   the modules and the initramfs, keyed by their sources and by <kkey>; its `linux`
                          is a symlink into the kernel layer.
Each is created by renaming a finished temporary directory, so its existence alone means "complete". A
per-key lock file serialises concurrent builds of the same inputs.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from typing import IO, Optional
from pathlib import Path

from . import paths, profiles
from .errors import GuestError

# Bump when the build steps change in a way that changes the artefacts (the Python code is not hashed,
# so that editing a comment does not cost a 4-minute rebuild).
RECIPE_VERSION = "2"

# Files a developer's manual build may leave in the source folders: not inputs.
_BUILD_DEBRIS_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".symvers", ".order", ".pyc", ".swp")


def _is_input(path: Path) -> bool:
    return path.is_file() and not path.name.endswith(_BUILD_DEBRIS_SUFFIXES) and "__pycache__" not in path.parts


def source_files(dirs, files=()) -> dict:
    """Every input file under `dirs` plus `files`, keyed by a stable name: the path relative to the repository,
    so that two clones in different places share their cached builds."""
    found = {}
    for f in files:
        found[_rel(f)] = Path(f)
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if _is_input(p):
                found[_rel(p)] = p
    return found


def _rel(p) -> str:
    p = Path(p)
    try:
        return str(p.resolve().relative_to(paths.REPO.resolve()))
    except ValueError:
        return str(p)


def compute_key(files: dict, facts: dict) -> str:
    """Hash of the named files' contents and of the facts (versions): independent of order and mtime."""
    h = hashlib.sha256()
    for name in sorted(files):
        data = Path(files[name]).read_bytes()
        h.update(f"file {name} {len(data)}\n".encode())
        h.update(data)
    for name in sorted(facts):
        h.update(f"fact {name}={facts[name]}\n".encode())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _command_output(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise GuestError(f"cannot run {' '.join(cmd)}: {e}") from None


def kernel_facts() -> dict:
    """Versions of the tools and packages that shape the kernel: the profile's source package and compiler
    (the default profile's facts are what they were before profiles existed, so its key is unchanged)."""
    profile = profiles.current()
    facts = {
        "recipe": RECIPE_VERSION,
        "kernel-package": _command_output(["dpkg-query", "-W", "-f=${Version}", profile.package]),
        "gcc": _command_output(["gcc", "--version"]).splitlines()[0],
    }
    if profile.cc == "clang":
        facts["clang"] = _command_output(["clang", "--version"]).splitlines()[0]
    return facts


def build_facts() -> dict:
    """Everything that shapes a guest: the kernel's facts, its key, and the busybox it ships."""
    return {**kernel_facts(), "kernel": kernel_key(), "busybox": file_digest(paths.BUSYBOX)}


def _require_inputs(*required):
    for path in required:
        if not Path(path).exists():
            raise GuestError(f"missing build input {path} (run scripts/setup)")


def kernel_key() -> str:
    profile = profiles.current()
    _require_inputs(*profile.fragments, profile.tarball)
    return compute_key(source_files([], profile.fragments), kernel_facts())


def guest_key() -> str:
    _require_inputs(paths.BUSYBOX)
    # The regression module's generator is a template too: its output is a build input.
    return compute_key(source_files(paths.GUEST_LAYER_SRC, [paths.REGRESS_GENERATOR]), build_facts())


class BuildSlot:
    """Exclusive right to build one key of one layer ("guest" or "kernel"): `tmp` to build in, `publish()`
    to make it the cached directory.

    On any exit without publish() the temporary directory is deleted, so nothing half-built survives.
    """

    def __init__(self, root: Path, key: str, layer: str = "guest"):
        self.root = Path(root)
        self.final = self.root / f"{layer}-{key}"
        self.tmp = self.root / f"{layer}-{key}.tmp"
        self._lock_path = self.root / f"{layer}-{key}.lock"
        self._lock: Optional[IO[str]] = None

    def __enter__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = lock = open(self._lock_path, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"framecert-guest: waiting for another build of {self.final.name}", file=sys.stderr,
                  flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        # Holding the lock, any temporary directory left is debris from an interrupted build.
        if self.tmp.exists():
            discard(self.tmp)
        return self

    def done(self) -> bool:
        """True when the layer is already published (e.g. by the build we waited for)."""
        return self.final.is_dir()

    def publish(self):
        os.rename(self.tmp, self.final)

    def __exit__(self, *exc):
        if self.tmp.exists():
            discard(self.tmp)
        if self._lock:
            self._lock.close()
        return False


def discard(tree: Path):
    """Removes a (possibly 2 GB) tree without making the user wait: deleting ~70k files can take minutes
    here (ext4 discards on every unlink). The rename is instant and frees the name at once; a detached
    `rm -rf` does the rest, even if we are exiting."""
    trash = tree.with_name(f"{tree.name}.trash-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(tree, trash)
        subprocess.Popen(["rm", "-rf", "--", str(trash)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        shutil.rmtree(tree, ignore_errors=True)
