"""`framecert-guest matrix`: every guest profile (kernel version x compiler) built and measured the same way,
one table (issue 15).

Per profile, each step a separate run of the project's own commands, so the matrix measures exactly what a
user of that profile gets: the guest is built (or found in the cache); scripts/kernel-crosscheck compares
framecert with the objtool of the same kernel on every object Kbuild gave objtool plus vmlinux.o; a walk, a
`patch-check --kernel-compare` and a short stress run are judged by the shadow oracle. The last column is the
issue's measure of precision: unreliable verdicts on sleeping tasks that are not planted bugs while the shadow
shows their traces complete.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from . import known_chains, paths, profiles
from .errors import GuestError, UsageError

ALL = [profiles.Profile(k, cc) for k in profiles.KERNELS for cc in profiles.COMPILERS]
# patch-check: tasks framecert keeps from switching / tasks, and the kernel's own switches of a task whose true
# chain holds a patched function (the planted bug framecert exists to catch).
# The report's schema and version, its "schema" field (docs/schemas/matrix.schema.json).
SCHEMA = "framecert-matrix/1"
COLUMNS = ["profile", "objects", "agree with objtool", "tasks walked", "false reliable", "truth coverage",
           "false unreliable (sleeping, not planted)", "patch-check", "notes"]


def parse_profiles(text: Optional[str]) -> List[profiles.Profile]:
    """"6.1-gcc,6.12-clang" (default: all four)."""
    if not text:
        return list(ALL)
    out = []
    for name in text.split(","):
        named = profiles.Profile.named(name)
        out.append(profiles.parse(named.kernel, named.cc))
    return out


def _run(cmd: List[str], profile: profiles.Profile, log, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{profiles.ENV_KERNEL: profile.kernel, profiles.ENV_CC: profile.cc}, **extra_env)
    log.write(f"\n$ {' '.join(cmd)}   [{profile.name}]\n")
    log.flush()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log.write(r.stdout + r.stderr)
    return r


def crosscheck_counts(report: str) -> Dict[str, Optional[int]]:
    """The objects and agreement lines of scripts/kernel-crosscheck's table."""
    objects = re.search(r"^objects \(.*\)\s+(\d+)$", report, re.M)
    agree = re.search(r"^objects where both agree exactly\s+(\d+)", report, re.M)
    return {"objects": int(objects.group(1)) if objects else None, "agree": int(agree.group(1)) if agree else None}


def false_unreliable(stress_report: dict, planted: set) -> Dict[str, int]:
    """Sleeping walks of tasks that are not planted bugs, and those unreliable while the shadow shows the
    trace complete (the shadow's "agree" on an unreliable trace)."""
    sleeping = candidates = 0
    for rnd in stress_report.get("rounds", []):
        for key in rnd.get("verdicts", {}):
            comm = key.split(":", 1)[1]
            stack = rnd.get("stacks", {}).get(key)
            if comm in planted or (stack and stack.get("running")):
                continue
            sleeping += 1
            shadow = (stack or {}).get("shadow") or {}
            if stack and stack.get("reason") and shadow.get("verdict") == "agree":
                candidates += 1
    return {"sleeping": sleeping, "candidates": candidates}


