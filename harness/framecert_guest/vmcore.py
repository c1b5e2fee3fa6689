"""Kernel dumps of the guest: written from a frozen guest (QMP dump-guest-memory) and walked offline by the C++
guest walker (`framecert walk --vmcore`, harness/cli/vmcore_walk.h), into the same WalkReport as a live walk.

QEMU 7.2 writes its kdump formats in makedumpfile's flattened form, which libkdumpfile does not read:
`makedumpfile -R` (Debian's makedumpfile) reassembles them into an ordinary kdump-compressed file.
"""
import json
import os
import subprocess
from pathlib import Path
from typing import List, Optional

from . import guest_dir as gd
from .errors import GuestError
from .model import WalkReport
from .paths import framecert_bin

FORMATS = {"elf": "elf", "kdump": "kdump-zlib"}  # ours -> QEMU's dump-guest-memory format


def dump_vmcore(guest, path: Path, fmt: str = "elf", paging: bool = False) -> Path:
    """Writes the stopped guest's memory and CPU registers to `path` (ELF, or kdump-compressed). `paging`
    (ELF only): segments at virtual addresses too, through the guest's page tables, as drgn and crash want."""
    if fmt not in FORMATS:
        raise GuestError(f"dump format {fmt!r}: want one of {', '.join(FORMATS)}")
    if paging and fmt != "elf":
        raise GuestError("QEMU writes paging dumps as ELF only")
    path = Path(path).resolve()
    target = path if fmt == "elf" else path.with_name(path.name + ".flat")
    for stale in (path, target):
        stale.unlink(missing_ok=True)
    guest.qmp("dump-guest-memory", paging=paging, protocol=f"file:{target}", format=FORMATS[fmt])
    if fmt != "elf":
        try:
            with open(target, "rb") as flat:
                r = subprocess.run(["makedumpfile", "-R", str(path)], stdin=flat, capture_output=True, text=True)
        except OSError as e:
            raise GuestError(f"cannot run makedumpfile (Debian: makedumpfile): {e.strerror}") from None
        finally:
            target.unlink(missing_ok=True)
        if r.returncode != 0:
            raise GuestError(f"makedumpfile -R failed: {(r.stderr or r.stdout).strip()[-300:]}")
    os.chmod(path, 0o600)  # a dump holds everything the guest held
    return path


def walk_vmcore(dump: Path, guest_dir: Path, module_dirs: Optional[List[Path]] = None) -> WalkReport:
    """Every task of a dump of the guest built in `guest_dir` (its vmlinux, its modules' .ko). `module_dirs`:
    where the modules' NAME.ko and NAME.o are (default: each guest module's build directory)."""
    cmd = [str(framecert_bin()), "walk", "--json", "--vmcore", str(dump), "--vmlinux", str(gd.vmlinux(guest_dir))]
    if module_dirs is None:
        module_dirs = [gd.module_ko(guest_dir, m).parent for m in gd.built_modules(guest_dir)]
    for d in module_dirs:
        cmd += ["--modules", str(d)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise GuestError(f"cannot run {cmd[0]}: {e.strerror}") from None
    if r.returncode not in (0, 1):
        raise GuestError(f"walking {dump} failed: {r.stderr.strip()[-500:]}")
    try:
        return WalkReport.from_json(json.loads(r.stdout))
    except (ValueError, KeyError, TypeError) as e:
        raise GuestError(f"framecert walk --vmcore: unreadable report ({e})") from None
