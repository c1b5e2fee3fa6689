"""Extract, configure and build the guest kernel; build fctest.ko out of tree against it.

Every command's output goes to the build log; progress shows a count of compiled objects.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from . import config_check, paths, profiles
from .errors import GuestError
from .procs import die_with_parent, end_process_group

ARCH = ["ARCH=x86_64"]  # tinyconfig on this host would otherwise make a 32-bit kernel
_COMPILE_LINE = re.compile(r"^\s+(CC|AS|CC \[M\])\s")
OBJTOOL_WARNING = re.compile(r"warning: objtool:")
FRAMECERT_WARNING = re.compile(r"warning: framecert:")
WRAPPER_DISAGREEMENT = re.compile(r"^framecert-objtool: .*: only (objtool|framecert): ")
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
    assert proc.stdout is not None  # stdout=PIPE
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
        errors = [ln.strip() for ln in lines if _ERROR_LINE.search(ln)] or [ln.strip() for ln in lines[-1:]] or [
            "no output"]
        raise GuestError(f"{' '.join(map(str, cmd[:3]))} failed (exit {proc.returncode}): {errors[0]}")
    return lines


def extract(tmp: Path, log, progress) -> Path:
    tarball = profiles.current().tarball
    progress.step(f"extracting {tarball.name}")
    run(["tar", "-xf", tarball, "-C", tmp], tmp, log)
    trees = [p for p in tmp.iterdir() if p.is_dir() and p.name.startswith("linux-source")]
    if len(trees) != 1:
        raise GuestError(f"{tarball} did not hold exactly one linux-source-* folder")
    tree = tmp / "linux"
    trees[0].rename(tree)
    return tree


def make_vars() -> list:
    """ARCH and the profile's compiler variables: every make of the kernel and its modules gets them."""
    return [*ARCH, *profiles.current().make_vars]


def configure(tree: Path, log, progress):
    profile = profiles.current()
    names = " + ".join(f.name for f in profile.fragments)
    progress.step(f"configuring ({profile.name}): tinyconfig + {names} + olddefconfig")
    run(["make", *make_vars(), "tinyconfig"], tree, log)
    run(["scripts/kconfig/merge_config.sh", "-m", ".config", *profile.fragments], tree, log)
    run(["make", *make_vars(), "olddefconfig"], tree, log)
    config_check.require((tree / ".config").read_text(), f"tinyconfig + {names} + olddefconfig", profile.kernel)


def framecert_objtool():
    """Make variables that put scripts/framecert-objtool in objtool's place (Kbuild then runs framecert beside
    objtool on every object it validates), or None when the framecert binary is not built yet."""
    if not paths.FRAMECERT_BIN.is_file():
        return None
    return [f"objtool={paths.REPO / 'scripts' / 'framecert-objtool'}", f"FRAMECERT={paths.FRAMECERT_BIN}"]


def build_kernel(tree: Path, jobs: int, prefix_map: str, log, progress, wrapper=None) -> dict:
    """bzImage, vmlinux (its link keeps vmlinux.o) and what out-of-tree modules need: `modules` (not just
    modules_prepare) also writes Module.symvers, without which modpost cannot resolve the modules' symbols;
    usr/gen_init_cpio packs the initramfs later (the guest layer must not write into this tree).

    prefix_map rewrites the temporary build path in the DWARF to the final cached path. `wrapper`
    (framecert_objtool()) makes Kbuild run framecert beside objtool. Returns the warnings of each tool and
    the wrapper's disagreement lines."""
    how = "objtool and framecert on every object" if wrapper else "objtool only: framecert not built yet"
    progress.step(f"building the kernel (make -j{jobs}; {how}; ~4 min on 2 idle cores)")
    lines = run(["make", f"-j{jobs}", *make_vars(), f"KCFLAGS={prefix_map}", f"KAFLAGS={prefix_map}", *(wrapper or []),
                 "bzImage", "vmlinux", "modules"], tree, log, progress, "kernel objects compiled")
    run(["make", *make_vars(), "usr/gen_init_cpio"], tree, log)  # a single target: make refuses it among others
    for artefact in ("arch/x86/boot/bzImage", "vmlinux", "vmlinux.o", "Module.symvers"):
        if not (tree / artefact).is_file():
            raise GuestError(f"kernel build finished without {artefact}")
    return {"objtool": [ln.strip() for ln in lines if OBJTOOL_WARNING.search(ln)],
            "framecert": [ln.strip() for ln in lines if FRAMECERT_WARNING.search(ln)],
            "disagreements": [ln.strip() for ln in lines if WRAPPER_DISAGREEMENT.search(ln)]}


def write_chains_header(chains_json: Path, header: Path):
    """The module compiles in expected-chains.json (one source of truth for the host and the guest)."""
    try:
        text = json.dumps(json.loads(chains_json.read_text()), indent=1) + "\n"
    except (OSError, ValueError) as e:
        raise GuestError(f"bad {chains_json}: {e}") from None
    # json.dumps output is ASCII; escaping backslashes and quotes makes each line a valid C string literal.
    body = "".join('\t"' + ln.replace("\\", "\\\\").replace('"', '\\"') + '\\n"\n' for ln in text.splitlines())
    header.write_text("/* Generated by framecert-guest build from expected-chains.json: do not edit. */\n"
                      f"static const char fctest_chains_json[] =\n{body.rstrip()};\n")


def build_module(tree: Path, src, module_dir: Path, prefix_map: str, log, progress, generate=None,
                 wrapper=None, disagreements: Optional[list] = None) -> list:
    """Copies the module source folder `src` (if any) to module_dir, lets generate(module_dir) write the
    generated files, builds the .ko out of tree; returns objtool's warnings for it. `wrapper`
    (framecert_objtool()): Kbuild runs framecert beside objtool on the module's objects too, and the
    wrapper's disagreement lines are appended to `disagreements`.

    Planted bugs give wanted warnings: objtool warnings do not fail a 6.1 build."""
    progress.step(f"building {module_dir.name}/")
    if src is not None:
        shutil.copytree(src, module_dir)
    else:
        module_dir.mkdir()
    if generate:
        generate(module_dir)
    lines = run(["make", "-C", tree, f"M={module_dir}", *make_vars(), f"KCFLAGS={prefix_map}",
                 f"KAFLAGS={prefix_map}", *(wrapper or []), "modules"], module_dir, log)
    if disagreements is not None:
        disagreements += [ln.strip() for ln in lines if WRAPPER_DISAGREEMENT.search(ln)]
    if not list(module_dir.glob("*.ko")):
        raise GuestError(f"module build in {module_dir.name}/ finished without a .ko")
    return [ln.strip() for ln in lines if OBJTOOL_WARNING.search(ln)]
