"""The guest's userland: fcload (static C, see guest/initramfs/fcload.c) and a gzip'd cpio archive.

The archive is made by the kernel's own usr/gen_init_cpio from a file list, so /dev/console (which the
kernel opens before /init runs) is a `nod` entry: no root and no real device node needed.
"""
import gzip
import subprocess
from pathlib import Path

from . import paths
from .errors import GuestError
from .kernel_build import run

DIRS = ["/dev", "/bin", "/proc", "/sys", "/tmp", "/lib", "/lib/modules", "/root"]


def build_fcload(out: Path, log, progress) -> Path:
    progress.step("building fcload (static)")
    # Frame pointers kept, so user stacks in the guest are walkable too.
    run(["gcc", "-static", "-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-pthread",
         "-o", out, paths.INITRAMFS_SRC / "fcload.c"], out.parent, log)
    return out


def file_list(init: Path, fcload: Path, modules: dict) -> str:
    """gen_init_cpio's input: every entry owned by root, whoever builds. `modules`: name in
    /lib/modules -> the .ko on the host."""
    lines = [f"dir {d} 0755 0 0" for d in DIRS]
    lines += [
        "nod /dev/console 0600 0 0 c 5 1",
        f"file /init {init} 0755 0 0",
        f"file /bin/busybox {paths.BUSYBOX} 0755 0 0",
        f"file /bin/fcload {fcload} 0755 0 0",
    ]
    lines += [f"file /lib/modules/{name} {ko} 0644 0 0" for name, ko in sorted(modules.items())]
    return "\n".join(lines) + "\n"


def build_initramfs(tree: Path, out_dir: Path, modules: dict, log, progress) -> Path:
    fcload = build_fcload(out_dir / "fcload", log, progress)
    progress.step("packing the initramfs")
    gen = tree / "usr" / "gen_init_cpio"  # built with the kernel layer, which this layer must not write into
    if not gen.is_file():
        raise GuestError(f"{gen} missing: the kernel layer is incomplete (delete it and build again)")
    listing = out_dir / "initramfs.list"
    listing.write_text(file_list(paths.INITRAMFS_SRC / "init", fcload, modules))
    try:
        cpio = subprocess.run([str(gen), str(listing)], capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        raise GuestError(f"gen_init_cpio failed: {e.stderr.decode(errors='replace').strip()}") from None
    out = out_dir / "initramfs.cpio.gz"
    # mtime=0: the same inputs give the same bytes.
    with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as f:
        f.write(cpio)
    return out
