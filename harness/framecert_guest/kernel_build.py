"""Extract, configure and build the guest kernel; build fctest.ko out of tree against it.

Every command's output goes to the build log; progress shows a count of compiled objects.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from . import config_check, paths
from .errors import GuestError
from .procs import die_with_parent, end_process_group

ARCH = ["ARCH=x86_64"]  # tinyconfig on this host would otherwise make a 32-bit kernel
_COMPILE_LINE = re.compile(r"^\s+(CC|AS|CC \[M\])\s")
OBJTOOL_WARNING = re.compile(r"warning: objtool:")
_ERROR_LINE = re.compile(r"\berror\b", re.IGNORECASE)


def _clean_env() -> dict:
    env = dict(os.environ, LC_ALL="C")
    # A caller's make jobserver (ctest under make, ...) would override our -j and can starve the build.
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(var, None)
    return env


def run(cmd, cwd, log, progress=None, label=None) -> list:
    """Runs cmd with its output in `log`; returns the output lines; raises GuestError on failure."""
    log.write(f"\n$ (cd {cwd} && {' '.join(map(str, cmd))})\n")
    log.flush()
    lines, compiled = [], 0
    try:
        # Own process group: on an interrupt the whole make tree (compilers included) can be ended at once.
        proc = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=_clean_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                                preexec_fn=die_with_parent)
    except OSError as e:
        raise GuestError(f"cannot run {cmd[0]}: {e.strerror}") from None
    try:
        for line in proc.stdout:
            log.write(line)
            lines.append(line.rstrip("\n"))
            if progress and label and _COMPILE_LINE.match(line):
                compiled += 1
                progress.count(label, compiled)
    except BaseException:
        end_process_group(proc, grace=0)  # interrupted: make and its compilers must not outlive us
        raise
    proc.wait()
    if proc.returncode != 0:
        # The first line naming an error says more than make's closing "Error 2" lines.
        errors = [l.strip() for l in lines if _ERROR_LINE.search(l)] or [l.strip() for l in lines[-1:]] or [
            "no output"]
        raise GuestError(f"{' '.join(map(str, cmd[:3]))} failed (exit {proc.returncode}): {errors[0]}")
    return lines


def extract(tmp: Path, log, progress) -> Path:
    progress.step(f"extracting {paths.KERNEL_TARBALL.name}")
    run(["tar", "-xf", paths.KERNEL_TARBALL, "-C", tmp], tmp, log)
    trees = [p for p in tmp.iterdir() if p.is_dir() and p.name.startswith("linux-source")]
    if len(trees) != 1:
        raise GuestError(f"{paths.KERNEL_TARBALL} did not hold exactly one linux-source-* folder")
    tree = tmp / "linux"
    trees[0].rename(tree)
    return tree


def configure(tree: Path, log, progress):
    progress.step("configuring: tinyconfig + guest/framecert.config + olddefconfig")
    run(["make", *ARCH, "tinyconfig"], tree, log)
    run(["scripts/kconfig/merge_config.sh", "-m", ".config", paths.CONFIG_FRAGMENT], tree, log)
    run(["make", *ARCH, "olddefconfig"], tree, log)
    found = config_check.problems((tree / ".config").read_text())
    if found:
        raise GuestError(f"tinyconfig + {paths.CONFIG_FRAGMENT.name} + olddefconfig gave an unusable kernel "
                         "config: " + "; ".join(found))


def build_kernel(tree: Path, jobs: int, prefix_map: str, log, progress) -> list:
    """bzImage, vmlinux (its link keeps vmlinux.o) and what out-of-tree modules need: `modules` (not just
    modules_prepare) also writes Module.symvers, without which modpost cannot resolve fctest.ko's symbols.

    prefix_map rewrites the temporary build path in the DWARF to the final cached path."""
    progress.step(f"building the kernel (make -j{jobs}; ~4 min on 2 idle cores)")
    lines = run(["make", f"-j{jobs}", *ARCH, f"KCFLAGS={prefix_map}", f"KAFLAGS={prefix_map}",
                 "bzImage", "vmlinux", "modules"], tree, log, progress, "kernel objects compiled")
    for artefact in ("arch/x86/boot/bzImage", "vmlinux", "vmlinux.o", "Module.symvers"):
        if not (tree / artefact).is_file():
            raise GuestError(f"kernel build finished without {artefact}")
    return [l for l in lines if OBJTOOL_WARNING.search(l)]


def write_chains_header(chains_json: Path, header: Path):
    """The module compiles in expected-chains.json (one source of truth for the host and the guest)."""
    try:
        text = json.dumps(json.loads(chains_json.read_text()), indent=1) + "\n"
    except (OSError, ValueError) as e:
        raise GuestError(f"bad {chains_json}: {e}") from None
    # json.dumps output is ASCII; escaping backslashes and quotes makes each line a valid C string literal.
    body = "".join('\t"' + l.replace("\\", "\\\\").replace('"', '\\"') + '\\n"\n' for l in text.splitlines())
    header.write_text("/* Generated by framecert-guest build from expected-chains.json: do not edit. */\n"
                      f"static const char fctest_chains_json[] =\n{body.rstrip()};\n")


def build_module(tree: Path, module_dir: Path, prefix_map: str, log, progress) -> list:
    """Copies guest/module to module_dir and builds fctest.ko; returns objtool's warnings for it.

    The warning on fc_asm_noframe is the planted bug, wanted: objtool warnings do not fail a 6.1 build."""
    progress.step("building fctest.ko")
    shutil.copytree(paths.MODULE_SRC, module_dir)
    write_chains_header(module_dir / "expected-chains.json", module_dir / "fctest_chains.h")
    lines = run(["make", "-C", tree, f"M={module_dir}", *ARCH, f"KCFLAGS={prefix_map}",
                 f"KAFLAGS={prefix_map}", "modules"], module_dir, log)
    if not (module_dir / "fctest.ko").is_file():
        raise GuestError("module build finished without fctest.ko")
    return [l.strip() for l in lines if OBJTOOL_WARNING.search(l)]
