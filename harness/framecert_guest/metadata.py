"""The guest's frame metadata, from the same producer and cache as a process's (`framecert metadata-cache`,
unwinder/metadata_cache.h): keyed by each image's build-id and the framecert binary's producer tag, the C++
way, so a rebuilt validator never serves stale metadata and nothing here keeps stamps of its own.

vmlinux's metadata is vmlinux.o validated and addressed like vmlinux (`--from vmlinux=vmlinux.o`,
docs/metadata.md); each guest module's is its .ko, per section at 0.
"""
import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from . import guest_dir as gd
from .errors import GuestError
from .paths import framecert_bin

# FRAMECERT_METADATA_CACHE: another cache directory (tests); default: the C++ default,
# ${XDG_CACHE_HOME:-~/.cache}/framecert/metadata.
CACHE_DIR_ENV = "FRAMECERT_METADATA_CACHE"


def cache_images(images: List[Path], linked_from: Optional[Dict[Path, Path]] = None,
                 kernel_version: Optional[str] = None) -> Dict[Path, Path]:
    """{image: its metadata file in the cache}, computed by `framecert metadata-cache` where missing;
    `kernel_version`: the kernel the images were built for (its special-section formats)."""
    cmd = [str(framecert_bin()), "metadata-cache"]
    if kernel_version:
        cmd.append(f"--kernel-version={kernel_version}")
    if os.environ.get(CACHE_DIR_ENV):
        cmd.append(f"--cache-dir={os.environ[CACHE_DIR_ENV]}")
    for image, obj in (linked_from or {}).items():
        cmd.append(f"--from={image}={obj}")
    cmd += ["--", *map(str, images)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:  # no framecert binary, or not executable
        raise GuestError(f"cannot run {cmd[0]}: {e.strerror}") from None
    try:
        answer = json.loads(r.stdout)
        objects = answer["objects"]
    except (ValueError, KeyError, TypeError):
        raise GuestError(f"framecert metadata-cache failed: {r.stderr.strip()[-500:]}") from None
    errors = [o["error"] for o in objects if "error" in o]
    if errors or r.returncode != 0:
        raise GuestError(f"cannot compute metadata: {'; '.join(errors) or r.stderr.strip()[-500:]}")
    return {Path(o["object"]): Path(o["metadata"]) for o in objects}


def guest_metadata(guest_dir: Path) -> Dict[str, Path]:
    """{"vmlinux": file, MODULE: file, ...} for vmlinux and every guest module the directory has."""
    guest_dir = Path(guest_dir)
    names = {gd.vmlinux(guest_dir): "vmlinux"}
    for m in gd.built_modules(guest_dir):
        names[gd.module_ko(guest_dir, m)] = m
    try:
        release = gd.load_manifest(guest_dir).get("kernel_release")
    except GuestError:
        release = None  # an older or hand-made guest directory: the objects' own formats, else 6.1's
    files = cache_images(list(names), {gd.vmlinux(guest_dir): gd.vmlinux_o(guest_dir)}, release)
    return {names[image]: path for image, path in files.items()}
