"""What a stress report stands on, recorded in its summary so a reader (and `merge`) can tell runs apart: the
framecert build that walked, the guest (its cache key and profile), the command line, the shard and job of
the run, and which verdicts the guest plants on purpose (the expected unreliable kthreads)."""
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import known_chains, paths
from . import guest_dir as gd
from .errors import GuestError

DEFAULT_PROFILE = "6.1-gcc"  # guests built before profiles existed say none: they are 6.1 built by gcc


def framecert_version() -> str:
    """`framecert --version` of the binary the run walks with; this checkout's version if it gives none."""
    try:
        r = subprocess.run([str(paths.FRAMECERT_BIN), "--version"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return f"framecert {paths.version()} (checkout; {paths.FRAMECERT_BIN} printed no version)"


def profile_name(manifest: dict) -> str:
    """The manifest's profile ("6.1-gcc", or {"kernel", "cc"}), DEFAULT_PROFILE when it records none."""
    profile = manifest.get("profile")
    if isinstance(profile, str) and profile:
        return profile
    if isinstance(profile, dict) and profile.get("kernel"):
        return f"{profile['kernel']}-{profile.get('cc', 'gcc')}"
    return DEFAULT_PROFILE


def guest_facts(guest_dir: Path) -> Tuple[str, str]:
    """(the guest's key, its profile) from its manifest; the directory's name when the manifest is unreadable."""
    try:
        manifest = gd.load_manifest(guest_dir)
    except GuestError:
        manifest = {}
    key = manifest.get("key") or Path(guest_dir).name.removeprefix("guest-")
    return str(key), profile_name(manifest)


def describe_run(guest_dir: Path, total_rounds: int, shard: Tuple[int, int], job: Tuple[int, int],
                 command: List[str]) -> dict:
    """The summary fields a stress run adds about itself (merged reports carry them, stress.merge)."""
    key, profile = guest_facts(guest_dir)
    return {"total_rounds": total_rounds, "shard": f"{shard[0]}/{shard[1]}", "job": f"{job[0]}/{job[1]}",
            "provenance": {"framecert": framecert_version(), "guest": key, "profile": profile,
                           "command": list(command)},
            "expected_unreliable": expected_unreliable(guest_dir)}


def expected_unreliable(guest_dir: Path) -> Dict[str, Optional[str]]:
    """comm -> the reason the guest's planted bugs must be unreliable for (None: any reason), so a page shows
    their disagreements as expected rather than as failures; empty when the guest's truth files are missing."""
    try:
        return known_chains.expected_unreliable(guest_dir)
    except (OSError, ValueError, KeyError):
        return {}
