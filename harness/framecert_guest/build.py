"""`framecert-guest build`: the whole guest, built once per set of inputs and cached.

The guest directory:
  linux/                 the kernel build tree, objects included (later work validates every object)
  bzImage vmlinux vmlinux.o    symlinks into linux/
  module/fctest.ko, fctest.ko  the test module (symlink at top)
  initramfs.cpio.gz, fcload    the userland
  expected-chains.json   what fctest's kthreads' stacks must look like
  config                 the final kernel .config
  build.log              every command's output
  manifest.json          key, inputs, artefact paths and sizes, objtool warnings, timings (written last)
"""
import json
import os
import shutil
import time
from pathlib import Path

from . import cache, paths
from .errors import GuestError
from .initramfs import build_initramfs
from .kernel_build import build_kernel, build_module, configure, extract
from .progress import Progress

MANIFEST = "manifest.json"
ARTEFACTS = {  # name in the guest directory -> path inside it
    "bzImage": "linux/arch/x86/boot/bzImage",
    "vmlinux": "linux/vmlinux",
    "vmlinux.o": "linux/vmlinux.o",
    "fctest.ko": "module/fctest.ko",
    "initramfs.cpio.gz": "initramfs.cpio.gz",
}


def cached_guest(key: str = None):
    """The cached guest directory for the current inputs, or None if it is not built yet."""
    final = paths.cache_root() / f"guest-{key or cache.guest_key()}"
    return final if (final / MANIFEST).is_file() else None


def build(jobs: int = 2, progress: Progress = None) -> Path:
    progress = progress or Progress()
    key = cache.guest_key()
    found = cached_guest(key)
    if found:
        progress.step(f"guest {key} is cached")
        return found
    with cache.BuildSlot(paths.cache_root(), key) as slot:
        if slot.done():
            return slot.final
        slot.tmp.mkdir()
        with open(slot.tmp / "build.log", "w") as log:
            try:
                manifest = _build_into(slot.tmp, slot.final, key, jobs, log, progress)
            except GuestError as e:
                raise GuestError(f"{e} (build log: {_keep_failed_log(slot)})") from None
        (slot.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        slot.publish()
    progress.step(f"built guest {key} in {manifest['seconds']['total']:.0f} s")
    return slot.final


def _keep_failed_log(slot) -> Path:
    """The temporary tree goes away; its log stays beside it for the post-mortem."""
    failed = slot.root / f"{slot.final.name}.failed.log"
    shutil.copyfile(slot.tmp / "build.log", failed)
    return failed


def _build_into(tmp: Path, final: Path, key: str, jobs: int, log, progress) -> dict:
    seconds = {}
    t0 = time.monotonic()
    # The DWARF should name the tree where it will live, not the temporary one it is built in.
    prefix_map = f"-fdebug-prefix-map={tmp}={final}"

    tree = extract(tmp, log, progress)
    configure(tree, log, progress)
    seconds["configure"] = time.monotonic() - t0
    kernel_warnings = [w.replace(str(tmp), str(final)) for w in build_kernel(tree, jobs, prefix_map, log, progress)]
    seconds["kernel"] = time.monotonic() - t0 - seconds["configure"]

    t1 = time.monotonic()
    # Warnings name the files where they will live (as the DWARF does).
    module_warnings = [w.replace(str(tmp), str(final))
                       for w in build_module(tree, tmp / "module", prefix_map, log, progress)]
    shutil.copyfile(paths.MODULE_SRC / "expected-chains.json", tmp / "expected-chains.json")
    build_initramfs(tree, tmp, tmp / "module" / "fctest.ko", log, progress)
    seconds["module+initramfs"] = time.monotonic() - t1

    shutil.copyfile(tree / ".config", tmp / "config")
    for name, rel in ARTEFACTS.items():
        if name != rel:
            os.symlink(rel, tmp / name)
    log.write("\nobjtool warnings for fctest.ko (the fc_asm_noframe one is the planted bug):\n")
    log.writelines(w + "\n" for w in module_warnings)
    for w in module_warnings:
        progress.step(f"objtool (expected): {w}")
    seconds["total"] = time.monotonic() - t0
    return {
        "key": key,
        "facts": cache.build_facts(),
        "kernel_release": (tree / "include/config/kernel.release").read_text().strip(),
        "artefacts": {n: {"path": rel, "bytes": (tmp / rel).stat().st_size} for n, rel in ARTEFACTS.items()},
        "objtool_warnings": {"kernel": kernel_warnings, "fctest.ko": module_warnings},
        # Kbuild rebuilds whatever was compiled with other flags: a later `make` in linux/ needs these.
        "make_vars": ["ARCH=x86_64", f"KCFLAGS={prefix_map}", f"KAFLAGS={prefix_map}"],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "jobs": jobs,
    }


def load_manifest(guest_dir: Path) -> dict:
    try:
        return json.loads((Path(guest_dir) / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise GuestError(f"{guest_dir} is not a built guest directory ({e})") from None
