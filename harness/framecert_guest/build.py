"""`framecert-guest build`: the whole guest, built once per set of inputs and cached, in two layers.

The kernel layer (${cache}/kernel-<kkey>, rebuilt only when guest/framecert.config or a toolchain changes):
  linux/                 the kernel build tree, objects included (scripts/kernel-crosscheck validates them)
  config                 the final kernel .config
  build.log              every command's output
  kernel.json            key, facts, objtool's and framecert's warnings from Kbuild, timings (written last)

The guest layer (${cache}/guest-<gkey>, the directory every other command takes):
  linux -> ../kernel-<kkey>/linux
  bzImage vmlinux vmlinux.o    symlinks into linux/
  module/fctest.ko, fctest.ko  the test module (symlink at top)
  regress/fcregress.ko   the regression module generated from guest/regress's templates
  livepatch/fcpatch.ko   the livepatch module (loaded on demand by patch-check --kernel-compare)
  initramfs.cpio.gz, fcload    the userland
  expected-chains.json   what fctest's kthreads' stacks must look like
  regress-expected.json  what every regression variant must give (validator finding, walk verdict)
  config                 the final kernel .config (copy)
  build.log              the guest layer's commands' output
  manifest.json          key, inputs, artefact paths and sizes, warnings, timings (written last)
"""
import json
import os
import shutil
import time
from typing import List, Optional
from pathlib import Path

from . import cache, config_check, paths, profiles, regress
from .errors import GuestError, UsageError
from .guest_dir import MANIFEST
from .initramfs import build_initramfs
from .kernel_build import (build_kernel, build_module, configure, extract, framecert_objtool, make_vars, run,
                           write_chains_header)
from .progress import Progress

KERNEL_MANIFEST = "kernel.json"
ARTEFACTS = {  # name in the guest directory -> path inside it
    "bzImage": "linux/arch/x86/boot/bzImage",
    "vmlinux": "linux/vmlinux",
    "vmlinux.o": "linux/vmlinux.o",
    "fctest.ko": "module/fctest.ko",
    "fcregress.ko": "regress/fcregress.ko",
    "fcpatch.ko": "livepatch/fcpatch.ko",
    "initramfs.cpio.gz": "initramfs.cpio.gz",
}


KERNEL_ARTEFACTS = ["arch/x86/boot/bzImage", "vmlinux", "vmlinux.o", "Module.symvers", "usr/gen_init_cpio"]


def cached_guest(key: Optional[str] = None):
    """The cached guest directory for the current inputs, or None if it is not built yet (or damaged)."""
    final = paths.cache_root() / f"guest-{key or cache.guest_key()}"
    return final if damage(final, MANIFEST) is None else None


