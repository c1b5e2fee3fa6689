"""Guest profiles: which kernel version and which compiler a guest is built with (issue 15).

A profile is a Linux version whose source Debian packages (linux-source-X) and a compiler (gcc, or clang
with LLVM=1). Everything that depends on it reads the one selected here: the kernel tarball and config
fragments (guest/framecert.config, plus guest/framecert-<version>.config where Kconfig differs), the cache
keys (a profile's own package and compiler versions are facts of its key, so each profile is cached apart),
the make variables, and the reference objtool the crosscheck compares with. The default, 6.1/gcc, keys the
cache exactly as before profiles existed.

The selection travels to child processes and scripts through FRAMECERT_KERNEL / FRAMECERT_CC.
"""
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from . import paths
from .errors import UsageError

KERNELS = ("6.1", "6.12")
COMPILERS = ("gcc", "clang")
DEFAULT_CC = "gcc"
ENV_KERNEL, ENV_CC = "FRAMECERT_KERNEL", "FRAMECERT_CC"


@dataclass(frozen=True)
class Profile:
    kernel: str = "6.1"
    cc: str = DEFAULT_CC

    @property
    def name(self) -> str:
        return f"{self.kernel}-{self.cc}"

    @classmethod
    def named(cls, name: str) -> "Profile":
        """The profile a name stands for ("6.12-clang"; "6.12" alone: gcc), not checked against KERNELS (a
        kernel tree of one's own may be any version)."""
        kernel, _, cc = name.strip().partition("-")
        return cls(kernel, cc or DEFAULT_CC)

    @property
    def package(self) -> str:
        return f"linux-source-{self.kernel}"

    @property
    def tarball(self) -> Path:
        return Path(f"/usr/src/linux-source-{self.kernel}.tar.xz")

    @property
    def fragments(self) -> List[Path]:
        """The shared fragment, then this version's own lines (where Kconfig differs), if any."""
        own = paths.GUEST_SRC / f"framecert-{self.kernel}.config"
        return [paths.CONFIG_FRAGMENT] + ([own] if own.is_file() else [])

    @property
    def make_vars(self) -> List[str]:
        """What every make of the kernel and its modules gets besides ARCH."""
        return ["LLVM=1"] if self.cc == "clang" else []

    def reference_objtool(self) -> Optional[Path]:
        """objtool of the same kernel version, from Debian's linux-kbuild package (its `objtool` wrapper for
        6.12 needs SRCARCH; the real x86 binary beside it does not)."""
        if self.kernel == "6.1":
            candidates = ["/usr/lib/linux-kbuild-6.1/tools/objtool/objtool"]
        else:
            candidates = sorted(glob.glob(f"/usr/lib/linux-kbuild-{self.kernel}.*/tools/objtool/objtool.real-x86"))
        found = [Path(c) for c in candidates if os.access(c, os.X_OK)]
        return found[-1] if found else None


DEFAULT = Profile()
_current: Optional[Profile] = None  # None: not chosen yet, so the environment's (or the default)


def parse(kernel: Optional[str], cc: Optional[str]) -> Profile:
    """A profile from command-line values (None: the environment's, else the default's); a UsageError names
    the known values."""
    kernel = kernel or os.environ.get(ENV_KERNEL) or DEFAULT.kernel
    cc = cc or os.environ.get(ENV_CC) or DEFAULT.cc
    if kernel not in KERNELS:
        raise UsageError(f"unknown kernel {kernel!r} (profiles: {', '.join(KERNELS)})")
    if cc not in COMPILERS:
        raise UsageError(f"unknown compiler {cc!r} (profiles: {', '.join(COMPILERS)})")
    return Profile(kernel, cc)


def select(profile: Profile) -> Profile:
    """Makes `profile` the one every build, key and lookup uses, here and in child processes."""
    global _current
    _current = profile
    os.environ[ENV_KERNEL], os.environ[ENV_CC] = profile.kernel, profile.cc
    return profile


def current() -> Profile:
    global _current
    if _current is None:
        _current = parse(None, None)
    return _current


def add_arguments(parser) -> None:
    """--kernel and --cc on a command that builds or finds a guest."""
    parser.add_argument("--kernel", choices=KERNELS, default=None,
                        help=f"guest kernel version (default: ${ENV_KERNEL} or {DEFAULT.kernel})")
    parser.add_argument("--cc", choices=COMPILERS, default=None,
                        help=f"compiler the guest kernel is built with (default: ${ENV_CC} or {DEFAULT.cc})")
