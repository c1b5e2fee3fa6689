"""A built guest directory (build.py makes it; everything else reads it): its manifest and where its kernel
and its own modules are. Depends on nothing but the model's basics, so the launcher (qemu.py) and the walk
can name a guest's files without importing the builder."""
import json
from pathlib import Path
from typing import Any, Dict, List

from .errors import GuestError

MANIFEST = "manifest.json"
# The guest's own modules: name -> folder in the guest directory holding NAME.ko and its objects.
MODULES = {"fctest": "module", "fcregress": "regress", "fcpatch": "livepatch"}


def load_manifest(guest_dir: Path) -> Dict[str, Any]:
    try:
        manifest: Dict[str, Any] = json.loads((Path(guest_dir) / MANIFEST).read_text())
        return manifest
    except (OSError, ValueError) as e:
        raise GuestError(f"{guest_dir} is not a built guest directory ({e})") from None


def vmlinux(guest_dir: Path) -> Path:
    return Path(guest_dir) / "linux" / "vmlinux"


def vmlinux_o(guest_dir: Path) -> Path:
    """The relocatable object vmlinux's metadata is computed from (docs/metadata.md)."""
    return Path(guest_dir) / "linux" / "vmlinux.o"


def module_ko(guest_dir: Path, name: str) -> Path:
    return Path(guest_dir) / MODULES[name] / f"{name}.ko"


def module_objects(guest_dir: Path, name: str) -> List[Path]:
    """The module's own objects (where STACK_FRAME_NON_STANDARD annotations survive; the .ko drops them)."""
    return [o for o in sorted((Path(guest_dir) / MODULES[name]).glob("*.o")) if not o.name.endswith(".mod.o")]


def built_modules(guest_dir: Path) -> List[str]:
    """The guest modules this directory has a .ko of."""
    return [m for m in MODULES if module_ko(guest_dir, m).is_file()]