def damage(layer_dir: Path, manifest_name: str):
    """Why a cached layer cannot be used (None: it is intact): a missing or unreadable manifest, or an
    artefact missing or not of the size recorded when it was built (someone deleted or truncated it)."""
    path = Path(layer_dir) / manifest_name
    if not path.is_file():
        return "not built"
    try:
        manifest = json.loads(path.read_text())
        artefacts = manifest["artefacts"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable {manifest_name} ({e.__class__.__name__})"
    for name, a in artefacts.items():
        p = Path(layer_dir) / a["path"]
        try:
            size = p.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != a["bytes"]:
            return f"{name} is {size} bytes, not the {a['bytes']} it was built with"
    return None


def _build_layer(layer: str, key: str, manifest_name: str, build_into, progress) -> Path:
    """Finds layer-<key> in the cache or builds it with build_into(tmp, final, log) -> manifest. A damaged
    cached layer is discarded and built again."""
    final = paths.cache_root() / f"{layer}-{key}"
    if damage(final, manifest_name) is None:
        progress.step(f"{layer} {key} is cached")
        return final
    with cache.BuildSlot(paths.cache_root(), key, layer) as slot:
        if slot.done():
            why = damage(slot.final, manifest_name)
            if why is None:
                return slot.final
            progress.step(f"cached {layer} {key} is damaged ({why}): building it again")
            cache.discard(slot.final)
        slot.tmp.mkdir()
        with open(slot.tmp / "build.log", "w") as log:
            try:
                manifest = build_into(slot.tmp, slot.final, log)
            except GuestError as e:
                log.flush()
                raise GuestError(f"{e} (build log: {_keep_failed_log(slot)})") from None
        (slot.tmp / manifest_name).write_text(json.dumps(manifest, indent=2) + "\n")
        slot.publish()
    progress.step(f"built {layer} {key} in {manifest['seconds']['total']:.0f} s")
    return slot.final


def build_kernel_layer(jobs: int = 2, progress: Optional[Progress] = None) -> Path:
    progress = progress or Progress()
    key = cache.kernel_key()
    return _build_layer("kernel", key, KERNEL_MANIFEST,
                        lambda tmp, final, log: _build_kernel_into(tmp, final, key, jobs, log, progress), progress)


def build(jobs: int = 2, progress: Optional[Progress] = None) -> Path:
    progress = progress or Progress()
    key = cache.guest_key()
    found = cached_guest(key)
    if found:
        progress.step(f"guest {key} is cached")
        return found
    kernel_dir = build_kernel_layer(jobs, progress)
    return _build_layer("guest", key, MANIFEST,
                        lambda tmp, final, log: _build_guest_into(tmp, final, kernel_dir, key, log, progress),
                        progress)


def _keep_failed_log(slot) -> Path:
    """The temporary tree goes away; its log stays beside it for the post-mortem."""
    failed = slot.root / f"{slot.final.name}.failed.log"
    shutil.copyfile(slot.tmp / "build.log", failed)
    return failed


def _build_kernel_into(tmp: Path, final: Path, key: str, jobs: int, log, progress) -> dict:
    seconds = {}
    t0 = time.monotonic()
    # The DWARF should name the tree where it will live, not the temporary one it is built in.
    prefix_map = f"-fdebug-prefix-map={tmp}={final}"
    tree = extract(tmp, log, progress)
    configure(tree, log, progress)
    seconds["configure"] = time.monotonic() - t0
    wrapper = framecert_objtool()
    kbuild = build_kernel(tree, jobs, prefix_map, log, progress, wrapper)
    seconds["kernel"] = time.monotonic() - t0 - seconds["configure"]
    shutil.copyfile(tree / ".config", tmp / "config")
    seconds["total"] = time.monotonic() - t0

    def rehome(lines):  # warnings name the files where they will live (as the DWARF does)
        return [w.replace(str(tmp), str(final)) for w in lines]
    return {
        "key": key,
        "facts": cache.kernel_facts(),
        "kernel_release": (tree / "include/config/kernel.release").read_text().strip(),
        "artefacts": {a: {"path": f"linux/{a}", "bytes": (tree / a).stat().st_size} for a in KERNEL_ARTEFACTS},
        "objtool_warnings": rehome(kbuild["objtool"]),
        # framecert ran beside objtool on every object Kbuild validated (scripts/framecert-objtool).
        "framecert_in_kbuild": {"ran": wrapper is not None, "warnings": rehome(kbuild["framecert"]),
                                "disagreements": rehome(kbuild["disagreements"])},
        # Kbuild rebuilds whatever was compiled with other flags: a later `make` in linux/ needs these.
        "make_vars": [*make_vars(), f"KCFLAGS={prefix_map}", f"KAFLAGS={prefix_map}"],
        "profile": profiles.current().name,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "jobs": jobs,
    }


def _build_guest_into(tmp: Path, final: Path, kernel_dir: Path, key: str, log, progress) -> dict:
    t0 = time.monotonic()
    kernel = json.loads((kernel_dir / KERNEL_MANIFEST).read_text())
    tree = kernel_dir / "linux"
    os.symlink(os.path.relpath(tree, final), tmp / "linux")
    prefix_map = f"-fdebug-prefix-map={tmp}={final}"

    def rehome(lines):
        return [w.replace(str(tmp), str(final)) for w in lines]
    # Kbuild runs framecert beside objtool on the modules too (scripts/framecert-objtool), as on the kernel.
    wrapper = framecert_objtool()
    disagreements: List[str] = []
    module_warnings = rehome(build_module(tree, paths.MODULE_SRC, tmp / "module", prefix_map, log, progress,
                                          generate=_fctest_chains_header, wrapper=wrapper,
                                          disagreements=disagreements))
    regress_warnings = rehome(build_module(tree, None, tmp / "regress", prefix_map, log, progress,
                                           generate=regress.generate, wrapper=wrapper, disagreements=disagreements))
    patch_warnings = rehome(build_module(tree, paths.LIVEPATCH_SRC, tmp / "livepatch", prefix_map, log, progress,
                                         wrapper=wrapper, disagreements=disagreements))
    shutil.copyfile(paths.MODULE_SRC / "expected-chains.json", tmp / "expected-chains.json")
    shutil.copyfile(tmp / "regress" / regress.EXPECTED, tmp / "regress-expected.json")
    build_initramfs(tree, tmp, {"fctest.ko": tmp / "module" / "fctest.ko",
                                "fcregress.ko": tmp / "regress" / "fcregress.ko",
                                "fcpatch.ko": tmp / "livepatch" / "fcpatch.ko"}, log, progress)
    shutil.copyfile(kernel_dir / "config", tmp / "config")
    for name, rel in ARTEFACTS.items():
        if name != rel and not (tmp / name).exists():
            os.symlink(rel, tmp / name)
    log.write("\nobjtool warnings for fctest.ko (the fc_asm_noframe one is the planted bug):\n")
    log.writelines(w + "\n" for w in module_warnings)
    for w in module_warnings:
        progress.step(f"objtool (expected): {w}")
    return {
        "key": key,
        "kernel_dir": str(kernel_dir),
        "facts": cache.build_facts(),
        "kernel_release": kernel["kernel_release"],
        "artefacts": {n: {"path": rel, "bytes": (tmp / rel).stat().st_size} for n, rel in ARTEFACTS.items()},
        "objtool_warnings": {"kernel": kernel["objtool_warnings"], "fctest.ko": module_warnings,
                             "fcregress.ko": regress_warnings, "fcpatch.ko": patch_warnings},
        "framecert_in_kbuild": kernel["framecert_in_kbuild"],
        # The modules' objects, checked by both tools in their Kbuild runs (empty: they agreed everywhere).
        "framecert_in_module_kbuild": {"ran": wrapper is not None, "disagreements": rehome(disagreements)},
        "make_vars": kernel["make_vars"],
        "profile": kernel.get("profile", profiles.DEFAULT.name),
        "seconds": {"kernel": kernel["seconds"]["total"], "total": round(time.monotonic() - t0, 1)},
    }


def _fctest_chains_header(module_dir: Path):
    write_chains_header(module_dir / "expected-chains.json", module_dir / "fctest_chains.h")


# ---- a kernel tree of one's own ----
TREE_ARTEFACTS = ["arch/x86/boot/bzImage", "vmlinux", "vmlinux.o", "Module.symvers", ".config",
                  "include/config/kernel.release"]


def tree_profile(tree: Path) -> profiles.Profile:
    """The profile a built tree stands for: its version (major.minor) and compiler (from its .config)."""
    release = (tree / "include/config/kernel.release").read_text().strip()
    major, minor = config_check.version_tuple(release)
    clang = "CONFIG_CC_IS_CLANG=y" in (tree / ".config").read_text().splitlines()
    return profiles.Profile(f"{major}.{minor}", "clang" if clang else "gcc")


def build_from_tree(tree: Path, jobs: int = 2, progress: Optional[Progress] = None) -> Path:
    """The guest layer (modules, initramfs) built against a kernel tree someone else built — with vmlinux,
    vmlinux.o, bzImage and Module.symvers, and a .config with what framecert relies on (config_check). The
    tree is used in place, never written to except by the module builds' own `make -C` (usr/gen_init_cpio,
    if missing, is built there as the kernel's own `make` would)."""
    progress = progress or Progress()
    tree = Path(tree).resolve()
    missing = [a for a in TREE_ARTEFACTS if not (tree / a).is_file()]
    if missing:
        raise UsageError(f"{tree}: not a built kernel tree (missing {', '.join(missing)}): build it with "
                         "`make bzImage modules` first")
    profile = profiles.select(tree_profile(tree))
    config_check.require((tree / ".config").read_text(), f"{tree}/.config", profile.kernel)
    vmlinux = (tree / "vmlinux").stat()
    facts = {"tree": str(tree), "vmlinux": f"{vmlinux.st_size}:{vmlinux.st_mtime_ns}",
             "release": (tree / "include/config/kernel.release").read_text().strip(), "profile": profile.name}
    tree_key = cache.compute_key({}, facts)

    def adopt(tmp: Path, final: Path, log) -> dict:
        if not (tree / "usr/gen_init_cpio").is_file():
            run(["make", *make_vars(), "usr/gen_init_cpio"], tree, log)
        os.symlink(tree, tmp / "linux")
        shutil.copyfile(tree / ".config", tmp / "config")
        return {"key": tree_key, "facts": facts, "kernel_release": facts["release"],
                "artefacts": {a: {"path": f"linux/{a}", "bytes": (tree / a).stat().st_size} for a in KERNEL_ARTEFACTS},
                "objtool_warnings": [], "framecert_in_kbuild": {"ran": False, "warnings": [], "disagreements": []},
                "make_vars": make_vars(), "profile": profile.name, "seconds": {"total": 0.0}, "jobs": jobs}
    kernel_dir = _build_layer("tree", tree_key, KERNEL_MANIFEST, adopt, progress)
    key = cache.compute_key(cache.source_files(paths.GUEST_LAYER_SRC, [paths.REGRESS_GENERATOR]),
                            {**facts, "kernel": tree_key, "busybox": cache.file_digest(paths.BUSYBOX)})
    return _build_layer("guest", key, MANIFEST,
                        lambda tmp, final, log: _build_guest_into(tmp, final, kernel_dir, key, log, progress),
                        progress)
