"""The final kernel .config must really have what framecert relies on: olddefconfig silently drops an
option whose dependencies are missing, so the fragment alone proves nothing."""
from typing import Dict, Optional

from .errors import GuestError

# option -> required value ("y", or None for "must not be set"), with why.
REQUIRED = {
    "CONFIG_64BIT": ("y", "x86-64 guest"),
    "CONFIG_SMP": ("y", "several CPUs, tasks running on vCPUs"),
    "CONFIG_VMAP_STACK": ("y", "task stacks in vmalloc space: walked through the page tables"),
    "CONFIG_FRAME_POINTER": ("y", "the unwinder walks frame pointers"),
    "CONFIG_UNWINDER_FRAME_POINTER": ("y", "the kernel's own unwinder is the FP one"),
    "CONFIG_UNWINDER_ORC": (None, "ORC would replace the FP unwinder"),
    "CONFIG_OBJTOOL": ("y", "Kbuild runs objtool on every object"),
    "CONFIG_STACK_VALIDATION": ("y", "objtool validates frame pointer rules"),
    "CONFIG_DEBUG_INFO": ("y", "struct offsets come from vmlinux DWARF"),
    "CONFIG_KALLSYMS_ALL": ("y", "symbols for every function"),
    "CONFIG_MODULES": ("y", "fctest.ko"),
    "CONFIG_MODULE_UNLOAD": ("y", "fctest.ko can be unloaded"),
    "CONFIG_DYNAMIC_FTRACE": ("y", "livepatch needs it"),
    "CONFIG_LIVEPATCH": ("y", "the live-patch decision is checked against the kernel's"),
    "CONFIG_HAVE_RELIABLE_STACKTRACE": ("y", "the kernel's reliable stack trace is the reference"),
    "CONFIG_BLK_DEV_INITRD": ("y", "the userland is an initramfs"),
    "CONFIG_RD_GZIP": ("y", "the initramfs is gzip'd"),
    "CONFIG_SERIAL_8250_CONSOLE": ("y", "the console is the serial port"),
    "CONFIG_DEVTMPFS": ("y", "/dev in the guest"),
    "CONFIG_DEBUG_FS": ("y", "fctest publishes its chains in debugfs"),
    "CONFIG_ACPI": ("y", "brings up every CPU, and lets qemu_fw_cfg find vmcoreinfo"),
    "CONFIG_FW_CFG_SYSFS": ("y", "vmcoreinfo for drgn/crash"),
    "CONFIG_CRASH_CORE": ("y", "vmcoreinfo for drgn/crash"),
    "CONFIG_FUNCTION_GRAPH_TRACER": ("y", "the function_graph tracer workloads (return addresses rewritten)"),
    "CONFIG_KRETPROBES": ("y", "the kretprobe workload (return addresses rewritten)"),
    "CONFIG_KPROBE_EVENTS": ("y", "kretprobes set from tracefs' kprobe_events"),
}


def parse_config(text: str) -> dict:
    """CONFIG_X=value lines and '# CONFIG_X is not set' lines (value None)."""
    values: Dict[str, Optional[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            values[name] = value.strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            values[line[2:-len(" is not set")]] = None
    return values


# Options a later kernel renamed: (since version, old name, new name). 6.9 split CRASH_CORE: vmcoreinfo is
# VMCORE_INFO now.
RENAMED = [((6, 9), "CONFIG_CRASH_CORE", "CONFIG_VMCORE_INFO")]


def version_tuple(kernel: str) -> tuple:
    """"6.12", "6.12.118-foo" -> (6, 12); anything else -> (0, 0)."""
    parts = kernel.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def required_for(kernel: str = "6.1") -> dict:
    """REQUIRED with the option names of kernel `kernel` (a version: "6.12", or a release "6.12.118")."""
    renames = {old: new for since, old, new in RENAMED if version_tuple(kernel) >= since}
    return {renames.get(name, name): want for name, want in REQUIRED.items()}


def problems(text: str, required: dict = REQUIRED) -> list:
    """One message per option whose final value is not the required one (empty list: all good)."""
    values = parse_config(text)
    out = []
    for name, (want, why) in required.items():
        have = values.get(name)
        if want is None and have not in (None, "n"):
            out.append(f"{name}={have} but must be off ({why})")
        elif want is not None and have != want:
            out.append(f"{name} is {'unset' if have is None else have}, must be {want} ({why})")
    return out


def require(text: str, source: str, kernel: str = "6.1"):
    """Raises GuestError naming every option that did not stick; `source` says where the config came from."""
    found = problems(text, required_for(kernel))
    if found:
        raise GuestError(f"{source} gave an unusable kernel config: " + "; ".join(found))