def measure(profile: profiles.Profile, rounds: int, work: Path, log) -> dict:
    """One row: every step's figure, or what stopped it."""
    row: dict = {"profile": profile.name, "notes": []}
    cli = [sys.executable, str(paths.REPO / "scripts" / "framecert-guest")]
    built = _run(cli + ["build", "--kernel", profile.kernel, "--cc", profile.cc, "-q"], profile, log)
    if built.returncode != 0:
        row["notes"].append(f"build failed: {(built.stderr.strip().splitlines() or ['?'])[-1]}")
        return row
    guest = Path(built.stdout.strip().splitlines()[-1])
    row["guest"] = guest.name
    objtool = profile.reference_objtool()
    if objtool is None:
        row["notes"].append(f"no objtool {profile.kernel} installed (scripts/setup)")
    else:
        cc = _run([str(paths.REPO / "scripts" / "kernel-crosscheck"), str(guest)], profile, log, OBJTOOL=str(objtool))
        row.update(crosscheck_counts(cc.stdout))
    walk_json = work / f"walk-{profile.name}.json"
    walked = _run(cli + ["walk", "--guest-dir", str(guest), "--oracle", "shadow", "--json", str(walk_json)], profile,
                  log)
    if walked.returncode not in (0, 1) or not walk_json.is_file():
        row["notes"].append("walk failed")
    else:
        s = json.loads(walk_json.read_text())["summary"]
        row["walk"] = {"tasks": s["tasks"], "false_reliable": s.get("false_reliable", 0)}
    patch_json = work / f"patch-{profile.name}.json"
    patched = _run(cli + ["patch-check", "--guest-dir", str(guest), "--kernel-compare", "--oracle", "shadow",
                          "--json", str(patch_json)], profile, log)
    if patched.returncode in (0, 1) and patch_json.is_file():
        result = json.loads(patch_json.read_text())
        kc = result["kernel_compare"]
        row["patch_check"] = {"tasks": len(result["tasks"]), "blocked": result["rounds"][0]["blocked"],
                              "kernel_unsafe": len(kc["kernel_unsafe"])}
    else:
        row["notes"].append("patch-check failed")
    stress_json = work / f"stress-{profile.name}.json"
    stressed = _run(cli + ["stress", "--guest-dir", str(guest), "--rounds", str(rounds), "--seed", "11",
                           "--workload", "storm", "--oracle", "shadow", "--json", str(stress_json)], profile, log)
    if stressed.returncode not in (0, 1) or not stress_json.is_file():
        row["notes"].append("stress failed")
        return row
    report = json.loads(stress_json.read_text())
    s = report["summary"]
    row["stress"] = {"tasks": s["tasks_walked"], "false_reliable": s["false_reliable"],
                     "reliable": s["reliable"], "checked": s["reliable_checked"], "coverage": s["truth_coverage"],
                     **false_unreliable(report, set(known_chains.expected_unreliable(guest)))}
    return row


def _cell(row: dict, column: str) -> str:
    stress, walk = row.get("stress") or {}, row.get("walk") or {}
    if column == "profile":
        return row["profile"]
    if column == "objects":
        return str(row.get("objects", "-"))
    if column == "agree with objtool":
        if row.get("agree") is None or not row.get("objects"):
            return "-"
        return f"{row['agree']} ({100.0 * row['agree'] / row['objects']:.1f}%)"
    if column == "tasks walked":
        return str(walk.get("tasks", 0) + stress.get("tasks", 0)) if stress or walk else "-"
    if column == "false reliable":
        return str(walk.get("false_reliable", 0) + stress.get("false_reliable", 0)) if stress or walk else "-"
    if column == "truth coverage":
        return f"{stress['checked']}/{stress['reliable']}" if stress else "-"
    if column == "false unreliable (sleeping, not planted)":
        return f"{stress['candidates']}/{stress['sleeping']}" if stress else "-"
    if column == "patch-check":
        p = row.get("patch_check")
        return f"blocks {p['blocked']}/{p['tasks']}; kernel unsafe {p['kernel_unsafe']}" if p else "-"
    return "; ".join(row.get("notes", [])) or ""


def table(rows: List[dict]) -> str:
    cells = [COLUMNS] + [[_cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells)


def run(selected: List[profiles.Profile], rounds: int, log_path: Path) -> List[dict]:
    if rounds < 1:
        raise UsageError("--rounds must be at least 1")
    rows = []
    with open(log_path, "w") as log, tempfile.TemporaryDirectory(prefix="framecert-matrix-") as work:
        for p in selected:
            print(f"[matrix] {p.name} ...", file=sys.stderr, flush=True)
            try:
                rows.append(measure(p, rounds, Path(work), log))
            except (OSError, ValueError, KeyError, GuestError) as e:
                rows.append({"profile": p.name, "notes": [f"{e.__class__.__name__}: {e}"]})
    return rows


def report(rounds: int, rows: List[dict]) -> dict:
    """`matrix --json`: the stress rounds per profile and every profile's row."""
    return {"schema": SCHEMA, "rounds": rounds, "profiles": rows}


def failed(rows: List[dict]) -> bool:
    """A false reliable anywhere, or a profile that could not be measured."""
    return any(r.get("notes") or (r.get("stress") or {}).get("false_reliable") or
               (r.get("walk") or {}).get("false_reliable") for r in rows)
