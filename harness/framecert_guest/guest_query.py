"""What the harness asks the running guest over its command channel (qemu.Guest.command): where its modules'
sections were loaded, and which function names its kernel knows. Every answer is a block of marked lines
closed by a count line, so a cut or garbled answer is an error rather than a shorter list."""
import re
from typing import Dict, Iterable, Set

from .errors import GuestError
from .model import address


def module_sections(guest, names: Iterable[str]) -> Dict[str, Dict[str, int]]:
    """{module: {section: load address}} from /sys/module/NAME/sections of each loaded module among `names`
    (a module that is not loaded is absent). A live module's .init* sections are left out: the kernel freed them
    when its init returned, and sysfs still lists their old addresses, where another module may be loaded now
    (harness/guest/guest_modules.h reads a dump the same way)."""
    names = [n for n in names if re.fullmatch(r"\w+", n)]
    if not names:
        return {}
    script = (f"for m in {' '.join(names)}; do [ -d /sys/module/$m/sections ] || continue; n=0; "
              "live=$(cat /sys/module/$m/initstate); "
              "for s in /sys/module/$m/sections/.*; do [ -f \"$s\" ] || continue; "
              "case \"$live ${s##*/}\" in 'live .init'*) continue;; esac; "
              "echo \"FRAMECERT-SECTION $m ${s##*/} $(cat $s)\"; n=$((n+1)); done; "
              "echo \"FRAMECERT-SECTIONS $m $n\"; done")
    out = guest.command(script)
    found: Dict[str, Dict[str, int]] = {}
    for m in re.finditer(r"FRAMECERT-SECTION (\w+) (\S+) (0x[0-9a-f]+)", out):
        found.setdefault(m.group(1), {})[m.group(2)] = address(m.group(3))
    for m in re.finditer(r"FRAMECERT-SECTIONS (\w+) (\d+)", out):
        name, count = m.group(1), int(m.group(2))
        if len(found.get(name, {})) != count:
            raise GuestError(f"the guest listed {count} sections of module {name}, the harness read "
                             f"{len(found.get(name, {}))}")
    for name, sections in found.items():
        if ".text" not in sections:
            raise GuestError(f"no .text address for module {name} in the guest's /sys/module")
    return found


def known_functions(guest, names: Iterable[str]) -> Set[str]:
    """Which of `names` are text symbols of the running guest kernel or its modules (/proc/kallsyms)."""
    names = [n for n in names if re.fullmatch(r"[A-Za-z_][\w.]*", n)]
    if not names:
        return set()
    out = guest.command("awk '$2 ~ /^[tTwW]$/ {print \"FRAMECERT-SYM \" $3}' /proc/kallsyms | grep -x -F "
                        + " ".join(f"-e 'FRAMECERT-SYM {n}'" for n in names) + " ; true")
    return set(re.findall(r"FRAMECERT-SYM (\S+)", out)) & set(names)
